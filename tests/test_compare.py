"""``compare.py`` on tiny SmallNet embeddings: its table holds exactly the figures the
project's own commands give for each checkpoint (``test_matching.py``'s matching.json,
``train.py``'s regressor keypoints.json), means and sample standard deviations as
computed by hand, the untrained baseline's weights are the seeded network's, and its
mistakes are one-line user errors."""
import contextlib
import csv
import io
import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import compare
import test_matching
import train
from conftest import write_tiny_config
from model import SmallNet
from test_keypoint_training import regressor_config
from trainer.comparison_table import format_table, summarize, write_comparison
from trainer.matching import DVE_PROTOCOL

FIGURES = {"matching": ("same_identity", "different_identity"),
           "regression": ("inter_ocular_error", "auc@8", "auc@10", "failure_rate@10")}
HEADERS = ["same-identity (px, 70-px frame)", "different-identity (px, 70-px frame)",
           "error (% IOD)", "AUC@8% IOD", "AUC@10% IOD", "failure@10% IOD (fraction)"]
UNTRAINED_SEED = 3


def write_regressor_config(root: Path, data_root: Path, finetune_from) -> Path:
    """``tests/test_keypoint_training``'s one-epoch regressor on the tiny synthetic set
    on the embedding ``finetune_from`` (compare.py replaces it), without TensorBoard and
    figures (faster)."""
    trainer = {"epochs": 1, "save_dir": str(root / "saved"), "save_period": 1, "verbosity": 2,
               "monitor": "off", "tensorboardX": False, "log_dir": str(root / "saved")}
    return regressor_config(root, data_root, finetune_from, visualizations=[], trainer=trainer)


