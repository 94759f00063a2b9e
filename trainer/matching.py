"""Same- and different-identity landmark matching (SPEC section 6).

Images are taken two at a time in dataset order (A, B); each becomes a warped pair. The
descriptor at each keypoint of A's first warped image is matched (arg-max dot product
over all cells) into A's second image (same identity) and B's second image (different
identity). Errors are Euclidean distances in pixels of a 70-pixel-wide frame.

Two references are computed on the same pairs: the copy-coordinates baseline (predict
the target keypoint at the source keypoint's pixel) and the grid limit (the target
keypoint snapped to the nearest feature cell: the best any cell-level match can do).

Two protocols (:class:`MatchingProtocol`) share the pairs and the matching and differ in
the warps' seed and the scale to the 70-px frame: DVE's (SPEC section 6) and the
contrastive method's (SPEC-contrastive section 5).
"""
import inspect
import logging
from dataclasses import dataclass
from typing import Dict, Optional

import torch
from matplotlib.figure import Figure
from torch.utils.data import DataLoader, Subset

from data_loader.device_pipeline import PairPipeline
from data_loader.warper import Warper
from utils.errors import UserError
from utils.image_normalization import denormalize_images

_logger = logging.getLogger(__name__)

MATCHING_WARPER_ARGS = dict(warpsd_all=0.0005, warpsd_subset=0.005, transsd=0.05,
                            scalesd=0.05, rotsd=2.5, im1_multiplier=1.0, im1_multiplier_aff=1.0)
REFERENCE_WIDTH = 70.0


@dataclass(frozen=True)
class MatchingProtocol:
    """The settings in which the matching protocols differ; the pairs (images two at a
    time, ``MATCHING_WARPER_ARGS`` warps, the config's crop) and the matching (nearest
    cell ``round(k / stride)``, arg-max dot product) are shared.

    name: how the command line and ``matching.json`` call it.
    seed: the seed of the warps' generator.
    reference_width: the width (pixels) of the frame errors are reported in.
    pixel_centres: False: pixels scale by ``reference_width / frame_width`` (DVE: 70/96);
        True: the first and last pixel centres of both frames correspond, pixels scale by
        ``(reference_width - 1) / (frame_width - 1)`` (the contrastive method's
        ``(n + 1) / 2 * 69`` of a normalized coordinate n, i.e. pixel * 69/95).

    The contrastive method's nearest pixel ``round((n + 1) / 2 * 95)`` is this cell
    lookup at stride 1 (its 96-px hypercolumn); other strides keep ``round(k / stride)``.
    """
    name: str
    seed: int
    reference_width: float = REFERENCE_WIDTH
    pixel_centres: bool = False

    def scale(self, frame_width: int) -> float:
        """Pixels of the reference frame per pixel of the ``frame_width``-wide frame."""
        if self.pixel_centres:
            return (self.reference_width - 1) / (frame_width - 1)
        return self.reference_width / frame_width


# SPEC section 6: seed 0, pixel * 70 / (imwidth - 2 crop).
DVE_PROTOCOL = MatchingProtocol("dve", seed=0)
# SPEC-contrastive section 5: seed 1, pixel * 69 / 95. Its 96-px hypercolumn with per-layer
# L2 normalisation is a setting of the network (its ``arch.args``), not of the protocol.
CONTRASTIVE_PROTOCOL = MatchingProtocol("contrastive", seed=1, pixel_centres=True)
PROTOCOLS = {protocol.name: protocol for protocol in (DVE_PROTOCOL, CONTRASTIVE_PROTOCOL)}


class MatchingDataError(UserError, ValueError):
    """The dataset to match on has fewer than two images, so no pair (A, B) can be
    formed; the message names the dataset, split and root, its size and the fix."""


def split_name(dataset) -> str:
    """The split a dataset built with ``train=False`` reads, in words: "MAFL test"
    (CelebA types, ``val_split`` "mafl"), "validation (use_minival)" or "test"."""
    if getattr(dataset, "val_split", None) == "mafl":
        return "MAFL test"
    if getattr(dataset, "use_minival", False):
        return "validation (use_minival)"
    return "test"


