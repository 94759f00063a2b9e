"""The matching evaluation of an embedding, as run by train.py and test_matching.py."""
import json
import logging
from pathlib import Path
from typing import Optional

import torch

from data_loader.registry import DATASETS
from trainer.builders import build_dataset
from utils.matching import evaluate_matching, format_matching_table

_logger = logging.getLogger(__name__)


def build_matching_dataset(config, config_path, eval_data: Optional[str] = None):
    """The test split of ``eval_data`` (default: the config's dataset, whose CelebA test
    split for matching is the MAFL test set), with keypoints and no augmentation."""
    if eval_data is not None and eval_data != config["dataset"]["type"]:
        DATASETS.get(eval_data)
        config = {**config, "dataset": {**config["dataset"], "type": eval_data}}
    return build_dataset(config, config_path, train=False, use_keypoints=True,
                         do_augmentations=False, val_split="mafl")


def run_matching(network: torch.nn.Module, config, config_path, checkpoint: Optional[Path],
                 device: torch.device, num_workers: Optional[int] = 0, vis: bool = False,
                 eval_data: Optional[str] = None, output_dir: Optional[Path] = None) -> dict:
    """Evaluate, log the table and write ``matching.json`` (and ``matching.png`` with
    ``vis``) beside the checkpoint (or into ``output_dir``)."""
    dataset = build_matching_dataset(config, config_path, eval_data)
    out_dir = Path(output_dir) if output_dir else (Path(checkpoint).parent if checkpoint else None)
    vis_path = str(out_dir / "matching.png") if (vis and out_dir) else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    result = evaluate_matching(network, dataset, device, num_workers=num_workers or 0,
                               vis_path=vis_path)
    result["checkpoint"] = str(checkpoint) if checkpoint else None
    result["dataset"] = type(dataset).__name__
    _logger.info("matching on %d image pairs of %s:\n%s", result["num_image_pairs"],
                 result["dataset"], format_matching_table(result))
    _logger.info("Mean Pixel Error (same-identity): %.4f", result["same_identity"])
    _logger.info("Mean Pixel Error (different-identity): %.4f", result["different_identity"])
    if out_dir is not None:
        (out_dir / "matching.json").write_text(json.dumps(result, indent=2))
        _logger.info("wrote %s", out_dir / "matching.json")
        if vis_path:
            _logger.info("wrote %s", vis_path)
    return result
