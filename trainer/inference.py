"""Landmarks, correspondences and colour maps of a trained network on any image.

The computation behind ``predict.py``. Each face is a region of an image (a box, or
the whole image), read exactly as the datasets read their images and turned into the
network input exactly as the training data was:

1. the image is read upright (EXIF orientation applied) as 8-bit RGB, by the datasets'
   own ``LandmarkImageDataset.open_image`` (``base.image_modes.viewer_rgb``);
2. the box is cut (zero padding outside the image) and resized bilinear to ``imwidth``
   x ``imwidth`` (``LandmarkImageDataset.render``: the map ``KeypointMap.from_box``,
   x -> (x - x0) * imwidth / (x1 - x0), SPEC section 5);
3. the ``crop`` margin is removed on every side, levels scaled to [0, 1] and normalized
   (``normalize_images``, SPEC section 4), as ``data_loader.keypoint_pipeline`` does
   for validation without a warp.

Results come back in pixels of the upright original image by the exact inverse of
steps 2 and 3 (:func:`region_to_original`); the regressor's output is normalized in the
cropped frame, x_n = 2 x / (w - 1) - 1 (SPEC section 2), ``utils.tps.unnormalize_grid``.
"""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from base.base_dataset import Box, LandmarkImageDataset
from utils.image_normalization import normalize_images
from data_loader.threehundredw import ThreeHundredW
from data_loader.warper import crop_images
from trainer.builders import dataset_geometry, resolve_dataset
from utils.errors import UserError
from trainer.matching import match_keypoints
from utils.registry import ConfigError
from utils.tps import unnormalize_grid
from utils.visualization import EMBEDDING_VISUALIZATIONS, MAX_IMAGES

_logger = logging.getLogger(__name__)
COLOUR_MAPS = ("sphere_colormap", "sphere_rand_proj_colormap")  # image-valued visualizations


class PointOutsideError(UserError, ValueError):
    """A source point of ``predict.py match`` lies outside the part of its region that
    the network sees; the message names the point and the region."""


@dataclass(frozen=True)
class Geometry:
    """How the training data became network inputs: the face region resized to
    ``imwidth`` x ``imwidth``, then ``crop`` pixels removed on every side."""
    imwidth: int
    crop: int

    @property
    def side(self) -> int:
        """Width (= height) of the network input, ``imwidth - 2 crop`` pixels."""
        return self.imwidth - 2 * self.crop


def training_geometry(config: dict, path) -> Geometry:
    """``dataset.args.imwidth`` and ``crop`` of the config, each defaulting to the dataset
    constructor's default, as the training run used them (SPEC section 5 lists the
    defaults). Logs a warning for a 300-W config, whose images were not one box cut and
    resized (``ThreeHundredW.render``). Raises ``ConfigError`` for an unknown dataset type
    or an imwidth that does not exceed twice the crop."""
    constructor = resolve_dataset(config, path)
    if issubclass(constructor, ThreeHundredW):
        _logger.warning("%s: a 300-W model was trained on a window around each face box "
                        "(side 100/52 of the box width, nearest-neighbour scaling): give "
                        "--box as that window (docs/predict.md)", path)
    sizes = dataset_geometry(config, path)
    for key, value in sizes.items():
        if value is None:
            raise ConfigError(f"{path}: dataset.args.{key} is not set and "
                              f"{config['dataset']['type']} has no default; set it")
    geometry = Geometry(**{key: int(value) for key, value in sizes.items()})
    if geometry.side < 2:
        raise ConfigError(f"{path}: dataset.args.imwidth {geometry.imwidth} must exceed twice "
                        f"dataset.args.crop {geometry.crop}")
    return geometry