def require_image_pairs(dataset) -> None:
    """Raise :class:`MatchingDataError` unless ``dataset`` holds at least two images (one
    pair, SPEC section 6); the remedy names the split arguments its constructor takes."""
    if len(dataset) >= 2:
        return
    accepted = inspect.signature(type(dataset)).parameters
    remedies = ["add images to that split"]
    if getattr(dataset, "use_minival", False):
        remedies.append("set dataset.args.use_minival to false")
    else:
        if "test_fraction" in accepted:
            remedies.append("raise dataset.args.test_fraction")
        if "test_list" in accepted:
            remedies.append("give dataset.args.train_list and test_list")
    where = (f"{type(dataset).__name__} ({split_name(dataset)} split, root "
             f"{getattr(dataset, 'root', '-')})")
    raise MatchingDataError(f"the matching evaluation needs at least two images (a pair), but "
                            f"{where} has {len(dataset)} image{'s' * (len(dataset) != 1)}: "
                            f"{', or '.join(remedies)}")


def keypoint_cells(keypts: torch.Tensor, stride: float, height: int, width: int) -> torch.Tensor:
    """(P, K, 2) pixels -> (P, K) flat indices of the nearest feature cells.

    ``torch.round`` rounds half to even, like the original's numpy rounding. Warped
    keypoints carry the original's float32 pixel positions (``utils.tps.pixel_positions``),
    whose error of a few 1e-6 decides the ties of ``k / stride`` (SPEC section 6)."""
    cx = torch.round(keypts[..., 0] / stride).long().clamp(0, width - 1)
    cy = torch.round(keypts[..., 1] / stride).long().clamp(0, height - 1)
    return cy * width + cx


