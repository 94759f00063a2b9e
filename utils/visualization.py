"""TensorBoard visualizations of dense embeddings, selected by name in ``visualizations``.

Each is called as ``fn(writer, images, outputs, tag, step)`` with the normalized input
images (N, 3, h, w), the network outputs (a list whose first element is (N, C, H, W)),
a tag prefix and the global step.
"""
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from utils.image_normalization import denormalize_images
from utils.registry import Registry, named

MAX_IMAGES = 8


def sphere_to_rgb(descriptors: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) unit vectors -> RGB in [0, 1]."""
    return (descriptors.clamp(-1, 1) + 1) / 2


def random_projection(channels: int, device) -> torch.Tensor:
    """A fixed (seeded, reproducible) random C -> 3 projection."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(3, channels, generator=generator).to(device)


def _first_three(feats: torch.Tensor) -> torch.Tensor:
    if feats.shape[1] >= 3:
        return feats[:, :3]
    return F.pad(feats, (0, 0, 0, 0, 0, 3 - feats.shape[1]))


def _add_colormap(writer, images, colours, tag, step):
    colours = F.interpolate(colours, size=images.shape[-2:], mode="nearest")
    grid = torch.cat([denormalize_images(images).clamp(0, 1), colours], dim=3)  # side by side
    writer.add_images(tag, grid[:MAX_IMAGES].cpu(), step)


def sphere_colormap(writer, images, outputs, tag, step):
    """The first three embedding channels, L2-normalized, as RGB."""
    feats = outputs[0].detach().float()
    colours = sphere_to_rgb(F.normalize(_first_three(feats), dim=1))
    _add_colormap(writer, images, colours, f"{tag}/sphere_colormap", step)


def sphere_rand_proj_colormap(writer, images, outputs, tag, step):
    """A fixed random projection of the embedding to 3D, L2-normalized, as RGB."""
    feats = outputs[0].detach().float()
    projected = torch.einsum("kc,nchw->nkhw", random_projection(feats.shape[1], feats.device), feats)
    colours = sphere_to_rgb(F.normalize(projected, dim=1))
    _add_colormap(writer, images, colours, f"{tag}/sphere_rand_proj_colormap", step)


def _scatter(writer, images, points, tag, step):
    """3D scatter of (P, 3) points coloured by the image pixel under each cell."""
    pixels = denormalize_images(images[:1]).clamp(0, 1)
    colours = F.interpolate(pixels, size=points.shape[-2:], mode="bilinear", align_corners=False)
    colours = colours[0].permute(1, 2, 0).reshape(-1, 3).cpu().numpy()
    xyz = points[0].permute(1, 2, 0).reshape(-1, 3).cpu().numpy()
    figure = Figure(figsize=(4, 4))  # no pyplot: no global figure state, no backend switch
    axes = figure.add_subplot(projection="3d")
    axes.scatter(xyz[:, 0], xyz[:, 1], xyz[:, 2], c=colours, s=2)
    writer.add_figure(tag, figure, step)


def sphere_scatter3d(writer, images, outputs, tag, step):
    """Descriptors of the first image, L2-normalized (first three channels), in 3D."""
    feats = outputs[0].detach().float()
    _scatter(writer, images, F.normalize(_first_three(feats), dim=1), f"{tag}/sphere_scatter3d", step)


def sphere_norm_scatter3d(writer, images, outputs, tag, step):
    """Raw descriptors of the first image (first three channels, not normalized), in 3D."""
    feats = outputs[0].detach().float()
    _scatter(writer, images, _first_three(feats), f"{tag}/sphere_norm_scatter3d", step)


EMBEDDING_VISUALIZATIONS = Registry(
    "visualization", "(writer, images (N, 3, h, w) normalized, outputs: a list whose first "
    "element is the embedding (N, C, H, W), tag, step)",
    named(sphere_colormap, sphere_rand_proj_colormap, sphere_scatter3d, sphere_norm_scatter3d))
