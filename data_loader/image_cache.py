"""Opt-in preprocessed image cache (``"cache_images": true`` or ``misc/build_cache.py``).

A dataset item (``data`` (3, W, W) uint8, ``index``, with ``use_keypoints`` ``keypts``
(K, 2) float32 pixels of the W x W image) is a deterministic function of the dataset
type, its arguments, the split and the source files: every random step happens later,
on the device (``data_loader.device_pipeline``). So a split is decoded, cropped and
resized once into ``<cache_dir>/<DatasetType>-<train|eval>-<key[:16]>/``:

- ``images.u8``: (N, 3, W, W) uint8, raw C order (a numpy memmap);
- ``keypoints.f32``: (N, K, 2) float32 (x, y) pixels of the W x W image, only when the
  items carry ``keypts``;
- ``manifest.json``: the full key, shapes, dtypes and count, written last.

The folder is filled under a temporary name beside it and renamed into place in one
step, so a build that is killed or fails leaves no folder under the final name; a
folder whose manifest is missing, unreadable or of another key, or whose files have
the wrong size, is never read (it is rebuilt). Of two concurrent builders the first
rename wins and the other discards its copy.

The key is the sha256 of: ``FORMAT_VERSION``; the dataset type; its constructor
arguments with their defaults filled in, except ``PIPELINE_ONLY_ARGS`` (stored by the
dataset, read only by the device pipeline); the split; the source code of the dataset
class (every class of its MRO) and of ``base.image_modes``, and the Pillow version (a
changed decode or resize rebuilds); and the source fingerprint
(``data_loader.cache_key``).
"""
import json
import logging
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from base.base_dataset import one_line
from data_loader.cache_key import FORMAT_VERSION, ImageCacheError, cache_key
from data_loader.loaders import default_num_workers

_logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = "saved/image_cache"
IMAGES_FILE, KEYPOINTS_FILE, MANIFEST_FILE = "images.u8", "keypoints.f32", "manifest.json"
ITEM_KEYS = frozenset({"data", "index", "keypts"})
TEMP_MARK = ".tmp-"  # ".<final name>.tmp-<host>-<pid>-<random>": a folder being built
BUILD_BATCH = 64
GIB = 2 ** 30


def _expected_bytes(shape, dtype) -> int:
    return int(np.prod(shape)) * np.dtype(dtype).itemsize


def read_manifest(folder: Path, key: str) -> Tuple[Optional[Dict[str, Any]], str]:
    """(manifest, "") of a complete cache ``folder`` of ``key``, else (None, why not):
    no folder, no or unreadable manifest, another key or format, files of the wrong size."""
    if not folder.is_dir():
        return None, "not built"
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
    except (OSError, ValueError) as err:
        return None, f"no readable {MANIFEST_FILE} ({one_line(err)})"
    if not isinstance(manifest, dict) or manifest.get("key") != key or \
            manifest.get("format_version") != FORMAT_VERSION:
        return None, f"{MANIFEST_FILE} is of another key or format"
    arrays = [(IMAGES_FILE, manifest.get("image_shape"), np.uint8)]
    if manifest.get("keypoints_shape") is not None:
        arrays.append((KEYPOINTS_FILE, manifest["keypoints_shape"], np.float32))
    for name, shape, dtype in arrays:
        if not isinstance(shape, list) or not shape or shape[0] != manifest.get("count"):
            return None, f"{MANIFEST_FILE} gives no valid shape for {name}"
        path = folder / name
        if not path.is_file() or path.stat().st_size != _expected_bytes(shape, dtype):
            return None, f"{name} is missing or not {shape} {np.dtype(dtype).name}"
    return manifest, ""


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_builds(cache_dir: Path) -> None:
    """Remove the temporary folders under ``cache_dir`` left by builds of this host whose
    process is gone (killed); those of running builds and of other hosts stay."""
    host = socket.gethostname()
    for folder in cache_dir.glob(f".*{TEMP_MARK}*"):
        owner = folder.name.rpartition(TEMP_MARK)[2].rsplit("-", 2)  # host, pid, random
        if len(owner) == 3 and owner[0] == host and owner[1].isdigit() and \
                not _pid_running(int(owner[1])):
            _logger.info("image cache: removing %s, left by a build that did not finish", folder)
            shutil.rmtree(folder, ignore_errors=True)


def _temp_folder(final: Path) -> Path:
    name = f".{final.name}{TEMP_MARK}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return final.parent / name


