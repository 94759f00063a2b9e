"""TensorBoard figure of landmark regression: ``keypoints_intermediate``.

Listed in :data:`KEYPOINT_VISUALIZATIONS`, whose entries are called as
``fn(writer, images, outputs, tag, step, keypoints=ground_truth)`` with the regressor
outputs ``(pred (N, K, 2), intermediate (N, K, nI, 2))`` and ground truth (N, K, 2), all
in normalized coordinates of the (N, 3, h, w) normalized images.
"""
import matplotlib
import torch
from matplotlib.figure import Figure

from utils.image_normalization import denormalize_images
from utils.registry import Registry, named
from utils.tps import unnormalize_grid

MAX_IMAGES = 4


def keypoints_intermediate(writer, images, outputs, tag, step, keypoints=None):
    """Per image: ground truth (green circles), prediction (red crosses) and the virtual
    keypoints (small dots, one colour per annotated point)."""
    pred, intermediate = (o.detach().float().cpu() for o in outputs[:2])
    count = min(MAX_IMAGES, images.shape[0])
    height, width = images.shape[-2:]
    pixels = denormalize_images(images[:count].detach().float()).clamp(0, 1).cpu()
    pred = unnormalize_grid(pred, width, height)
    intermediate = unnormalize_grid(intermediate, width, height)
    truth = None if keypoints is None else unnormalize_grid(
        keypoints.detach().float().cpu(), width, height)
    colours = matplotlib.colormaps["hsv"](torch.linspace(0, 0.9, pred.shape[1]).numpy())
    figure = Figure(figsize=(3 * count, 3))
    axes = figure.subplots(1, count, squeeze=False)
    for index, axis in enumerate(axes[0]):
        axis.imshow(pixels[index].permute(1, 2, 0).numpy())
        for point in range(pred.shape[1]):
            virtual = intermediate[index, point]
            axis.scatter(virtual[:, 0], virtual[:, 1], s=3, color=colours[point], alpha=0.6)
        if truth is not None:
            axis.scatter(truth[index, :, 0], truth[index, :, 1], s=40, facecolors="none",
                         edgecolors="lime", linewidths=1.5)
        axis.scatter(pred[index, :, 0], pred[index, :, 1], s=30, marker="x", color="red")
        axis.set_xlim(-0.5, width - 0.5)
        axis.set_ylim(height - 0.5, -0.5)
        axis.axis("off")
    figure.tight_layout()
    writer.add_figure(f"{tag}/keypoints_intermediate", figure, step)


KEYPOINT_VISUALIZATIONS = Registry(
    "keypoint_visualization", "(writer, images (N, 3, h, w) normalized, outputs: the "
    "regressor's (pred (N, K, 2), intermediate (N, K, nI, 2)), tag, step, keypoints=ground "
    "truth (N, K, 2)), coordinates normalized to [-1, 1] of the images",
    named(keypoints_intermediate))
