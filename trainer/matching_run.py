"""The matching evaluation of an embedding, as run by train.py and test_matching.py."""
import inspect
import json
import logging
from pathlib import Path
from typing import Any, NamedTuple, Optional

import torch

from base.base_dataset import MissingDataError
from data_loader.celeba import CelebAPrunedAligned_MAFLVal
from data_loader.registry import DATASETS
from trainer.builders import (build_dataset, build_model, dataset_geometry, embedding_part,
                              resolve_dataset)
from trainer.matching import (DVE_PROTOCOL, MatchingProtocol, evaluate_matching,
                              format_matching_table, require_image_pairs, split_name)
from trainer.run_config import DEFAULT_SEED, EvaluationRun
from utils.checkpoint import load_weights_into
from utils.registry import ConfigError

_logger = logging.getLogger(__name__)
DEFAULT_EVAL_DATA = "MAFLAligned"  # test_matching.py's default, as in the original


def evaluation_reason(eval_data: Optional[str]) -> str:
    """Why the evaluation commands match on the dataset they do, for the log: the
    ``--eval_data`` option, else :data:`DEFAULT_EVAL_DATA` as the original did."""
    return ("--eval_data" if eval_data else
            "the default of test_matching.py, as in the original; --eval_data picks another")


class MatchingData(NamedTuple):
    """The split matched on, the margin (pixels of its images) the pair pipeline crops
    after warping (its config's ``dataset.args.crop``, else its type's default) and the
    dataset type's name (as the config writes it, whether or not it is read from the
    image cache)."""
    dataset: Any
    crop: int
    name: str


def evaluated_config(config, config_path, eval_data: Optional[str]):
    """(the config with the dataset ``eval_data`` evaluates, a note for the log): None
    keeps the config's dataset; a CelebA-layout config evaluated on ``MAFLAligned`` keeps
    its own type (the same MAFL test list); another type takes the ``dataset.args`` its
    constructor accepts. Raises ``ConfigError`` for an unknown type."""
    own_type = config["dataset"]["type"]
    note = ""
    if eval_data == DEFAULT_EVAL_DATA and issubclass(resolve_dataset(config, config_path),
                                                      CelebAPrunedAligned_MAFLVal):
        # the same CelebA layout and MAFL test list, read by the config's own type (which
        # may write its data on first use, as SyntheticFaces does)
        eval_data = own_type
        note = f"; the MAFL test list that {DEFAULT_EVAL_DATA} reads, read by {own_type}"
    if eval_data is not None and eval_data != own_type:
        try:
            constructor = DATASETS.get(eval_data)
        except ConfigError as err:
            raise ConfigError(f"--eval_data: {err}") from None
        accepted = inspect.signature(constructor).parameters
        given = config["dataset"].get("args", {})
        args = {k: v for k, v in given.items() if k in accepted}
        dropped = sorted(set(given) - set(args))
        if dropped:
            note = f"; dataset.args {', '.join(dropped)} of {own_type} do not apply"
        config = {**config, "dataset": {"type": eval_data, "args": args}}
    return config, note


def build_matching_dataset(config, config_path, eval_data: Optional[str] = None,
                           reason: str = "the config's dataset, as at the end of training"
                           ) -> MatchingData:
    """The test split to match on, with keypoints and no augmentation (SPEC section 6),
    and its crop.

    ``eval_data`` None: the config's own dataset, test split (CelebA types: the MAFL
    test set, ``val_split`` "mafl"), as the matching at the end of training. A dataset
    type (``test_matching.py`` passes ``MAFLAligned`` by default, as the original did):
    that type with the config's ``dataset.args`` it takes (root, imwidth, crop, ...);
    for a config whose dataset reads the CelebA layout (``CelebAPrunedAligned_MAFLVal``
    and its subclasses) MAFLAligned's test split is that dataset's MAFL test split,
    read by the config's type.
    Logs which dataset and split is evaluated and why (``reason``). Raises
    :class:`ConfigError` for an unknown type; a ``MissingDataError`` of another type
    than the config's adds that ``--eval_data`` picks the dataset;
    ``trainer.matching.MatchingDataError`` for a split of fewer than two images.
    """
    own_type = config["dataset"]["type"]
    config, note = evaluated_config(config, config_path, eval_data)
    try:
        dataset = build_dataset(config, config_path, train=False,
                                overrides=dict(use_keypoints=True, do_augmentations=False),
                                where_accepted=dict(val_split="mafl"))
    except MissingDataError as err:
        if config["dataset"]["type"] == own_type:
            raise
        raise MissingDataError(f"{config['dataset']['type']} is evaluated ({reason}): pass "
                               f"--eval_data {own_type} to evaluate the config's own dataset; "
                               f"{err}") from None
    _logger.info("matching evaluation on %s, %s split, root %s (%s%s)", config["dataset"]["type"],
                 split_name(dataset), getattr(dataset, "root", "-"), reason, note)
    require_image_pairs(dataset)
    return MatchingData(dataset, int(dataset_geometry(config, config_path)["crop"] or 0),
                        config["dataset"]["type"])