def run_compare(*args) -> str:
    """``compare.main`` with ``args`` on the CPU; -> what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert compare.main([*args, "--device", "cpu", "--disable_workers"]) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """Two seeds of a one-epoch DVE embedding and a seeded untrained network, compared."""
    root = tmp_path_factory.mktemp("compare")
    config = write_tiny_config(root, epochs=1)
    assert train.main(["--config", str(config), "--device", "cpu", "--disable_workers",
                       "--seeds", "0,1"]) == 0
    runs = sorted((root / "saved" / "models" / "tiny-smallnet").iterdir())
    checkpoints = [run / "checkpoint-epoch1.pth" for run in runs]
    regressor = write_regressor_config(root, root / "data" / "synthetic", checkpoints[0])
    output = root / "comparison"
    printed = run_compare("--entry", "dve=" + ",".join(map(str, checkpoints)),
                          "--entry", f"random=untrained:{config}@{UNTRAINED_SEED}",
                          "--regressor_config", str(regressor), "--output_dir", str(output))
    return SimpleNamespace(root=root, config=config, checkpoints=checkpoints, output=output,
                           regressor=regressor, printed=printed,
                           report=json.loads((output / "comparison.json").read_text()))


def reference_figures(compared, index: int, checkpoint: Path, matching_args) -> dict:
    """The figures of ``test_matching.py`` (``matching_args``) and of ``train.py``'s
    regressor on ``checkpoint``, run as a user would."""
    out = compared.root / "reference" / str(index)
    assert test_matching.main([*matching_args, "--device", "cpu", "--output_dir",
                               str(out / "matching")]) == 0
    regressor = write_regressor_config(out, compared.root / "data" / "synthetic", checkpoint)
    assert train.main(["--config", str(regressor), "--device", "cpu", "--disable_workers"]) == 0
    (run,) = (out / "saved" / "models" / "tiny-keypoints-regressor").iterdir()
    return {"matching": json.loads((out / "matching" / "matching.json").read_text()),
            "regression": json.loads((run / "keypoints.json").read_text())}


def test_every_figure_is_the_project_commands_own(compared):
    dve, random = compared.report["entries"]
    untrained = Path(random["runs"][0]["checkpoint"])
    expected = [(run, reference_figures(compared, i, Path(run["checkpoint"]),
                                        ["--resume", run["checkpoint"]]))
                for i, run in enumerate(dve["runs"])]
    expected.append((random["runs"][0], reference_figures(
        compared, 2, untrained, ["--config", str(compared.config), "--seed", str(UNTRAINED_SEED)])))
    assert [run["checkpoint"] for run in dve["runs"]] == list(map(str, compared.checkpoints))
    for run, reference in expected:
        for source, keys in FIGURES.items():
            for key in keys:
                assert run[source][key] == reference[source][key], (run["checkpoint"], key)
        assert json.loads(Path(run["keypoints_json"]).read_text()) == run["regression"]
        assert json.loads(Path(run["matching_json"]).read_text()) == run["matching"]


def hand_summary(values):
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def test_means_and_sample_deviations_in_the_csv_markdown_and_printed_table(compared):
    keys = [(source, key) for source, names in FIGURES.items() for key in names]
    with open(compared.output / "comparison.csv", newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["entry", "checkpoints"] + [f"{h} {s}" for h in HEADERS
                                                  for s in ("mean", "std")]
    markdown = (compared.output / "comparison.md").read_text()
    assert "| entry | n | " + " | ".join(HEADERS) + " |" in markdown
    for entry, row in zip(compared.report["entries"], rows[1:]):
        assert row[:2] == [entry["label"], str(len(entry["runs"]))]
        cells, decimals = [], [3, 3, 3, 4, 4, 4]
        for column, ((source, key), places) in enumerate(zip(keys, decimals)):
            mean, std = hand_summary([run[source][key] for run in entry["runs"]])
            assert float(row[2 + 2 * column]) == pytest.approx(mean, rel=1e-12, abs=1e-15)
            if std is None:
                assert row[3 + 2 * column] == ""
                cells.append(f"{mean:.{places}f}")
            else:
                assert float(row[3 + 2 * column]) == pytest.approx(std, rel=1e-9, abs=1e-15)
                cells.append(f"{mean:.{places}f} ± {std:.{places}f}")
        line = f"| {entry['label']} | {len(entry['runs'])} | " + " | ".join(cells) + " |"
        assert line in markdown.splitlines()
        printed = [text.split() for text in compared.printed.splitlines()
                   if text.startswith(entry["label"] + " ")]
        assert printed == [[entry["label"], str(len(entry["runs"])),
                            *" ".join(cells).split()]]
    assert [len(entry["runs"]) for entry in compared.report["entries"]] == [2, 1]


def test_the_untrained_checkpoint_is_the_seeded_network(compared):
    (run,) = compared.report["entries"][1]["runs"]
    state = torch.load(run["checkpoint"], weights_only=True)
    torch.manual_seed(UNTRAINED_SEED)
    network = SmallNet(num_output_channels=8)
    assert state["epoch"] == 0 and state["config"]["seed"] == UNTRAINED_SEED
    assert state["config"]["arch"]["args"]["num_output_channels"] == 8
    assert state["state_dict"].keys() == network.state_dict().keys()
    for key, value in network.state_dict().items():
        assert torch.equal(state["state_dict"][key], value), key


def test_the_contrastive_protocol_and_matching_settings_per_entry(compared):
    """``--protocol contrastive`` with a matching-only network setting of one entry
    (stride-1 descriptors) gives ``test_matching.py``'s figures for the same options;
    the regressor still trains on the checkpoint's own network."""
    output = compared.root / "contrastive"
    run_compare("--entry", f"random=untrained:{compared.config}@{UNTRAINED_SEED}",
                "--regressor_config", str(compared.regressor), "--output_dir", str(output),
                "--protocol", "contrastive", "--matching_set", "random:arch.args.do_maxpool=false")
    report = json.loads((output / "comparison.json").read_text())
    assert report["protocol"] == {"name": "contrastive", "seed": 1, "reference_width": 70.0,
                                  "pixel_centres": True}
    (run,) = report["entries"][0]["runs"]
    out = compared.root / "reference-contrastive"
    assert test_matching.main(["--config", str(compared.config), "--seed", str(UNTRAINED_SEED),
                               "--protocol", "contrastive", "--set", "arch.args.do_maxpool=false",
                               "--device", "cpu", "--output_dir", str(out)]) == 0
    assert run["matching"] == {**json.loads((out / "matching.json").read_text()),
                               "checkpoint": run["checkpoint"]}
    assert run["regression"] == compared.report["entries"][1]["runs"][0]["regression"]