def _allocate(path: Path, shape, dtype) -> np.memmap:
    """A zero-filled memmap of ``shape`` at ``path``, its blocks reserved on disk first
    (``posix_fallocate``), so a full disk fails here and not as a crash mid-write."""
    size = _expected_bytes(shape, dtype)
    with open(path, "wb") as handle:
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(handle.fileno(), 0, size)
        else:
            handle.truncate(size)
    return np.memmap(path, dtype=dtype, mode="r+", shape=tuple(shape))


def _check_item(first: dict, dataset_type: str) -> None:
    extra = sorted(set(first) - ITEM_KEYS)
    data, keypts = first.get("data"), first.get("keypts")
    if extra or not isinstance(data, torch.Tensor) or data.dtype != torch.uint8 or \
            data.dim() != 3 or (keypts is not None and keypts.dtype != torch.float32):
        raise ImageCacheError(f"{dataset_type}: the image cache holds items of 'data' (3, H, W) "
                              f"uint8, 'index' and 'keypts' float32, but this dataset gives "
                              f"{sorted(first)}; set cache_images to false")


def _publish(temp: Path, final: Path, key: str) -> None:
    """Rename the finished ``temp`` to ``final``; a valid ``final`` already there (a
    concurrent builder's) is kept, an invalid one replaced."""
    for _ in range(3):
        try:
            os.rename(temp, final)
            return
        except OSError:
            if read_manifest(final, key)[0] is not None:
                return  # another builder finished first: ours is discarded
            aside = _temp_folder(final)
            try:
                os.rename(final, aside)
            except FileNotFoundError:
                continue
            shutil.rmtree(aside, ignore_errors=True)
    os.rename(temp, final)