class FaceRegions(LandmarkImageDataset):
    """One item per face: an image file and its box (None: the whole image).

    An item is ``{"data": (3, imwidth, imwidth) uint8, "index": int, "box": (4,) float64
    x0, y0, x1, y1 in pixels of the upright image (x1, y1 exclusive)}``. Reading and resizing are the datasets' own
    (``open_image``, ``render``): a missing file raises ``MissingDataError``, an
    undecodable one ``ImageReadError``, naming the file and the face index.

    Args:
        faces: (image path, box or None) per face.
        imwidth, crop: the training ``Geometry``.
    """

    has_keypoints = False
    eye_indices = None

    def __init__(self, faces: Sequence[Tuple[Path, Optional[Box]]], imwidth: int, crop: int):
        super().__init__(root=".", train=False, imwidth=imwidth, crop=crop)
        self.image_paths = [Path(path) for path, _ in faces]
        self.boxes = [box for _, box in faces]

    @classmethod
    def missing_data_remedy(cls, root=None) -> str:
        return "check the path"

    @property
    def repair_remedy(self) -> str:
        return "replace that file or leave it out"

    def source_box(self, index: int, size: Tuple[int, int]) -> Box:
        """The face's box, or the whole image (0, 0, width, height)."""
        box = self.boxes[index]
        return (0, 0, size[0], size[1]) if box is None else box

    def __getitem__(self, index: int) -> dict:
        image = self.open_image(index)
        square, _ = self.render(index, image)
        box = [int(v) for v in self.source_box(index, image.size)]  # as render cuts it
        return {"data": torch.from_numpy(np.array(square)).permute(2, 0, 1).contiguous(),
                "index": index, "box": torch.tensor(box, dtype=torch.float64)}


def face_loader(regions: FaceRegions, batch_size: int, device: torch.device,
                num_workers: int = 0) -> DataLoader:
    """Batches of ``regions`` in order."""
    return DataLoader(regions, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      pin_memory=device.type == "cuda")


def region_to_original(points: Tensor, boxes: Tensor, geometry: Geometry) -> Tensor:
    """Pixels of the network input -> pixels of the upright original image.

    The inverse of the datasets' map (``KeypointMap.from_box`` then ``- crop``):
    x = (x_in + crop) * (x1 - x0) / imwidth + x0, y likewise with y0, y1.

    Args:
        points: (B, K, 2) (x, y) pixels of the (imwidth - 2 crop) square input.
        boxes: (B, 4) x0, y0, x1, y1 of each face's region, original pixels.
    Returns:
        (B, K, 2) float64 (x, y) original pixels.
    """
    boxes = boxes.to(torch.float64)
    origin, size = boxes[:, None, :2], boxes[:, None, 2:] - boxes[:, None, :2]  # (B, 1, 2)
    return (points.to(torch.float64) + geometry.crop) * size / geometry.imwidth + origin


def original_to_region(points: Tensor, boxes: Tensor, geometry: Geometry) -> Tensor:
    """Pixels of the upright original image -> pixels of the network input: the datasets'
    map, x_in = (x - x0) * imwidth / (x1 - x0) - crop. (B, K, 2), (B, 4) -> (B, K, 2)
    float64; the inverse of :func:`region_to_original`."""
    boxes = boxes.to(torch.float64)
    origin, size = boxes[:, None, :2], boxes[:, None, 2:] - boxes[:, None, :2]  # (B, 1, 2)
    return (points.to(torch.float64) - origin) * geometry.imwidth / size - geometry.crop


def normalized_to_original(points: Tensor, boxes: Tensor, geometry: Geometry) -> Tensor:
    """Regressor output -> original pixels: (B, K, 2) normalized (x, y) of the cropped
    input (x_n = 2 x / (side - 1) - 1, SPEC section 2) and (B, 4) boxes -> (B, K, 2)
    float64 pixels of the upright original image."""
    pixels = unnormalize_grid(points.to(torch.float64), geometry.side, geometry.side)
    return region_to_original(pixels, boxes, geometry)


def network_inputs(data: Tensor, geometry: Geometry, device: torch.device) -> Tensor:
    """Loader images (B, 3, imwidth, imwidth) uint8 -> the normalized, cropped network
    input (B, 3, side, side) float32 on ``device`` (SPEC section 4)."""
    images = crop_images(data.to(device, non_blocking=True).float(), geometry.crop)
    return normalize_images(images / 255.0)


def descriptors(embedding: nn.Module, inputs: Tensor) -> Tensor:
    """(B, 3, h, w) network inputs -> (B, C, H, W) float32 descriptors of an embedding
    network (the first of its outputs), as the matching evaluation takes them."""
    outputs = embedding(inputs)
    return (outputs[0] if isinstance(outputs, (list, tuple)) else outputs).float()


@torch.no_grad()
def predict_landmarks(model: nn.Module, loader: DataLoader, geometry: Geometry,
                      device: torch.device) -> Iterator[Tuple[Tensor, Tensor, Tensor]]:
    """Per batch of faces: (indices (B,), regions (B, 4), landmarks (B, K, 2) float64
    pixels of the upright original images) of a regression model
    (``trainer.builders.build_model`` with a ``keypoint_regressor``), run in eval mode."""
    model.eval()
    for batch in loader:
        pred, _ = model(network_inputs(batch["data"], geometry, device))  # (B, K, 2) normalized
        yield (batch["index"], batch["box"],
               normalized_to_original(pred.cpu(), batch["box"], geometry))


