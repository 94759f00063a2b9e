"""The key of an image cache folder (``data_loader.image_cache``): what a dataset's items
depend on, hashed. See ``cache_key``."""
import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import PIL
from torch.utils.data import Dataset

from base import image_modes
from data_loader.image_folder import image_extensions
from utils.errors import UserError

FORMAT_VERSION = 1
PIPELINE_ONLY_ARGS = frozenset({"crop", "do_augmentations"})


class ImageCacheError(UserError):
    """The image cache cannot be written (folder not writable, disk too small) or cannot
    hold this dataset's items; the message names the folder or dataset and what to do."""


def item_arguments(dataset_class: type, args: Dict[str, Any], train: bool) -> Dict[str, Any]:
    """The constructor arguments of ``dataset_class`` that shape its items: ``args`` with
    the constructor's defaults filled in, without ``train`` (the split is keyed apart)
    and ``PIPELINE_ONLY_ARGS``; values JSON-ready (paths as strings)."""
    bound = inspect.signature(dataset_class).bind(train=train, **args)
    bound.apply_defaults()
    kept = {name: value for name, value in bound.arguments.items()
            if name != "train" and name not in PIPELINE_ONLY_ARGS}
    return json.loads(json.dumps(kept, sort_keys=True, default=str))


def code_digest(dataset_class: type) -> str:
    """sha256 of the source files of ``dataset_class``'s MRO (up to torch's ``Dataset``)
    and of ``base.image_modes``, with the Pillow version: what turns files into items."""
    digest = hashlib.sha256(f"Pillow {PIL.__version__}\n".encode())
    files = []
    for cls in inspect.getmro(dataset_class):
        if cls in (Dataset, object):
            break
        try:
            files.append(inspect.getsourcefile(cls))
        except TypeError:  # a class without a source file (built at run time)
            files.append(None)
    files.append(inspect.getsourcefile(image_modes))
    for name in dict.fromkeys(files):
        digest.update(Path(name).read_bytes() if name else b"<no source file>")
    return digest.hexdigest()


def _stat_line(path: str) -> str:
    try:
        stat = os.stat(path)
    except OSError:  # a missing image fails the build with the dataset's own error
        return f"{path}\0missing\n"
    return f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n"


def _files_under(root: Path, skip: Optional[Path], images_too: bool):
    """Paths of the files under ``root`` (any depth, symbolic links followed, each folder
    once), without those with an image extension Pillow opens unless ``images_too``;
    the tree of ``skip`` (a resolved path) left out."""
    suffixes, seen, stack = image_extensions(), set(), [root]
    while stack:
        folder = stack.pop()
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in seen:
            continue
        seen.add((stat.st_dev, stat.st_ino))
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir():
                    if skip is None or Path(entry.path).resolve() != skip:
                        stack.append(entry.path)
                elif images_too or os.path.splitext(entry.name)[1].lower() not in suffixes:
                    yield entry.path


def source_fingerprint(dataset, skip: Optional[Path] = None) -> Tuple[str, int]:
    """(sha256, number of files) over the files ``dataset`` reads, each as (absolute
    path, size, mtime_ns):

    - every path of ``dataset.image_paths``, in item order (the images it decodes);
    - every file under ``dataset.root`` that is not an image (annotation lists, .mat,
      .pts, .csv: a dataset reads nothing else; its images not in ``image_paths`` are not
      read, so they are not looked at), sorted.

    One ``stat`` per image and a listing of the root's folders: 0.9 s for 160,000 CelebA
    images (warm cache). A dataset without ``image_paths`` has every file under
    its root fingerprinted. ``skip``: a folder under the root to leave out (the cache).

    Raises ``ImageCacheError`` for a dataset with neither ``image_paths`` nor ``root``.
    """
    paths, root = getattr(dataset, "image_paths", None), getattr(dataset, "root", None)
    if paths is None and root is None:
        raise ImageCacheError(f"the image cache cannot tell which files {type(dataset).__name__} "
                              f"reads (no image_paths, no root); set cache_images to false")
    digest, count = hashlib.sha256(), 0
    for path in paths if paths is not None else ():
        digest.update(_stat_line(os.path.abspath(path)).encode())
        count += 1
    if root is not None and Path(root).is_dir():
        digest.update(b"\0annotations\n")
        found = _files_under(Path(root), None if skip is None else skip.resolve(),
                             images_too=paths is None)
        for path in sorted(os.path.abspath(p) for p in found):
            digest.update(_stat_line(path).encode())
            count += 1
    return digest.hexdigest(), count


def cache_key(dataset, dataset_type: str, args: Dict[str, Any], train: bool,
              skip: Optional[Path] = None) -> Tuple[str, Dict[str, Any]]:
    """(sha256 key, its readable parts) of ``dataset``, built as ``dataset_type`` with
    ``args`` (the config's ``dataset.args``) and ``train`` (see the module doc)."""
    fingerprint, files = source_fingerprint(dataset, skip)
    parts = {"format_version": FORMAT_VERSION, "dataset_type": dataset_type,
             "args": item_arguments(type(dataset), args, train),
             "split": "train" if train else "eval", "code": code_digest(type(dataset)),
             "source_fingerprint": fingerprint, "source_files": files}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest(), parts
