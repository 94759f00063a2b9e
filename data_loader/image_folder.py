"""``ImageFolder``: every image under a folder, for learning an embedding on your own faces."""
from pathlib import Path
from typing import List

from PIL import Image

from base.base_dataset import LandmarkImageDataset, MissingDataError, tail_split


def image_extensions() -> frozenset:
    """File extensions Pillow can open, lower case with the dot (".jpg", ".png", ...)."""
    return frozenset(ext for ext, fmt in Image.registered_extensions().items()
                     if fmt in Image.OPEN)


def find_images(root: Path) -> List[Path]:
    """Every file under ``root`` (recursively) with an extension Pillow opens, sorted by
    its path relative to ``root``."""
    extensions = image_extensions()
    return sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in extensions),
                  key=lambda p: p.relative_to(root).as_posix())


class ImageFolder(LandmarkImageDataset):
    """All images under ``root`` at any depth, of any size and any format Pillow reads,
    each resized whole to ``imwidth`` x ``imwidth`` (give roughly square face crops; the
    aspect ratio is not kept), upright by its EXIF orientation and in 8-bit RGB as a viewer
    shows it (``base.image_modes``). No annotations: for embedding learning with a
    ``Warper``.

    The order is the sorted relative path. The validation split is the last
    ``val_fraction`` of that order (at least one image), training is the rest, so with
    one sub-folder per person the validation people are held out.

    Args:
        root: the folder of images.
        val_fraction: fraction of the images, taken from the end of the sorted order,
            used for validation (0 disables validation: the split is then empty).
        (other arguments: see ``LandmarkImageDataset``.)
    """

    eye_indices = None
    has_keypoints = False

    def __init__(self, root="data/my_faces", train=True, imwidth=100, crop=15,
                 do_augmentations=True, val_fraction=0.1):
        super().__init__(root, train, imwidth, crop, False, do_augmentations)
        self.val_fraction = val_fraction
        if not self.root.is_dir():
            raise MissingDataError(f"image folder {self.root} not found; set dataset.args.root "
                                   f"to the folder that holds your images")
        images = find_images(self.root)
        if not images:
            raise MissingDataError(f"no images under {self.root} (looked for "
                                   f"{', '.join(sorted(image_extensions())[:8])}, ...); set "
                                   f"dataset.args.root to the folder that holds your images")
        self.image_paths = images[tail_split(len(images), val_fraction, train)]
        self.names = [p.relative_to(self.root).as_posix() for p in self.image_paths]

    @classmethod
    def missing_data_remedy(cls, root=None) -> str:
        return "put your images (any format Pillow reads) under the dataset root"

    @property
    def repair_remedy(self) -> str:
        return "replace or remove that file"