def match_keypoints(feats_src: torch.Tensor, keypts_src: torch.Tensor,
                    feats_dst: torch.Tensor, stride: float) -> torch.Tensor:
    """Pixel position in ``feats_dst`` of the best match of each source keypoint.

    Args:
        feats_src, feats_dst: (P, C, H, W) descriptors.
        keypts_src: (P, K, 2) source keypoints in pixels.
    Returns: (P, K, 2) predicted pixels (cell * stride).
    """
    _, channels, height, width = feats_src.shape
    cells = keypoint_cells(keypts_src, stride, height, width)  # (P, K)
    src = feats_src.flatten(2).gather(2, cells[:, None, :].expand(-1, channels, -1))  # (P, C, K)
    scores = torch.einsum("pck,pcm->pkm", src, feats_dst.flatten(2))  # (P, K, H*W)
    best = scores.argmax(dim=2)  # (P, K)
    return torch.stack([best % width, best // width], dim=-1).to(keypts_src.dtype) * stride


def grid_limit_prediction(keypts: torch.Tensor, stride: float, height: int, width: int):
    """The feature-cell pixel closest to each keypoint: (P, K, 2)."""
    cells = keypoint_cells(keypts, stride, height, width)
    return torch.stack([cells % width, cells // width], dim=-1).to(keypts.dtype) * stride


ERROR_NAMES = ("same", "different", "copy_same", "copy_different", "grid_same", "grid_different")


def pair_errors(feats: torch.Tensor, keypts: torch.Tensor, frame_width: int,
                protocol: MatchingProtocol = DVE_PROTOCOL):
    """The errors of one batch of pairs (A, B, A, B, ...), each warped twice.

    Args:
        feats: (2N, C, h, w) descriptors of the interleaved warped images.
        keypts: (2N, K, 2) their keypoints, pixels of the ``frame_width``-wide frame.
        protocol: its ``scale`` maps pixels to the reference frame.
    Returns: ({name: (N/2 * K,) errors in pixels of the 70-px frame} for the names of
        ``ERROR_NAMES``, {"same", "different": (N/2, K, 2) predicted pixels}).
    """
    feats_first, feats_second = feats[0::2], feats[1::2]
    keypts_first, keypts_second = keypts[0::2], keypts[1::2]
    height, width = feats.shape[-2:]
    stride, scale = frame_width / width, protocol.scale(frame_width)
    src, src_kp = feats_first[0::2], keypts_first[0::2]  # images A
    targets = {"same": (feats_second[0::2], keypts_second[0::2]),
               "different": (feats_second[1::2], keypts_second[1::2])}
    errors, predictions = {}, {}
    for name, (feats_dst, gt) in targets.items():
        predictions[name] = match_keypoints(src, src_kp, feats_dst, stride)
        grid = grid_limit_prediction(gt, stride, height, width)
        errors[name] = ((predictions[name] - gt).norm(dim=-1) * scale).flatten()
        errors[f"copy_{name}"] = ((src_kp - gt).norm(dim=-1) * scale).flatten()
        errors[f"grid_{name}"] = ((grid - gt).norm(dim=-1) * scale).flatten()
    return errors, predictions


@torch.no_grad()
def evaluate_matching(model: torch.nn.Module, dataset, device: torch.device, crop: int,
                      images_per_batch: int = 64, protocol: MatchingProtocol = DVE_PROTOCOL,
                      num_workers: int = 0, vis_path: Optional[str] = None) -> Dict:
    """Run the matching ``protocol`` over ``dataset`` (which must return ``keypts``).

    ``model`` maps a normalized (B, 3, H, W) batch to a list whose first entry is the
    (B, C, h, w) dense descriptors; the stride is the frame's width over ``w``. ``crop``:
    the margin (pixels of the loader image) removed on every side after warping (the
    config's ``dataset.args.crop``). Errors are pixels of the protocol's 70-px frame.
    Raises :class:`MatchingDataError` for a dataset of fewer than two images."""
    if images_per_batch % 2:
        raise ValueError("images_per_batch must be even (images are paired A, B)")
    require_image_pairs(dataset)
    count = len(dataset) // 2 * 2
    # The loader gets its own generator: its base-seed draw leaves the global one alone.
    loader = DataLoader(Subset(dataset, range(count)), batch_size=images_per_batch,
                        shuffle=False, num_workers=num_workers, drop_last=False,
                        generator=torch.Generator())
    pipeline = PairPipeline(Warper(**MATCHING_WARPER_ARGS), crop=crop)
    was_training = model.training
    model.eval()
    errors = {name: [] for name in ERROR_NAMES}
    # The original seeded the global generator right before the loop (SPEC section 6); a
    # generator of its own, seeded alike, draws the same warps and leaves global state alone.
    generator = torch.Generator(device=device).manual_seed(protocol.seed)
    for batch_index, batch in enumerate(loader):
        inputs = pipeline(batch, device, generator)  # N images -> N pairs (A, B, A, B...)
        feats = model(inputs["data"])[0].float()  # (2N, C, h, w)
        batch_errors, predictions = pair_errors(feats, inputs["meta"]["keypts"],
                                                inputs["meta"]["frame"][1], protocol)
        for name, values in batch_errors.items():
            errors[name].append(values)
        if batch_index == 0 and vis_path is not None:
            save_matching_figure(vis_path, inputs, predictions)
    model.train(was_training)
    mean = {name: torch.cat(values).mean().item() for name, values in errors.items()}
    return {
        "same_identity": mean["same"],
        "different_identity": mean["different"],
        "copy_baseline": {"same_identity": mean["copy_same"],
                          "different_identity": mean["copy_different"]},
        "grid_limit": {"same_identity": mean["grid_same"],
                       "different_identity": mean["grid_different"]},
        "num_image_pairs": count // 2,
        "protocol": protocol.name,
    }


def format_matching_table(result: Dict) -> str:
    rows = [("matched (this embedding)", result["same_identity"], result["different_identity"]),
            ("copy-coordinates baseline", result["copy_baseline"]["same_identity"],
             result["copy_baseline"]["different_identity"]),
            ("grid limit (best cell)", result["grid_limit"]["same_identity"],
             result["grid_limit"]["different_identity"])]
    lines = [f"{'mean pixel error (70 px frame)':32s} {'same-identity':>14s} {'different-identity':>19s}"]
    lines += [f"{name:32s} {same:14.3f} {diff:19.3f}" for name, same, diff in rows]
    return "\n".join(lines)


def save_matching_figure(path, inputs, predictions, max_rows: int = 4) -> None:
    """Source / same / different images of a ``PairPipeline`` batch ``inputs`` with true
    (green) and matched (red) keypoints (pixels of the cropped frame)."""
    images = denormalize_images(inputs["data"]).clamp(0, 1)  # (2N, 3, h, w)
    keypts = inputs["meta"]["keypts"]  # (2N, K, 2), pairs interleaved
    rows = min(max_rows, images.shape[0] // 4)
    figure = Figure(figsize=(9, 3 * rows))
    axes = figure.subplots(rows, 3, squeeze=False)
    for row in range(rows):
        a, b = 4 * row, 4 * row + 2  # first images of the pairs of A and B
        panels = [("source", a, None), ("same identity", a + 1, predictions["same"][row]),
                  ("different identity", b + 1, predictions["different"][row])]
        for axis, (title, index, matched) in zip(axes[row], panels):
            axis.imshow(images[index].permute(1, 2, 0).cpu().numpy())
            truth = keypts[index].cpu()
            axis.scatter(truth[:, 0], truth[:, 1], c="lime", s=18, label="true")
            if matched is not None:
                axis.scatter(matched[:, 0].cpu(), matched[:, 1].cpu(), c="red", s=18,
                             marker="x", label="matched")
            axis.set_title(title)
            axis.axis("off")
    axes[0][1].legend(loc="lower right", fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
