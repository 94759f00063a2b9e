"""The claim table: different-identity matching error against embedding dimension, with and
without DVE, over seeds (issue 12; README "Results on the synthetic faces").

Usage: python -m misc.reproduce_claim [--seeds 0,1,2] [--configs C [C ...]]
           [--output_dir saved/claim/] [--device cpu|cuda|N] [--set KEY.PATH=VALUE ...]
           [--report_only]

For each config (default: the six ``configs/synthetic/smallnet-{3,16,64}d{,-dve}.json``;
``--configs`` takes paths, or names such as ``smallnet-64d`` for
``configs/synthetic/<name>.json``) and each seed, one ``train.main(["--config", C,
"--seeds", S, ...])`` call in this process, which trains and ends with the matching
evaluation (``matching.json`` in the run folder). Its wall time (everything ``train.main``
does: data generation on a first run, building, training, matching) goes into
``timing.json`` beside it.

Resuming: a (config, seed) is not trained again when ``<save_dir>/models/<experiment>/``
holds a finished run of it: a folder with a ``matching.json`` whose ``config.json`` equals
the config this command would run (the file with every ``--set`` applied, and that
``seed``), compared as a whole with every default written out (``trainer.run_config``),
so runs with other overrides are never taken for these.
Of several, the newest ``matching.json`` counts. Runs trained by ``train.py`` directly
count too (their wall time shows as unknown). A folder of the same config with
checkpoints but no ``matching.json`` (interrupted) is left as it is and the run is
trained again from scratch in a new folder: training is deterministic for a seed, so
the result is the run an uninterrupted call gives, and its wall time is one whole run.

Writes ``<output_dir>/claim_table.md`` (table and acceptance checks), ``claim_table.csv``
(full precision; std empty with one seed) and ``claim_different_identity.png``, and
prints the table and the checks. Mean and sample standard deviation (n - 1) over seeds,
as ``train.py --seeds`` logs them. The acceptance checks (issue 12): (a) without DVE,
64d minus 3d different-identity error >= 5 times the larger of their standard
deviations; (b) with DVE, 64d minus 3d <= 0.5 px (the error does not grow with the
dimension; falling, as the paper's 3.03 -> 2.77, passes); (c) no-DVE 64d minus DVE 64d >= 5 times
the larger standard deviation. Rows are found by (dimension, DVE).
"""
import argparse
import csv
import json
import logging
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import train
from trainer.run_config import read_config, resolve_defaults, resolve_seeds
from utils.config import run_directories
from utils.errors import USER_ERRORS, UserError, report_user_error
from utils.logging_setup import setup_logging
from utils.registry import ConfigError

_logger = logging.getLogger(__name__)

DEFAULT_CONFIGS = tuple(f"configs/synthetic/smallnet-{dim}d{suffix}.json"
                        for dim in (3, 16, 64) for suffix in ("", "-dve"))
DVE_LOSS = "dense_correlation_loss_dve"
TIMING_NAME = "timing.json"
# Paper, CelebA-trained smallnet, (same, different) identity error in pixels (SPEC section 8).
PAPER_MATCHING = {(3, False): (1.33, 2.89), (16, False): (1.25, 5.65), (64, False): (1.25, 5.68),
                  (3, True): (1.36, 3.03), (16, True): (1.28, 2.79), (64, True): (1.28, 2.77)}
MIN_STD_RATIO = 5.0      # checks (a) and (c): in units of the larger standard deviation
MAX_DVE_GROWTH_PX = 0.5  # check (b)
CSV_COLUMNS = ("config", "dim", "dve", "n_seeds", "seeds", "same_mean", "same_std",
               "different_mean", "different_std", "wall_time_s", "timed_runs", "copy_same",
               "copy_different", "grid_same", "grid_different", "paper_same", "paper_different")


class TrainingFailed(UserError):
    """``train.main`` returned a non-zero ``status`` after logging its one-line error."""

    def __init__(self, status: int):
        super().__init__(f"train.py exit status {status}")
        self.status = status


