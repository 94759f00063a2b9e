"""Cumulative error distribution (CED) of normalized landmark errors, its AUC and failure rate.

Errors are in percent of the inter-ocular distance (IOD). The CED at t is the fraction of
images whose error is at most t. The AUC up to a threshold T is the area under the CED
from 0 to T divided by T (so in [0, 1], 1 when every error is 0), computed exactly: the
CED is a step function and its integral is the mean of max(0, T - error).
"""
import csv
import json
import logging
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
from matplotlib.figure import Figure

_logger = logging.getLogger(__name__)

AUC_THRESHOLDS = (8.0, 10.0)
FAILURE_THRESHOLD = 10.0
CURVE_STEP = 0.05  # %IOD between points of the written curve


def cumulative_error_distribution(errors: Sequence[float], thresholds: Sequence[float]) -> np.ndarray:
    """Fraction of ``errors`` at most each threshold."""
    errors = np.sort(np.asarray(errors, dtype=np.float64))
    counts = np.searchsorted(errors, np.asarray(thresholds, dtype=np.float64), side="right")
    return counts / max(len(errors), 1)


def area_under_curve(errors: Sequence[float], threshold: float) -> float:
    """Area under the CED from 0 to ``threshold``, divided by ``threshold``."""
    errors = np.asarray(errors, dtype=np.float64)
    return float(np.clip(threshold - errors, 0.0, None).mean() / threshold)


def failure_rate(errors: Sequence[float], threshold: float = FAILURE_THRESHOLD) -> float:
    """Fraction of errors strictly above ``threshold``."""
    return float((np.asarray(errors, dtype=np.float64) > threshold).mean())


def summarize_errors(errors: Sequence[float]) -> Dict[str, float]:
    """Mean error, AUC at 8% and 10% IOD, failure rate above 10%, image count."""
    errors = np.asarray(errors, dtype=np.float64)
    summary = {"inter_ocular_error": float(errors.mean()), "num_images": int(errors.size)}
    for threshold in AUC_THRESHOLDS:
        summary[f"auc@{threshold:g}"] = area_under_curve(errors, threshold)
    summary[f"failure_rate@{FAILURE_THRESHOLD:g}"] = failure_rate(errors)
    return summary


def write_error_report(errors: Sequence[float], out_dir, title: str = "") -> Dict[str, float]:
    """Write ``keypoints.json`` (summary), ``ced.csv`` and ``ced.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize_errors(errors)
    upper = max(FAILURE_THRESHOLD, float(np.max(errors))) if len(errors) else FAILURE_THRESHOLD
    thresholds = np.arange(0.0, upper + CURVE_STEP, CURVE_STEP)
    fractions = cumulative_error_distribution(errors, thresholds)
    with open(out_dir / "ced.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["error_percent_iod", "fraction_of_images"])
        writer.writerows((f"{t:.4f}", f"{f:.6f}") for t, f in zip(thresholds, fractions))
    figure = Figure(figsize=(5, 4))
    axes = figure.subplots()
    axes.plot(thresholds, fractions)
    axes.set_xlim(0, FAILURE_THRESHOLD * 1.5)
    axes.set_ylim(0, 1)
    axes.set_xlabel("error (% inter-ocular distance)")
    axes.set_ylabel("fraction of images")
    axes.set_title(f"{title} mean {summary['inter_ocular_error']:.2f}%, "
                   f"AUC@10 {summary['auc@10']:.3f}".strip())
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(out_dir / "ced.png", dpi=100)
    (out_dir / "keypoints.json").write_text(json.dumps(summary, indent=2))
    _logger.info("inter-ocular error on %d images: %.4f%% (AUC@8 %.4f, AUC@10 %.4f, "
                 "failure rate@10 %.4f)", summary["num_images"], summary["inter_ocular_error"],
                 summary["auc@8"], summary["auc@10"], summary["failure_rate@10"])
    _logger.info("wrote keypoints.json, ced.csv and ced.png in %s", out_dir)
    return summary
