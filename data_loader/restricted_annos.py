"""``restrict_annos``: train a regressor on N annotated images, tiled to the dataset length."""
import logging
from typing import List

import torch
from torch.utils.data import Dataset

_logger = logging.getLogger(__name__)


def image_name(dataset, index: int) -> str:
    names = getattr(dataset, "names", None)
    if names is not None:
        return str(names[index])
    paths = getattr(dataset, "image_paths", None)
    return str(paths[index]) if paths is not None else str(index)


class RestrictedAnnotations(Dataset):
    """``num_annos`` distinct images of ``dataset``, drawn from ``seed``, repeated
    floor(len(dataset) / num_annos) times (at least once), as the original did.

    Only items are read through: what the pipelines need (crop, eye indices) comes from
    the resolved config and the evaluation split, never from this wrapper.

    Args:
        dataset: the annotated training set.
        num_annos: images kept.
        seed: seeds the draw (the run's seed, so ``--seeds`` draws different images).
    """

    def __init__(self, dataset: Dataset, num_annos: int, seed: int):
        if not 0 < num_annos <= len(dataset):
            raise ValueError(f"restrict_annos={num_annos} must be between 1 and the "
                             f"{len(dataset)} training images")
        self.dataset = dataset
        generator = torch.Generator().manual_seed(seed)
        self.chosen: List[int] = torch.randperm(len(dataset), generator=generator)[:num_annos].tolist()
        self.repeats = max(len(dataset) // num_annos, 1)
        _logger.info("restrict_annos: %d images (seed %d), each repeated %d times: %s",
                     num_annos, seed, self.repeats,
                     ", ".join(f"{i} ({image_name(dataset, i)})" for i in self.chosen))

    def __len__(self) -> int:
        return len(self.chosen) * self.repeats

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[self.chosen[index % len(self.chosen)]])
        item["index"] = index
        return item