@dataclass
class ClaimConfig:
    """One config of the table as this command runs it.

    path: the config file; config: its content with the ``--set`` overrides applied;
    experiment_dir: ``<save_dir>/models/<experiment>``, where its run folders are.
    """
    path: Path
    config: Dict[str, Any]
    experiment_dir: Path

    @property
    def dim(self) -> Optional[int]:
        return self.config["arch"].get("args", {}).get("num_output_channels")

    @property
    def dve(self) -> bool:
        return self.config["loss"] == DVE_LOSS

    def run_config(self, seed: int) -> Dict[str, Any]:
        """What ``train.py`` writes as the run's ``config.json`` for ``seed`` (the
        resolved config: ``trainer.run_config``)."""
        return json.loads(json.dumps(resolve_defaults({**self.config, "seed": seed},
                                                      self.path)))

    def same_run(self, stored: Any, seed: int) -> bool:
        """Whether ``stored`` (a run's ``config.json``) is the run config of ``seed``,
        compared resolved, so runs written before configs were resolved still count."""
        if not isinstance(stored, dict):
            return False
        try:
            return resolve_defaults(stored, self.path) == self.run_config(seed)
        except (KeyError, TypeError, ValueError, ConfigError):  # not a config of ours
            return False


def config_file(text: str) -> Path:
    """A ``--configs`` entry: a path, or a bare name for ``configs/synthetic/<name>.json``."""
    if "/" in text or text.endswith(".json"):
        return Path(text)
    return Path("configs/synthetic") / f"{text}.json"


def load_claim_config(text: str, overrides: Sequence[str]) -> ClaimConfig:
    """Read a config with ``overrides``. Raises :class:`ConfigError` (missing file, bad
    JSON or override)."""
    config, path = read_config(str(config_file(text)), None, None, list(overrides))
    # the run folder's parent: the experiment folder, as train.py names it
    experiment_dir = run_directories(config, path, run_id="run")[0].parent
    return ClaimConfig(path, config, experiment_dir)


