"""misc/reproduce_claim.py: the claim table from real (tiny) runs, resuming, the checks."""
import csv
import json
import shutil
import time

import numpy as np
import pytest

from misc import reproduce_claim

# The paper's matching errors (same, different identity; SPEC section 8) of the two rows.
PAPER_3D = (1.33, 2.89)
PAPER_64D_DVE = (1.28, 2.77)


def tiny_claim_configs(tmp_path, tiny_config):
    """A 3-d plain and a 64-d DVE variant of the tiny SmallNet config (one data set)."""
    base = json.loads(tiny_config(tmp_path, epochs=1).read_text())
    paths = []
    for name, dim, loss in (("smallnet-3d", 3, "dense_correlation_loss"),
                            ("smallnet-64d-dve", 64, "dense_correlation_loss_dve")):
        config = {**base, "arch": {"type": "SmallNet", "args": {"num_output_channels": dim}},
                  "loss": loss}
        path = tmp_path / "configs" / "tiny" / f"{name}.json"
        path.write_text(json.dumps(config))
        paths.append(path)
    return paths


def tree_state(root):
    """{file: (mtime_ns, bytes)} of everything under ``root``."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


def read_csv(path):
    with open(path, newline="") as stream:
        return {row["config"]: row for row in csv.DictReader(stream)}


def test_table_from_the_runs_then_nothing_retrained(tmp_path, tiny_config, capsys):
    configs = tiny_claim_configs(tmp_path, tiny_config)
    out = tmp_path / "claim"
    argv = ["--configs", *map(str, configs), "--seeds", "0,1", "--device", "cpu",
            "--set", "trainer.num_workers=0", "--output_dir", str(out)]
    start = time.perf_counter()
    assert reproduce_claim.main(argv) == 0
    elapsed = time.perf_counter() - start
    printed = capsys.readouterr().out

    table = read_csv(out / "claim_table.csv")
    markdown = (out / "claim_table.md").read_text()
    assert (out / "claim_different_identity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    walls = []
    for name, dim, dve, paper in (("smallnet-3d", 3, "no", PAPER_3D),
                                  ("smallnet-64d-dve", 64, "yes", PAPER_64D_DVE)):
        folders = sorted((tmp_path / "saved" / "models" / f"tiny-{name}").iterdir())
        assert len(folders) == 2
        assert sorted(json.loads((f / "config.json").read_text())["seed"] for f in folders) == [0, 1]
        results = [json.loads((f / "matching.json").read_text()) for f in folders]
        timing = [json.loads((f / "timing.json").read_text())["wall_time_s"] for f in folders]
        walls += timing
        same = np.array([r["same_identity"] for r in results])
        different = np.array([r["different_identity"] for r in results])
        row = table[name]
        assert (int(row["dim"]), row["n_seeds"], row["seeds"]) == (dim, "2", "0 1")
        for key, value in (("same_mean", same.mean()), ("same_std", same.std(ddof=1)),
                           ("different_mean", different.mean()),
                           ("different_std", different.std(ddof=1)),
                           ("wall_time_s", np.mean(timing)),
                           ("copy_different", np.mean([r["copy_baseline"]["different_identity"]
                                                       for r in results])),
                           ("grid_same", np.mean([r["grid_limit"]["same_identity"]
                                                  for r in results]))):
            assert float(row[key]) == pytest.approx(value, rel=1e-12, abs=0), key
        assert (float(row["paper_same"]), float(row["paper_different"])) == paper
        line = (f"| {name} | {dim} | {dve} | 2 | {same.mean():.2f} +/- {same.std(ddof=1):.2f} | "
                f"{different.mean():.2f} +/- {different.std(ddof=1):.2f} | "
                f"{np.mean(timing):.0f} s |")
        assert line in markdown and line in printed
    assert min(walls) > 0 and sum(walls) <= elapsed  # measured around each train call
    # neither the 64d/3d pair without DVE nor with DVE is complete: (a), (b), (c) not checkable
    assert printed.count("no finished runs of both rows") == 3

    saved = tree_state(tmp_path / "saved")
    first_csv = (out / "claim_table.csv").read_text()
    assert reproduce_claim.main(argv) == 0
    assert tree_state(tmp_path / "saved") == saved  # no run trained, no timing rewritten
    assert (out / "claim_table.csv").read_text() == first_csv

    # an interrupted run (checkpoint, no matching.json) and a finished run with another
    # override (trainer.epochs 2) of the same config and seed do not count
    experiment = tmp_path / "saved" / "models" / "tiny-smallnet-3d"
    seed0 = next(f for f in experiment.iterdir()
                 if json.loads((f / "config.json").read_text())["seed"] == 0)
    interrupted = shutil.copytree(seed0, experiment / "2099-01-01_00-00-00")
    (interrupted / "matching.json").unlink()
    other = shutil.copytree(seed0, experiment / "2099-01-01_00-00-01")
    config = json.loads((other / "config.json").read_text())
    config["trainer"]["epochs"] = 2
    (other / "config.json").write_text(json.dumps(config))
    matching = json.loads((other / "matching.json").read_text())
    (other / "matching.json").write_text(json.dumps({**matching, "different_identity": 99.0}))
    assert reproduce_claim.main([*argv, "--report_only"]) == 0
    assert (out / "claim_table.csv").read_text() == first_csv
    assert reproduce_claim.main([*argv, "--report_only", "--set", "trainer.epochs=2"]) == 0
    table = read_csv(out / "claim_table.csv")
    assert (table["smallnet-3d"]["n_seeds"], table["smallnet-3d"]["different_mean"]) == ("1", "99.0")
    assert table["smallnet-3d"]["different_std"] == ""
    assert table["smallnet-64d-dve"]["n_seeds"] == "0"
    assert len(list(experiment.iterdir())) == 4  # --report_only trained nothing


def row(dim, dve, mean, std, n=3):
    return {"dim": dim, "dve": dve, "n_seeds": n, "different_mean": mean, "different_std": std}


def by_check(rows):
    return {c["check"]: c for c in reproduce_claim.acceptance_checks(rows)}


def test_acceptance_checks_on_a_hand_made_table():
    table = [row(3, False, 5.0, 0.2), row(64, False, 9.0, 0.4),
             row(3, True, 5.8, 0.3), row(64, True, 5.5, 0.5), row(16, True, 1.0, 0.1)]
    checks = by_check(table)
    # (a) (9.0 - 5.0) / max(0.4, 0.2); (b) 5.5 - 5.8; (c) (9.0 - 5.5) / max(0.4, 0.5)
    assert checks["a"]["value"] == pytest.approx(10.0) and checks["a"]["status"] == "PASS"
    assert checks["b"]["value"] == pytest.approx(-0.3) and checks["b"]["status"] == "PASS"
    assert checks["c"]["value"] == pytest.approx(7.0) and checks["c"]["status"] == "PASS"

    worse = [row(3, False, 5.0, 0.2), row(64, False, 9.0, 1.0),
             row(3, True, 5.8, 0.3), row(64, True, 6.4, 0.5)]
    checks = by_check(worse)
    assert checks["a"]["value"] == pytest.approx(4.0) and checks["a"]["status"] == "FAIL"
    assert checks["b"]["value"] == pytest.approx(0.6) and checks["b"]["status"] == "FAIL"
    assert checks["c"]["value"] == pytest.approx(2.6) and checks["c"]["status"] == "FAIL"

    # with DVE the error falling with the dimension by more than 0.5 px is the claim, too
    falling = [row(3, True, 6.0, 0.3), row(64, True, 5.2, 0.5)]
    assert by_check(falling)["b"]["value"] == pytest.approx(-0.8)
    assert by_check(falling)["b"]["status"] == "PASS"


def test_acceptance_checks_with_one_seed_or_missing_rows():
    one_seed = [row(3, False, 5.0, None, 1), row(64, False, 9.0, None, 1),
                row(3, True, 5.8, None, 1), row(64, True, 5.5, None, 1)]
    checks = by_check(one_seed)
    assert checks["a"]["status"] == checks["c"]["status"] == "UNDEFINED"
    assert "one seed" in checks["a"]["text"] and "one seed" in checks["c"]["text"]
    assert checks["b"]["value"] == pytest.approx(-0.3) and checks["b"]["status"] == "PASS"

    checks = by_check([row(3, False, 5.0, 0.2), row(64, False, 9.0, 0.4, n=0)])
    assert [checks[k]["status"] for k in "abc"] == ["N/A", "N/A", "N/A"]