def source_cells(points: Tensor, box: Tensor, geometry: Geometry, path) -> Tensor:
    """Source points in original pixels (K, 2) -> (1, K, 2) float64 pixels of the network
    input of the region ``box`` (4,). Raises :class:`PointOutsideError` for a point
    outside that input (the region less the crop margin), naming it and the region."""
    inside = original_to_region(points[None], box[None], geometry)  # (1, K, 2)
    low, high = -0.5, geometry.side - 0.5  # the pixel extent of the input
    outside = ((inside < low) | (inside > high)).any(dim=-1)[0]  # (K,)
    if outside.any():
        index = int(outside.nonzero()[0])
        seen = region_to_original(torch.tensor([[[low, low], [high, high]]]), box[None],
                                  geometry)[0]
        x, y = points[index].tolist()
        raise PointOutsideError(
            f"--points: point {index + 1} ({x:g}, {y:g}) of {path} lies outside what the "
            f"network sees of its region, x {seen[0, 0]:.1f}..{seen[1, 0]:.1f}, y "
            f"{seen[0, 1]:.1f}..{seen[1, 1]:.1f} (the box less the crop margin of "
            f"{geometry.crop} of {geometry.imwidth} pixels); move the point or give a "
            f"--source_box around it")
    return inside


@torch.no_grad()
def match_into_targets(embedding: nn.Module, source: dict, points_in: Tensor,
                       loader: DataLoader, geometry: Geometry,
                       device: torch.device) -> Iterator[Tuple[Tensor, Tensor, Tensor]]:
    """Dense correspondence (SPEC section 6, ``trainer.matching.match_keypoints``): each
    source point's descriptor at its nearest feature cell, the arg-max dot product over
    the cells of each target, predicted pixel = cell * stride.

    Args:
        embedding: the embedding network (eval mode is set).
        source: the source face's loader item (batch of one: ``data`` (1, 3, W, W)).
        points_in: (1, K, 2) source points in pixels of its network input
            (:func:`source_cells`).
        loader: batches of target faces.
    Yields:
        per batch (indices (B,), target regions (B, 4), (B, K, 2) float64 matched
        pixels of the upright original target images).
    """
    embedding.eval()
    feats_src = descriptors(embedding, network_inputs(source["data"], geometry, device))
    stride = geometry.side / feats_src.shape[-1]
    keypts_src = points_in.to(device)  # (1, K, 2) float64
    for batch in loader:
        feats_dst = descriptors(embedding, network_inputs(batch["data"], geometry, device))
        count = feats_dst.shape[0]
        matched = match_keypoints(feats_src.expand(count, -1, -1, -1),
                                  keypts_src.expand(count, -1, -1), feats_dst, stride)
        yield (batch["index"], batch["box"],
               region_to_original(matched.cpu(), batch["box"], geometry))


class _ImageSink:
    """The ``add_images`` part of a TensorBoard writer: keeps what a visualization adds."""

    def __init__(self):
        self.images: List[Tensor] = []

    def add_images(self, tag: str, images: Tensor, step: int) -> None:
        self.images.append(images)


@torch.no_grad()
def colour_maps(embedding: nn.Module, loader: DataLoader, geometry: Geometry,
                device: torch.device, name: str = "sphere_colormap"
                ) -> Iterator[Tuple[Tensor, Tensor]]:
    """Per batch: (indices (B,), panels (B, 3, side, 2 side) float in [0, 1]): the network
    input beside the embedding's colour map, exactly as the TensorBoard visualization
    ``name`` (one of ``COLOUR_MAPS``, ``utils.visualization``) draws them."""
    visualization = EMBEDDING_VISUALIZATIONS.get(name)
    embedding.eval()
    for batch in loader:
        inputs = network_inputs(batch["data"], geometry, device)
        feats = descriptors(embedding, inputs)
        sink = _ImageSink()
        for start in range(0, inputs.shape[0], MAX_IMAGES):  # it draws MAX_IMAGES at most
            chunk = slice(start, start + MAX_IMAGES)
            visualization(sink, inputs[chunk], [feats[chunk]], "embed", 0)
        yield batch["index"], torch.cat(sink.images)