def _read_json(path: Path) -> Optional[Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def runs_of(claim: ClaimConfig, seed: int) -> List[Path]:
    """The run folders of ``claim`` whose ``config.json`` is the run config of ``seed``."""
    if not claim.experiment_dir.is_dir():
        return []
    return sorted(folder for folder in claim.experiment_dir.iterdir()
                  if folder.is_dir() and claim.same_run(_read_json(folder / "config.json"), seed))


def finished_run(claim: ClaimConfig, seed: int) -> Optional[Path]:
    """The newest run of (``claim``, ``seed``) with a ``matching.json``, or None."""
    done = [folder for folder in runs_of(claim, seed) if (folder / "matching.json").is_file()]
    if len(done) > 1:
        _logger.info("%s seed %d: %d finished runs, the newest counts", claim.path, seed, len(done))
    return max(done, key=lambda folder: (folder / "matching.json").stat().st_mtime, default=None)


def train_run(claim: ClaimConfig, seed: int, overrides: Sequence[str],
              device: Optional[str]) -> Path:
    """Train and evaluate (``claim``, ``seed``) with ``train.main``; write its wall time
    (seconds) into the run folder's ``timing.json``; -> the run folder.

    Raises:
        TrainingFailed: ``train.main`` failed (it has logged why, in one line).
        ConfigError: the run wrote no ``matching.json`` (its dataset has no keypoint
            annotations).
    """
    for folder in runs_of(claim, seed):
        if any(folder.glob("checkpoint-*.pth")):
            _logger.info("%s seed %d: %s was interrupted (no matching.json); left as it is, "
                         "training again from scratch", claim.path, seed, folder)
    argv = ["--config", str(claim.path), "--seeds", str(seed)]
    argv += [f"--set={item}" for item in overrides]
    argv += ["--device", device] if device else []
    _logger.info("training %s seed %d: train.py %s", claim.path, seed, " ".join(argv))
    start = time.perf_counter()
    status = train.main(argv)
    wall = time.perf_counter() - start
    if status != 0:
        raise TrainingFailed(status)
    folder = finished_run(claim, seed)
    if folder is None:
        raise ConfigError(f"{claim.path}: the run wrote no matching.json (dataset "
                          f"{claim.config['dataset']['type']} has no keypoint annotations); "
                          f"pass configs whose dataset has them")
    (folder / TIMING_NAME).write_text(json.dumps(
        {"wall_time_s": wall, "device": device or "default", "train_args": argv}, indent=2))
    _logger.info("%s seed %d: %.0f s, %s", claim.path, seed, wall, folder)
    return folder


def _mean_std(values: Sequence[float]):
    mean = statistics.mean(values) if values else None
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def summarize(claim: ClaimConfig, seeds: Sequence[int], folders: Dict[int, Path]) -> Dict:
    """One table row (keys :data:`CSV_COLUMNS`) from the finished runs ``folders``
    ({seed: run folder}); errors in pixels of the 70-px frame (SPEC section 6), means over
    the runs found (None where there are none; a std needs two)."""
    results = [json.loads((folders[s] / "matching.json").read_text()) for s in seeds if s in folders]
    timings = [_read_json(folders[s] / TIMING_NAME) for s in seeds if s in folders]
    walls = [t["wall_time_s"] for t in timings if isinstance(t, dict) and "wall_time_s" in t]
    same_mean, same_std = _mean_std([r["same_identity"] for r in results])
    different_mean, different_std = _mean_std([r["different_identity"] for r in results])
    paper = PAPER_MATCHING.get((claim.dim, claim.dve), (None, None))
    return {
        "config": claim.path.stem, "dim": claim.dim, "dve": claim.dve, "n_seeds": len(results),
        "seeds": " ".join(str(s) for s in seeds if s in folders),
        "same_mean": same_mean, "same_std": same_std,
        "different_mean": different_mean, "different_std": different_std,
        "wall_time_s": _mean_std(walls)[0], "timed_runs": len(walls),
        "copy_same": _mean_std([r["copy_baseline"]["same_identity"] for r in results])[0],
        "copy_different": _mean_std([r["copy_baseline"]["different_identity"] for r in results])[0],
        "grid_same": _mean_std([r["grid_limit"]["same_identity"] for r in results])[0],
        "grid_different": _mean_std([r["grid_limit"]["different_identity"] for r in results])[0],
        "paper_same": paper[0], "paper_different": paper[1],
    }


def _row(rows: Sequence[Dict], dim: int, dve: bool) -> Optional[Dict]:
    return next((r for r in rows if r["dim"] == dim and r["dve"] == dve and r["n_seeds"]), None)


def _std_ratio_check(label: str, high: Optional[Dict], low: Optional[Dict], what: str) -> Dict:
    if high is None or low is None:
        return {"check": label, "value": None, "status": "N/A",
                "text": f"{what}: no finished runs of both rows"}
    difference = high["different_mean"] - low["different_mean"]
    if high["different_std"] is None or low["different_std"] is None:
        return {"check": label, "value": None, "status": "UNDEFINED",
                "text": f"{what} = {difference:.2f} px; one seed, no standard deviation: "
                        f"not checkable (needs >= {MIN_STD_RATIO:g} stds)"}
    std = max(high["different_std"], low["different_std"])
    if std > 0:
        ratio = difference / std
    else:  # identical runs: any gap is infinitely many stds
        ratio = math.copysign(math.inf, difference) if difference else 0.0
    status = "PASS" if ratio >= MIN_STD_RATIO else "FAIL"
    return {"check": label, "value": ratio, "status": status,
            "text": f"{what} = {difference:.2f} px = {ratio:.1f} x the larger std "
                    f"({std:.2f} px); required >= {MIN_STD_RATIO:g}: {status}"}


def acceptance_checks(rows: Sequence[Dict]) -> List[Dict]:
    """Issue 12's three checks on the different-identity error of the table ``rows``
    (found by dimension and DVE; rows without runs do not count); each a dict with
    ``check`` ("a", "b", "c"), ``value`` (std units for a and c, pixels for b; None when
    not checkable), ``status`` (PASS, FAIL, UNDEFINED with one seed, N/A without the
    rows) and ``text``."""
    plain3, plain64, dve3, dve64 = (_row(rows, 3, False), _row(rows, 64, False),
                                    _row(rows, 3, True), _row(rows, 64, True))
    checks = [_std_ratio_check("a", plain64, plain3, "(a) no DVE, 64d - 3d different-identity")]
    if dve3 is None or dve64 is None:
        checks.append({"check": "b", "value": None, "status": "N/A",
                       "text": "(b) DVE 64d - 3d: no finished runs of both rows"})
    else:
        growth = dve64["different_mean"] - dve3["different_mean"]
        status = "PASS" if growth <= MAX_DVE_GROWTH_PX else "FAIL"
        checks.append({"check": "b", "value": growth, "status": status,
                       "text": f"(b) DVE 64d - 3d different-identity = {growth:+.2f} px; "
                               f"required <= {MAX_DVE_GROWTH_PX:g} px: {status}"})
    checks.append(_std_ratio_check("c", plain64, dve64, "(c) 64d, no DVE - DVE different-identity"))
    return checks


def _pm(mean: Optional[float], std: Optional[float]) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f}" + (f" +/- {std:.2f}" if std is not None else "")


def _pair(first: Optional[float], second: Optional[float]) -> str:
    return "-" if first is None else f"{first:.2f} / {second:.2f}"


