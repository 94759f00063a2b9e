"""Writing the synthetic CelebA layout to disk: plan, images, lists, marker, ensure.

Generation happens in a temporary sibling folder renamed into place at the end, so an
interrupted or concurrent run never leaves a half dataset at ``root``; the marker file is
written last and its presence means "complete". Identity ids run over train, then
validation, then test identities, so changing a count changes later ids. The default size
(3,700 images) takes about 40 s on one CPU core.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from data_loader.synthetic.identity import (identity_rng, image_rng, sample_identity,
                                            sample_variation)
from data_loader.synthetic.renderer import FaceRenderer
from data_loader.synthetic.texture import DEFAULT_TEXTURE_STRENGTH, check_texture_strength

_logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MARKER_NAME = "synthetic_faces.json"   # written last: its presence means "complete"
OWNER_NAME = ".synthetic_faces_owner"  # written first: "this folder is ours"
TEMP_INFIX = ".synthetic-tmp-"         # temporary sibling: <root name><infix><pid>-<hex>
LANDMARK_HEADER = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y "
                   "leftmouth_x leftmouth_y rightmouth_x rightmouth_y")
DEFAULT_ROOT = "data/synthetic_faces"  # SyntheticFaces' and the synthetic configs' root
EMBEDDING_CONFIG = "configs/synthetic/smallnet-16d-dve.json"  # writes DEFAULT_ROOT first


@dataclass(frozen=True)
class _Plan:
    """Which identity and image index every file holds, and the split blocks."""
    names: List[str]
    identities: List[int]   # 0-based identity ids
    image_indices: List[int]
    splits: List[int]
    mafl_train: List[str]
    mafl_test: List[str]


def _round_robin(first_identity: int, num_identities: int, count: int):
    """``count`` images over ``num_identities`` identities, consecutive ones differing."""
    return [(first_identity + j % num_identities, j // num_identities) for j in range(count)]


def _plan(num_train_identities, num_test_identities, images_per_identity, num_val_images,
          num_mafl_train, num_mafl_test) -> _Plan:
    num_val_identities = 0
    if num_val_images:
        num_val_identities = max(-(-num_val_images // images_per_identity), min(num_val_images, 2))
    blocks = [
        (0, _round_robin(0, num_train_identities, num_train_identities * images_per_identity)),
        (1, _round_robin(num_train_identities, num_val_identities, num_val_images)),
        (2, _round_robin(num_train_identities + num_val_identities, num_test_identities,
                         num_test_identities * images_per_identity)),
    ]
    names, identities, indices, splits = [], [], [], []
    for split, block in blocks:
        for identity, index in block:
            names.append(f"{len(names) + 1:06d}.jpg")
            identities.append(identity)
            indices.append(index)
            splits.append(split)
    train = [n for n, s in zip(names, splits) if s == 0]
    test = [n for n, s in zip(names, splits) if s == 2]
    return _Plan(names, identities, indices, splits,
                 mafl_train=train[len(train) - num_mafl_train:] if num_mafl_train else [],
                 mafl_test=test[:num_mafl_test])


def _checked_params(texture_strength, **params) -> dict:
    """The generation parameters as plain ints (``texture_strength`` a float), after
    checking them."""
    texture_strength = check_texture_strength(texture_strength)
    for key, value in params.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise ValueError(f"synthetic faces: {key} must be an integer, got {value!r}")
        if value < 0:
            raise ValueError(f"synthetic faces: {key} must be >= 0, got {value}")
    if params["images_per_identity"] < 1:
        raise ValueError("synthetic faces: images_per_identity must be >= 1")
    for kind in ("train", "test"):
        count = params[f"num_{kind}_identities"]
        if count < 2:
            raise ValueError(f"synthetic faces: num_{kind}_identities must be >= 2 so that "
                             f"consecutive images differ in identity, got {count}")
        available, wanted = count * params["images_per_identity"], params[f"num_mafl_{kind}"]
        if wanted > available:
            raise ValueError(f"synthetic faces: num_mafl_{kind}={wanted} exceeds the "
                             f"{available} {kind} images")
    return dict({key: int(value) for key, value in params.items()},
                texture_strength=texture_strength)


def _write_lists(tmp: Path, plan: _Plan, landmarks: np.ndarray) -> None:
    (tmp / "Anno").mkdir()
    (tmp / "Eval").mkdir()
    (tmp / "MAFL").mkdir()
    coords = np.rint(landmarks).astype(int).reshape(len(plan.names), -1).tolist()
    rows = [f"{name} " + " ".join(map(str, row)) for name, row in zip(plan.names, coords)]
    (tmp / "Anno" / "list_landmarks_align_celeba.txt").write_text(
        f"{len(plan.names)}\n{LANDMARK_HEADER}\n" + "\n".join(rows) + "\n")
    (tmp / "Anno" / "identity_CelebA.txt").write_text(
        "".join(f"{n} {i + 1}\n" for n, i in zip(plan.names, plan.identities)))
    (tmp / "Eval" / "list_eval_partition.txt").write_text(
        "".join(f"{n} {s}\n" for n, s in zip(plan.names, plan.splits)))
    (tmp / "MAFL" / "training.txt").write_text("".join(f"{n}\n" for n in plan.mafl_train))
    (tmp / "MAFL" / "testing.txt").write_text("".join(f"{n}\n" for n in plan.mafl_test))


def _progress(total: int):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional here
        return None
    return tqdm(total=total, desc="synthetic faces", unit="img", disable=None, leave=False)


def _render_all(tmp: Path, plan: _Plan, seed: int, texture_strength: float) -> np.ndarray:
    hq_dir = tmp / "Img" / "img_align_celeba_hq"
    plain_dir = tmp / "Img" / "img_align_celeba"
    hq_dir.mkdir(parents=True)
    plain_dir.mkdir()
    by_identity = {}
    for position, identity in enumerate(plan.identities):
        by_identity.setdefault(identity, []).append(position)
    landmarks = np.zeros((len(plan.names), 5, 2))
    bar = _progress(len(plan.names))
    for identity, positions in by_identity.items():
        renderer = FaceRenderer(sample_identity(identity_rng(seed, identity)), texture_strength)
        for position in positions:
            var = sample_variation(image_rng(seed, identity, plan.image_indices[position]))
            image, landmarks[position] = renderer.render(var)
            name = plan.names[position]
            image.save(hq_dir / name, quality=95)
            try:
                os.link(hq_dir / name, plain_dir / name)
            except OSError:
                shutil.copyfile(hq_dir / name, plain_dir / name)
        if bar is not None:
            bar.update(len(positions))
    if bar is not None:
        bar.close()
    return landmarks


def _read_marker(root: Path) -> Optional[dict]:
    try:
        return json.loads((root / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None


def _recorded_params(marker: dict) -> Optional[dict]:
    """The parameters a marker records; one written before ``texture_strength`` existed
    lacks that key and holds the texture of strength 1.0."""
    params = marker.get("params")
    return {"texture_strength": 1.0, **params} if isinstance(params, dict) else None


def _is_complete(root: Path, params: dict) -> bool:
    marker = _read_marker(root)
    return isinstance(marker, dict) and marker.get("format_version") == FORMAT_VERSION \
        and _recorded_params(marker) == params


def _is_ours(root: Path) -> bool:
    return (root / MARKER_NAME).is_file() or (root / OWNER_NAME).is_file()


def is_synthetic_root(root) -> bool:
    """Whether ``root`` holds, or by its name is meant to hold, the synthetic faces: it is
    named like ``DEFAULT_ROOT`` or this module wrote (part of) it."""
    root = Path(root)
    return root.name == Path(DEFAULT_ROOT).name or _is_ours(root)


def synthetic_data_remedy() -> str:
    """What to run when the synthetic faces are missing or damaged: they are generated
    (by any SyntheticFaces run), never downloaded."""
    return (f"the synthetic faces are generated, not downloaded: python train.py --config "
            f"{EMBEDDING_CONFIG} writes them to {DEFAULT_ROOT} before training (as does every "
            f"configs/synthetic/*.json; delete a damaged copy first)")


def _foreign_error(root: Path) -> RuntimeError:
    return RuntimeError(f"{root} exists and is not a synthetic CelebA folder (no {MARKER_NAME}): "
                        f"remove it or pass another root")


def _remove_stale_temps(root: Path) -> None:
    """Delete temporary siblings left by runs whose process no longer exists."""
    prefix = root.name + TEMP_INFIX
    for path in root.parent.glob(prefix + "*"):
        try:
            pid = int(path.name[len(prefix):].split("-")[0])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:  # alive, another user's
            continue


def write_synthetic_celeba(root, *, num_train_identities: int = 300,
                           num_test_identities: int = 60, images_per_identity: int = 10,
                           num_val_images: int = 100, num_mafl_train: int = 1000,
                           num_mafl_test: int = 300, seed: int = 0,
                           texture_strength: float = DEFAULT_TEXTURE_STRENGTH) -> None:
    """Write a synthetic CelebA (SPEC section 5 layout) under ``root``, replacing ours.

    Splits: ``num_train_identities * images_per_identity`` train images (split 0), then
    ``num_val_images`` validation images of their own identities (split 1), then
    ``num_test_identities * images_per_identity`` test images (split 2) of identities
    disjoint from the others; within each block identities go round-robin, so
    consecutive images always differ in identity. MAFL training is the last
    ``num_mafl_train`` train images, MAFL testing the first ``num_mafl_test`` test images.
    ``texture_strength`` scales every identity's fine texture (skin noise, freckles,
    moles, hair strand width; ``data_loader.synthetic.texture``): default 2.0, 1.0 the original, 0 none.

    Raises:
        RuntimeError: ``root`` is a non-empty folder that this function did not write.
        ValueError: a parameter is out of range.
    """
    params = _checked_params(
        num_train_identities=num_train_identities, num_test_identities=num_test_identities,
        images_per_identity=images_per_identity, num_val_images=num_val_images,
        num_mafl_train=num_mafl_train, num_mafl_test=num_mafl_test, seed=seed,
        texture_strength=texture_strength)
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir()) and not _is_ours(root)):
        raise _foreign_error(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(root)
    start = time.perf_counter()
    plan = _plan(**{k: v for k, v in params.items() if k not in ("seed", "texture_strength")})
    tmp = root.parent / f"{root.name}{TEMP_INFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        (tmp / OWNER_NAME).write_text("written by data_loader/synthetic/writer.py\n")
        landmarks = _render_all(tmp, plan, params["seed"], params["texture_strength"])
        _write_lists(tmp, plan, landmarks)
        counts = {name: plan.splits.count(split)
                  for split, name in enumerate(("train", "val", "test"))}
        (tmp / MARKER_NAME).write_text(json.dumps(
            {"format": "synthetic_faces", "format_version": FORMAT_VERSION, "params": params,
             "counts": counts}, indent=1) + "\n")
        _move_into_place(tmp, root, params)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _logger.info("wrote %d synthetic faces to %s in %.1f s", len(plan.names), root,
                 time.perf_counter() - start)


def _move_into_place(tmp: Path, root: Path, params: dict) -> None:
    """Rename the finished ``tmp`` to ``root``, replacing only a folder of ours."""
    if _is_complete(root, params):  # a concurrent run finished first: keep its copy
        return
    if root.exists():
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        elif _is_ours(root):
            old = root.parent / f"{root.name}{TEMP_INFIX}{os.getpid()}-old-{uuid.uuid4().hex[:8]}"
            os.replace(root, old)
            shutil.rmtree(old, ignore_errors=True)
        else:
            raise _foreign_error(root)
    os.replace(tmp, root)


def ensure_synthetic_celeba(root, *, num_train_identities: int = 300,
                            num_test_identities: int = 60, images_per_identity: int = 10,
                            num_val_images: int = 100, num_mafl_train: int = 1000,
                            num_mafl_test: int = 300, seed: int = 0,
                            texture_strength: float = DEFAULT_TEXTURE_STRENGTH) -> bool:
    """Write the synthetic CelebA unless ``root`` already holds it with these parameters.

    Returns True when it generated. Arguments: see ``write_synthetic_celeba``; a copy
    whose marker predates ``texture_strength`` counts as written with 1.0.
    """
    params = _checked_params(
        num_train_identities=num_train_identities, num_test_identities=num_test_identities,
        images_per_identity=images_per_identity, num_val_images=num_val_images,
        num_mafl_train=num_mafl_train, num_mafl_test=num_mafl_test, seed=seed,
        texture_strength=texture_strength)
    if _is_complete(Path(root), params):
        return False
    write_synthetic_celeba(root, **params)
    return True