@pytest.mark.parametrize("entry, message", [
    ("dve", "--entry dve: expected LABEL=CKPT[,CKPT...] or LABEL=untrained:"),
    ("my run=x.pth", "the label 'my run' names a folder of the output"),
    ("dve=a.pth,,b.pth", "an empty checkpoint in the list"),
    ("r=untrained:c.json@0,x", "the seeds after '@' must be integers"),
    ("r=untrained:c.json", "expected untrained:CONFIG.json@SEED"),
    ("dve={missing}", "--entry dve: no checkpoint at"),
    ("bare={bare}", "stores no config, and compare.py reads each network from"),
])
def test_a_bad_entry_is_a_one_line_user_error(tmp_path, caplog, entry, message):
    bare = tmp_path / "bare.pth"
    torch.save(SmallNet(num_output_channels=8).state_dict(), bare)
    entry = entry.format(missing=tmp_path / "absent.pth", bare=bare)
    regressor = write_regressor_config(tmp_path, tmp_path / "data", tmp_path / "any.pth")
    assert compare.main(["--entry", entry, "--regressor_config", str(regressor),
                         "--output_dir", str(tmp_path / "out"), "--device", "cpu"]) == 2
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert message in line and "\n" not in line


def test_mistakes_in_the_other_options_are_one_line_user_errors(tmp_path, caplog):
    config = write_tiny_config(tmp_path)
    regressor = write_regressor_config(tmp_path, tmp_path / "data", tmp_path / "any.pth")
    entry = f"r=untrained:{config}@0"
    common = ["--output_dir", str(tmp_path / "out"), "--device", "cpu"]
    attempts = {
        "the label 'r' is given twice": ["--entry", entry, "--entry", entry,
                                         "--regressor_config", str(regressor)],
        "no 'keypoint_regressor' block": ["--entry", entry, "--regressor_config", str(config)],
        "no --entry is labelled 'other'": ["--entry", entry, "--regressor_config",
                                           str(regressor), "--matching_set", "other:seed=1"],
        "compare.py sets arch, finetune_from": ["--entry", entry, "--regressor_config",
                                                str(regressor), "--set", "finetune_from=x.pth"],
    }
    for message, args in attempts.items():
        caplog.clear()
        assert compare.main([*args, *common]) == 2, message
        (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert message in line and "\n" not in line


def test_the_table_of_hand_made_figures(tmp_path):
    """Three checkpoints of one entry and one of another, every figure non-trivial: the
    sample standard deviation divides by n - 1 (here 2)."""
    def record(label, same, different, iod, auc8, auc10, failure):
        return {"label": label,
                "matching": {"same_identity": same, "different_identity": different},
                "regression": {"inter_ocular_error": iod, "auc@8": auc8, "auc@10": auc10,
                               "failure_rate@10": failure}}

    records = [record("a", 1.0, 4.0, 5.0, 0.25, 0.5, 0.0),
               record("b", 2.5, 3.0, 7.5, 0.1, 0.2, 0.5),
               record("a", 2.0, 6.0, 6.0, 0.5, 0.75, 0.5),
               record("a", 3.0, 8.0, 10.0, 0.75, 1.0, 1.0)]
    rows = summarize(records)
    write_comparison(rows, tmp_path, DVE_PROTOCOL, "MAFLAligned", "reg.json")
    with open(tmp_path / "comparison.csv", newline="") as stream:
        table = list(csv.reader(stream))
    # a: means 2, 6, 7, 0.5, 0.75, 0.5; deviations sqrt(2/2)=1, sqrt(8/2)=2, sqrt(14/2),
    # sqrt(0.125/2)=0.25, 0.25, 0.5
    assert [float(v) for v in table[1][2:]] == pytest.approx(
        [2, 1, 6, 2, 7, math.sqrt(7), 0.5, 0.25, 0.75, 0.25, 0.5, 0.5], rel=1e-12)
    assert table[1][:2] == ["a", "3"] and table[2][:2] == ["b", "1"]
    assert table[2][2:] == ["2.5", "", "3.0", "", "7.5", "", "0.1", "", "0.2", "", "0.5", ""]
    markdown = (tmp_path / "comparison.md").read_text().splitlines()
    assert "| a | 3 | 2.000 ± 1.000 | 6.000 ± 2.000 | 7.000 ± 2.646 | 0.5000 ± 0.2500 | " \
           "0.7500 ± 0.2500 | 0.5000 ± 0.5000 |" in markdown
    assert "| b | 1 | 2.500 | 3.000 | 7.500 | 0.1000 | 0.2000 | 0.5000 |" in markdown
    assert format_table(rows).splitlines()[2].split() == \
        ["b", "1", "2.500", "3.000", "7.500", "0.1000", "0.2000", "0.5000"]
