"""regression_loss, inter_ocular_error and the error curve against hand computations."""
import csv
import json

import pytest
import torch

from model.keypoint_metrics import inter_ocular_error, inter_ocular_errors, regression_loss
from model.registry import LOSSES, METRICS
from utils.error_curve import (area_under_curve, cumulative_error_distribution, failure_rate,
                               write_error_report)


def test_registered_under_the_original_names():
    assert LOSSES.get("regression_loss") is regression_loss
    assert METRICS.get("inter_ocular_error") is inter_ocular_error


def test_regression_loss_is_smooth_l1_of_scaled_coordinates():
    pred = torch.tensor([[[0.05, 0.0], [0.3, -0.1]]])
    target = torch.zeros(1, 2, 2)
    # alpha = 10: differences 0.5, 0, 3, -1 -> 0.5 * 0.5^2, 0, 3 - 0.5, 0.5 * 1^2 (|d| = 1)
    expected = (0.125 + 0.0 + 2.5 + 0.5) / 4
    loss = regression_loss((pred, None), {"keypts_normalized": target}, alpha=10.0)
    assert loss.item() == pytest.approx(expected)


def test_inter_ocular_error_by_hand():
    target = torch.tensor([[[0.0, 0.0], [0.4, 0.0], [0.2, 0.3]],
                           [[0.0, 0.0], [0.0, 0.8], [0.1, 0.1]]])
    pred = target.clone()
    pred[0, 2] += torch.tensor([0.03, 0.04])  # error 0.05 at one point, IOD 0.4
    pred[1] += torch.tensor([0.0, 0.08])  # error 0.08 at every point, IOD 0.8
    errors = inter_ocular_errors(pred, target, (0, 1))
    assert errors.tolist() == pytest.approx([100 * 0.05 / 3 / 0.4, 100 * 0.08 / 0.8])
    meta = {"keypts_normalized": target, "eye_indices": (0, 1)}
    assert inter_ocular_error((pred, None), meta) == pytest.approx(errors.mean().item())


def test_inter_ocular_error_uses_the_given_eye_indices():
    target = torch.zeros(1, 68, 2)
    target[0, 36] = torch.tensor([-0.5, 0.0])  # 300-W outer eye corners
    target[0, 45] = torch.tensor([0.5, 0.0])
    pred = target + torch.tensor([0.1, 0.0])
    assert inter_ocular_errors(pred, target, (36, 45)).item() == pytest.approx(10.0)


ERRORS = [0.0, 2.0, 4.0, 12.0]  # percent of IOD


def test_ced_auc_and_failure_rate_by_hand():
    assert cumulative_error_distribution(ERRORS, [0, 1, 2, 11.9, 12]).tolist() == [
        0.25, 0.25, 0.5, 0.75, 1.0]
    # CED = 1/4 on [0, 2), 2/4 on [2, 4), 3/4 on [4, 12): area to 8 = 0.5 + 1 + 3 = 4.5
    assert area_under_curve(ERRORS, 8.0) == pytest.approx(4.5 / 8)
    # area to 10 = 0.5 + 1 + 4.5 = 6
    assert area_under_curve(ERRORS, 10.0) == pytest.approx(6.0 / 10)
    assert failure_rate(ERRORS, 10.0) == 0.25
    assert failure_rate([10.0], 10.0) == 0.0  # "above", not "at least"


def test_auc_matches_a_fine_riemann_sum_of_the_curve():
    errors = torch.rand(50, generator=torch.Generator().manual_seed(0)).mul(15).tolist()
    steps = torch.linspace(0, 10, 100001)
    fractions = torch.tensor(cumulative_error_distribution(errors, steps.tolist()))
    riemann = torch.trapezoid(fractions, steps).item() / 10
    assert area_under_curve(errors, 10.0) == pytest.approx(riemann, abs=1e-4)


def test_error_report_files(tmp_path):
    summary = write_error_report(ERRORS, tmp_path, title="test")
    written = json.loads((tmp_path / "keypoints.json").read_text())
    assert written == summary
    assert written["inter_ocular_error"] == pytest.approx(4.5)
    assert written["auc@8"] == pytest.approx(0.5625) and written["auc@10"] == pytest.approx(0.6)
    assert written["failure_rate@10"] == 0.25 and written["num_images"] == 4
    with open(tmp_path / "ced.csv") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["error_percent_iod", "fraction_of_images"]
    curve = {float(t): float(f) for t, f in rows[1:]}
    assert curve[0.0] == 0.25 and curve[3.0] == 0.5 and curve[12.0] == 1.0
    assert (tmp_path / "ced.png").read_bytes()[:4] == b"\x89PNG"
