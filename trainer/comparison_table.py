"""The comparison table of ``compare.py``: per entry, the mean and the sample standard
deviation over its checkpoints of each figure, printed and written as
``comparison.csv``, ``comparison.md`` and ``comparison.json`` (which also holds every
checkpoint's figures and where they came from).

The figures are those the project's commands write: ``same_identity`` and
``different_identity`` of ``matching.json`` (mean pixel error in the 70-px frame of the
matching protocol, SPEC section 6 / SPEC-contrastive section 5), and
``inter_ocular_error`` (% of the inter-ocular distance), ``auc@8``, ``auc@10`` (area under
the error curve up to 8 and 10 % IOD, divided by the threshold: 0-1) and
``failure_rate@10`` (fraction of images above 10 % IOD) of the regressor's
``keypoints.json`` (``utils.error_curve``).
"""
import csv
import dataclasses
import json
import math
import statistics
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

from trainer.matching import MatchingProtocol


class Figure(NamedTuple):
    """One column: ``key`` in the ``source`` part of a checkpoint's record (``matching``
    or ``regression``), its ``header`` with the unit, and the decimals shown."""
    key: str
    source: str
    header: str
    decimals: int


FIGURES = (
    Figure("same_identity", "matching", "same-identity (px, 70-px frame)", 3),
    Figure("different_identity", "matching", "different-identity (px, 70-px frame)", 3),
    Figure("inter_ocular_error", "regression", "error (% IOD)", 3),
    Figure("auc@8", "regression", "AUC@8% IOD", 4),
    Figure("auc@10", "regression", "AUC@10% IOD", 4),
    Figure("failure_rate@10", "regression", "failure@10% IOD (fraction)", 4),
)


def summarize(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Checkpoint records (``trainer.comparison.evaluate_checkpoint``) -> one row per
    label, in order of appearance: ``label``, ``checkpoints`` (count), ``mean`` and
    ``std`` ({figure key: value}; the sample standard deviation, n - 1 in the
    denominator, None for a single checkpoint) and ``runs`` (the records)."""
    labels = list(dict.fromkeys(record["label"] for record in records))
    rows = []
    for label in labels:
        runs = [record for record in records if record["label"] == label]
        mean, std = {}, {}
        for figure in FIGURES:
            values = [float(run[figure.source][figure.key]) for run in runs]
            mean[figure.key] = math.fsum(values) / len(values)
            std[figure.key] = statistics.stdev(values) if len(values) > 1 else None
        rows.append({"label": label, "checkpoints": len(runs), "mean": mean, "std": std,
                     "runs": runs})
    return rows


def _cell(row: Dict[str, Any], figure: Figure) -> str:
    """``mean ± std`` (just the mean for one checkpoint) at the figure's decimals."""
    text = f"{row['mean'][figure.key]:.{figure.decimals}f}"
    std = row["std"][figure.key]
    return text if std is None else f"{text} ± {std:.{figure.decimals}f}"


def format_table(rows: Sequence[Dict[str, Any]]) -> str:
    """The table as aligned plain text, one line per entry (``mean ± std`` over its
    checkpoints, the count in column ``n``)."""
    headers = ["entry", "n", *(figure.header for figure in FIGURES)]
    cells = [[row["label"], str(row["checkpoints"]), *(_cell(row, f) for f in FIGURES)]
             for row in rows]
    widths = [max(len(line[i]) for line in [headers, *cells]) for i in range(len(headers))]
    lines = ["  ".join(text.ljust(width) if i == 0 else text.rjust(width)
                       for i, (text, width) in enumerate(zip(line, widths)))
             for line in [headers, *cells]]
    return "\n".join(lines)


def _number(value: Optional[float]) -> str:
    return "" if value is None else repr(value)


def write_csv(rows: Sequence[Dict[str, Any]], path: Path) -> None:
    """``entry``, ``checkpoints``, then ``<header> mean`` and ``<header> std`` of each
    figure at full precision (Python's shortest round-trip repr); std empty for one
    checkpoint."""
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["entry", "checkpoints",
                         *(f"{figure.header} {stat}" for figure in FIGURES
                           for stat in ("mean", "std"))])
        for row in rows:
            writer.writerow([row["label"], row["checkpoints"],
                             *(_number(row[stat][figure.key]) for figure in FIGURES
                               for stat in ("mean", "std"))])


def markdown_table(rows: Sequence[Dict[str, Any]], description: str) -> str:
    """``description`` then the table in Markdown (``mean ± std``, n checkpoints)."""
    headers = ["entry", "n", *(figure.header for figure in FIGURES)]
    lines = [description, "", "| " + " | ".join(headers) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    for row in rows:
        lines.append("| " + " | ".join([row["label"], str(row["checkpoints"]),
                                         *(_cell(row, figure) for figure in FIGURES)]) + " |")
    lines += ["", "mean ± sample standard deviation over each entry's checkpoints (n)."]
    return "\n".join(lines) + "\n"


def describe(protocol: MatchingProtocol, eval_data: str, regressor_config) -> str:
    """One line saying what the figures are measured on."""
    return (f"Matching: {protocol.name} protocol (warps seeded {protocol.seed}) on "
            f"{eval_data}, test split; landmark regression: {regressor_config}.")


def write_comparison(rows: Sequence[Dict[str, Any]], output_dir: Path,
                     protocol: MatchingProtocol, eval_data: str, regressor_config) -> Path:
    """Write ``comparison.csv``, ``comparison.md`` and ``comparison.json`` (the rows with
    every checkpoint's record, the protocol, the evaluated data and the regressor config)
    into ``output_dir``; returns the JSON's path."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_csv(rows, output_dir / "comparison.csv")
    description = describe(protocol, eval_data, regressor_config)
    (output_dir / "comparison.md").write_text(markdown_table(rows, description))
    report = {"protocol": dataclasses.asdict(protocol), "eval_data": eval_data,
              "regressor_config": str(regressor_config),
              "units": {figure.key: figure.header for figure in FIGURES}, "entries": list(rows)}
    path = output_dir / "comparison.json"
    path.write_text(json.dumps(report, indent=2))
    return path
