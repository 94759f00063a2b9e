"""keypoints_intermediate draws ground truth, prediction and virtual points at their pixels."""
import numpy as np
import torch

from utils.keypoint_visualization import KEYPOINT_VISUALIZATIONS


class FigureWriter:
    def __init__(self):
        self.figures = {}

    def add_figure(self, tag, figure, step):
        self.figures[tag] = figure


def test_points_are_drawn_at_their_pixel_positions():
    visualize = KEYPOINT_VISUALIZATIONS.get("keypoints_intermediate")
    images = torch.zeros(2, 3, 21, 41)  # h = 21, w = 41
    truth = torch.tensor([[[-1.0, -1.0], [1.0, 1.0]]]).repeat(2, 1, 1)  # corners
    pred = torch.tensor([[[0.0, 0.0], [0.5, -0.5]]]).repeat(2, 1, 1)
    intermediate = torch.zeros(2, 2, 3, 2)
    writer = FigureWriter()
    visualize(writer, images, (pred, intermediate), "valid", 3, keypoints=truth)
    (axes_first, _) = writer.figures["valid/keypoints_intermediate"].axes
    virtual_a, virtual_b, drawn_truth, drawn_pred = axes_first.collections
    np.testing.assert_allclose(drawn_truth.get_offsets(), [[0, 0], [40, 20]])
    np.testing.assert_allclose(drawn_pred.get_offsets(), [[20, 10], [30, 5]])
    np.testing.assert_allclose(virtual_a.get_offsets(), [[20, 10]] * 3)