def _start_build(final: Path, needed: int, count: int, dataset_type: str) -> Path:
    """The new temporary folder beside ``final`` for a build of ``needed`` bytes
    (``count`` images of ``dataset_type``); ``ImageCacheError`` when the folder cannot be
    written or its disk lacks the space."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(final.parent).free
        if needed > free:
            raise ImageCacheError(f"image cache: {final.parent} has {free / GIB:.2f} GiB free, "
                                  f"but {count} images of {dataset_type} need {needed / GIB:.2f} "
                                  f"GiB; free space, set cache_dir to another disk, or set "
                                  f"cache_images to false")
        temp = _temp_folder(final)
        temp.mkdir()
    except OSError as err:
        raise ImageCacheError(f"image cache: cannot write to {final.parent} ({one_line(err)}); "
                              f"set cache_dir to a writable folder, or cache_images to false"
                              ) from None
    return temp


def _write_items(loader: DataLoader, images: np.memmap, keypoints: Optional[np.memmap],
                 dataset_type: str, name: str) -> int:
    """Copy the batches of ``loader`` (in item order) into ``images`` (N, 3, W, W) and
    ``keypoints`` (N, K, 2); -> the number of items written."""
    written = 0
    for batch in tqdm(loader, desc=f"caching {name}", unit="batch", disable=None, leave=False):
        rows = slice(written, written + len(batch["index"]))
        if not torch.equal(batch["index"], torch.arange(rows.start, rows.stop)):
            raise ImageCacheError(f"{dataset_type}: item indices are not their positions "
                                  f"({rows.start}..{rows.stop - 1}), which the image "
                                  f"cache needs; set cache_images to false")
        images[rows] = batch["data"].numpy()  # (B, 3, W, W)
        if keypoints is not None:
            keypoints[rows] = batch["keypts"].numpy()  # (B, K, 2)
        written = rows.stop
    return written


def build(dataset, dataset_type: str, final: Path, key: str, parts: Dict[str, Any],
          num_workers: int) -> Dict[str, Any]:
    """Decode every item of ``dataset`` once (a ``DataLoader`` of ``num_workers``
    workers) into the cache folder ``final`` for ``key``; returns its manifest.

    Raises ``ImageCacheError`` when the folder is not writable or the disk lacks the
    space (naming the GiB needed), or the items are not the cache's kind; the dataset's
    own errors (a missing or unreadable image) pass through. Nothing is left under
    ``final`` unless the build completes.
    """
    start, count = time.perf_counter(), len(dataset)
    first = dataset[0]
    _check_item(first, dataset_type)
    image_shape = [count, *first["data"].shape]  # (N, 3, W, W)
    keypoints_shape = None if "keypts" not in first else [count, *first["keypts"].shape]
    needed = _expected_bytes(image_shape, np.uint8) + \
        (_expected_bytes(keypoints_shape, np.float32) if keypoints_shape else 0)
    temp = _start_build(final, needed, count, dataset_type)
    try:
        try:
            images = _allocate(temp / IMAGES_FILE, image_shape, np.uint8)
            keypoints = None if keypoints_shape is None else \
                _allocate(temp / KEYPOINTS_FILE, keypoints_shape, np.float32)
        except OSError as err:
            raise ImageCacheError(f"image cache: cannot write {needed / GIB:.2f} GiB to {temp} "
                                  f"({one_line(err)}); free space or set cache_dir to another "
                                  f"disk, or set cache_images to false") from None
        loader = DataLoader(dataset, batch_size=BUILD_BATCH, shuffle=False, num_workers=num_workers)
        written = _write_items(loader, images, keypoints, dataset_type, final.name)
        if written != count:
            raise ValueError(f"{dataset_type}: {written} items read, {count} expected")
        for array in (images, keypoints):
            if array is not None:
                array.flush()
        del images, keypoints
        seconds = time.perf_counter() - start
        manifest = {**parts, "key": key, "count": count, "image_shape": image_shape,
                    "image_dtype": "uint8", "keypoints_shape": keypoints_shape,
                    "keypoints_dtype": "float32", "bytes": needed,
                    "build_seconds": round(seconds, 2)}
        (temp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
        _publish(temp, final, key)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    _logger.info("image cache: wrote %d images of %s (%.2f GiB) to %s in %.1f s", count,
                 dataset_type, needed / GIB, final, seconds)
    return manifest


class CachedDataset(Dataset):
    """The items of ``source`` read from its cache ``folder`` (no image decode): the same
    dict, bit for bit (``data`` (3, W, W) uint8, ``index``, and ``keypts`` (K, 2) float32
    pixels of the W x W image when the source gives them).

    Every other attribute (``crop``, ``eye_indices``, ``has_keypoints``, ``root``,
    ``names``...) is the source dataset's. The memmaps open on first use in each
    process and are never pickled (``DataLoader`` workers open their own).
    """

    from_image_cache = True  # ``data_loader.loaders.default_num_workers``: no workers

    def __init__(self, folder: Path, manifest: Dict[str, Any], source: Dataset):
        self.folder = Path(folder)
        self.manifest = manifest
        self.source = source
        self._arrays: Optional[Tuple[np.memmap, Optional[np.memmap]]] = None

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def arrays(self) -> Tuple[np.memmap, Optional[np.memmap]]:
        """(images (N, 3, W, W) uint8, keypoints (N, K, 2) float32 or None), read-only."""
        if self._arrays is None:
            images = np.memmap(self.folder / IMAGES_FILE, dtype=np.uint8, mode="r",
                               shape=tuple(self.manifest["image_shape"]))
            shape = self.manifest["keypoints_shape"]
            keypoints = None if shape is None else np.memmap(
                self.folder / KEYPOINTS_FILE, dtype=np.float32, mode="r", shape=tuple(shape))
            self._arrays = images, keypoints
        return self._arrays

    def __getitem__(self, index: int) -> dict:
        images, keypoints = self.arrays()
        item = {"data": torch.from_numpy(np.array(images[index])), "index": index}
        if keypoints is not None:
            item["keypts"] = torch.from_numpy(np.array(keypoints[index]))
        return item

    def __getstate__(self):
        return {**self.__dict__, "_arrays": None}

    def __getattr__(self, name):
        if name.startswith("__") or name in ("source", "_arrays"):  # e.g. while unpickling
            raise AttributeError(name)
        return getattr(self.source, name)


def cached(dataset: Dataset, dataset_type: str, args: Dict[str, Any], train: bool,
           cache_dir=DEFAULT_CACHE_DIR, num_workers: Optional[int] = None) -> Dataset:
    """``dataset`` (built as ``dataset_type`` with ``args``, the config's ``dataset.args``,
    and ``train``) read from its image cache under ``cache_dir``, built first when absent
    or stale (``num_workers`` decoding workers, default ``loaders.default_num_workers``).
    An empty split is returned as it is.

    Raises ``ImageCacheError`` (see :func:`build`) and the dataset's own errors.
    """
    if len(dataset) == 0:
        return dataset
    cache_dir = Path(cache_dir)
    key, parts = cache_key(dataset, dataset_type, args, train, skip=cache_dir)
    final = cache_dir / f"{dataset_type}-{parts['split']}-{key[:16]}"
    manifest, reason = read_manifest(final, key)
    if manifest is None:
        _logger.info("image cache: building %s (%s)", final, reason)
        if cache_dir.is_dir():
            remove_stale_builds(cache_dir)
        workers = default_num_workers() if num_workers is None else num_workers
        manifest = build(dataset, dataset_type, final, key, parts, workers)
    else:
        _logger.info("image cache: reading %d images of %s from %s", manifest["count"],
                     dataset_type, final)
    return CachedDataset(final, manifest, dataset)