def run_matching(network: torch.nn.Module, config, config_path, checkpoint: Optional[Path],
                 device: torch.device, num_workers: Optional[int] = 0, vis: bool = False,
                 eval_data: Optional[str] = None, output_dir: Optional[Path] = None,
                 reason: str = "the config's dataset, as at the end of training",
                 data: Optional[MatchingData] = None,
                 protocol: MatchingProtocol = DVE_PROTOCOL) -> dict:
    """Evaluate on ``data`` (None: :func:`build_matching_dataset` of ``eval_data``,
    ``reason``) with ``protocol`` (``trainer.matching``), log the table and write
    ``matching.json`` (and ``matching.png`` with ``vis``) beside the checkpoint (or into
    ``output_dir``); errors are pixels of the 70-px frame."""
    if data is None:
        data = build_matching_dataset(config, config_path, eval_data, reason)
    dataset = data.dataset
    out_dir = Path(output_dir) if output_dir else (Path(checkpoint).parent if checkpoint else None)
    vis_path = str(out_dir / "matching.png") if (vis and out_dir) else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    result = evaluate_matching(network, dataset, device, data.crop, protocol=protocol,
                               num_workers=num_workers or 0, vis_path=vis_path)
    result["checkpoint"] = str(checkpoint) if checkpoint else None
    result["dataset"] = data.name
    result["dataset_root"] = str(getattr(dataset, "root", ""))
    named = "" if protocol == DVE_PROTOCOL else f" ({protocol.name} protocol)"
    _logger.info("matching on %d image pairs of %s%s:\n%s", result["num_image_pairs"],
                 result["dataset"], named, format_matching_table(result))
    _logger.info("Mean Pixel Error (same-identity): %.4f", result["same_identity"])
    _logger.info("Mean Pixel Error (different-identity): %.4f", result["different_identity"])
    if out_dir is not None:
        (out_dir / "matching.json").write_text(json.dumps(result, indent=2))
        _logger.info("wrote %s", out_dir / "matching.json")
        if vis_path:
            _logger.info("wrote %s", vis_path)
    return result


def match_evaluation_run(run: EvaluationRun, device: torch.device, eval_data: str,
                         output_dir: Optional[Path], reason: str,
                         protocol: MatchingProtocol = DVE_PROTOCOL, seed: Optional[int] = None,
                         vis: bool = False, source: str = "--resume") -> dict:
    """``test_matching.py``'s evaluation of a resolved run: the network of ``run.config``
    built after ``torch.manual_seed(seed)`` (None: the config's ``seed``, else 0), the
    weights of ``run.checkpoint`` loaded (none: the untrained network, as a reference),
    then :func:`run_matching` of its embedding on ``eval_data`` with ``protocol``.
    ``source`` names the checkpoint's option in messages. Returns ``matching.json``'s
    content (pixels of the 70-px frame). Raises ``CheckpointError`` for weights that do
    not fit, and :func:`build_matching_dataset`'s errors."""
    seed = seed if seed is not None else run.config.get("seed", DEFAULT_SEED)
    torch.manual_seed(seed)
    network = build_model(run.config, run.path).to(device)
    if run.state is not None:
        load_weights_into(network, run.checkpoint, device, source=source, state=run.state)
    else:
        _logger.warning("no --resume: evaluating the untrained network (seed %d)", seed)
    return run_matching(embedding_part(network, run.config), run.config, run.path,
                        run.checkpoint, device, vis=vis, eval_data=eval_data,
                        output_dir=output_dir, reason=reason, protocol=protocol)