def markdown_table(rows: Sequence[Dict]) -> str:
    """The table in Markdown, errors in pixels, mean +/- std over seeds."""
    lines = ["| config | dim | DVE | n seeds | same-identity | different-identity | "
             "wall time / run | copy baseline (same / different) | grid limit (same / "
             "different) | paper (same / different) |", "|---" * 10 + "|"]
    for row in rows:
        wall = "-" if row["wall_time_s"] is None else f"{row['wall_time_s']:.0f} s"
        if row["wall_time_s"] is not None and row["timed_runs"] < row["n_seeds"]:
            wall += f" ({row['timed_runs']} of {row['n_seeds']} timed)"
        lines.append(" | ".join([
            f"| {row['config']}", str(row["dim"]), "yes" if row["dve"] else "no",
            str(row["n_seeds"]), _pm(row["same_mean"], row["same_std"]),
            _pm(row["different_mean"], row["different_std"]), wall,
            _pair(row["copy_same"], row["copy_different"]),
            _pair(row["grid_same"], row["grid_different"]),
            _pair(row["paper_same"], row["paper_different"])]) + " |")
    return "\n".join(lines)


def write_csv(rows: Sequence[Dict], path: Path) -> None:
    """The rows at full precision; None (no std, no timing) as an empty field."""
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows({k: ("" if row[k] is None else row[k]) for k in CSV_COLUMNS}
                         for row in rows)


def plot_claim(rows: Sequence[Dict], path: Path) -> None:
    """Different-identity error (mean, std error bars) against dimension (log x), one line
    without and one with DVE; the grid limit and copy baseline (means over the rows) as
    horizontal lines; the two lines are drawn 3% left and right of their dimension."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [row for row in rows if row["n_seeds"] and row["dim"]]
    figure, axes = plt.subplots(figsize=(5.5, 4))
    for dve, label, shift in ((False, "without DVE", 0.97), (True, "with DVE", 1.03)):
        series = sorted((row for row in done if row["dve"] == dve), key=lambda row: row["dim"])
        if series:  # shifted apart a little (log x) so that the error bars do not overlap
            axes.errorbar([r["dim"] * shift for r in series], [r["different_mean"] for r in series],
                          yerr=[r["different_std"] or 0.0 for r in series], marker="o",
                          capsize=4, label=label)
    for key, label, style in (("grid_different", "grid limit", ":"),
                              ("copy_different", "copy-coordinates baseline", "--")):
        if done:
            axes.axhline(statistics.mean(r[key] for r in done), color="gray", linestyle=style,
                         label=label)
    dims = sorted({row["dim"] for row in done})
    axes.set_xscale("log")
    axes.set_xticks(dims, [str(d) for d in dims])
    axes.minorticks_off()
    axes.set_xlabel("embedding dimension")
    axes.set_ylabel("different-identity error (px, 70-px frame)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), metavar="C",
                        help="config files, or names in configs/synthetic/ (default: the six "
                        "smallnet-{3,16,64}d{,-dve})")
    parser.add_argument("--output_dir", type=Path, default=Path("saved/claim"),
                        help="where the table and plot go (default saved/claim/)")
    parser.add_argument("--device", help="passed to train.py (default: cuda if available)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config key of every run, e.g. "
                        "--set dataset.args.texture_strength=2")
    parser.add_argument("--report_only", action="store_true",
                        help="train nothing: the table of the finished runs there are")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        seeds = resolve_seeds(args.seeds, {}, "--seeds")
        claims = [load_claim_config(text, args.set) for text in args.configs]
        rows, trained = [], 0
        for claim in claims:
            folders = {}
            for seed in seeds:
                folder = finished_run(claim, seed)
                if folder is None and not args.report_only:
                    folder = train_run(claim, seed, args.set, args.device)
                    trained += 1
                if folder is not None:
                    folders[seed] = folder
            rows.append(summarize(claim, seeds, folders))
    except TrainingFailed as err:
        return err.status
    except USER_ERRORS as err:
        return report_user_error(_logger, err)
    checks = acceptance_checks(rows)
    table = markdown_table(rows)
    notes = (f"Seeds {','.join(map(str, seeds))}; overrides: {' '.join(args.set) or 'none'}; "
             f"errors in pixels of the 70-px frame, mean +/- sample std over seeds.")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "claim_table.md").write_text(
        "\n\n".join([table, notes, "\n".join(f"- {c['text']}" for c in checks)]) + "\n")
    write_csv(rows, args.output_dir / "claim_table.csv")
    plot_claim(rows, args.output_dir / "claim_different_identity.png")
    print(table, notes, *[c["text"] for c in checks], sep="\n")
    _logger.info("%d runs trained; wrote %s/claim_table.{md,csv} and "
                 "claim_different_identity.png", trained, args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
