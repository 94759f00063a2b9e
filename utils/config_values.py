"""Types and ranges of config values (SPEC section 7), checked before anything is built.

Each known setting has a predicate and the wording of what it expects; a value that
fails is a :class:`ConfigError` naming the file, the key, the value and the fix, e.g.
``configs/x.json: trainer.epochs is "100"; expected a positive integer, e.g. 100``.
Absent keys are not checked here (their defaults apply).
"""
import json
import logging
import math
from typing import Any, Callable, Dict, Optional, Tuple

from utils.config import IGNORED_KEYS
from utils.registry import ConfigError

_logger = logging.getLogger(__name__)


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return _integer(value) or (isinstance(value, float) and math.isfinite(value))


def _flag(value) -> bool:
    """true/false, or 0/1 as some original configs write flags."""
    return isinstance(value, bool) or (_integer(value) and value in (0, 1))


def _text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _names(value) -> bool:
    return isinstance(value, list) and all(_text(item) for item in value)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _at_least(low) -> Callable[[Any], bool]:
    return lambda value: _integer(value) and value >= low


def positive_number(value) -> bool:
    """A finite number > 0 (not a boolean)."""
    return _number(value) and value > 0


def non_negative_number(value) -> bool:
    """A finite number >= 0 (not a boolean)."""
    return _number(value) and value >= 0


def positive_integer(value) -> bool:
    """An integer >= 1 (not a boolean)."""
    return _integer(value) and value >= 1


_FLAG = (_flag, "true or false")
_PATH = (_text, "a path (a non-empty string)")
BLOCKS = ("arch", "dataset", "warper", "optimizer", "lr_scheduler", "keypoint_regressor",
          "method")

# key path -> (predicate, what is expected)
SETTINGS: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "name": (_text, "a non-empty string (the experiment folder name)"),
    "n_gpu": (_at_least(0), "an integer >= 0, e.g. 1"),
    "batch_size": (positive_integer, "a positive integer, e.g. 32"),
    "bias_lr": (_optional(positive_number), "a positive number or null"),
    "seed": (_integer, "an integer, e.g. 0"),
    "loss": (_text, "a loss name, e.g. \"dense_correlation_loss_dve\""),
    "loss_args": (lambda v: isinstance(v, dict), "an object of loss arguments"),
    "loss_args.pow": (positive_number, "a positive number, e.g. 0.5"),
    "loss_args.normalize_vectors": _FLAG,
    "loss_args.fold_corr": _FLAG,
    "loss_args.alpha": (positive_number, "a positive number, e.g. 10.0"),
    "arch.args.num_output_channels": (positive_integer, "a positive integer, e.g. 16"),
    "keypoint_regressor.args.num_annotated_points": (positive_integer, "a positive integer"),
    "keypoint_regressor.args.num_intermediate_points": (positive_integer, "a positive integer"),
    "keypoint_regressor.args.softargmax_mul": (positive_number, "a positive number, e.g. 100.0"),
    "metrics": (_names, "a list of metric names, e.g. [] or [\"inter_ocular_error\"]"),
    "visualizations": (_names, "a list of visualization names, e.g. [\"sphere_colormap\"]"),
    "finetune_from": (_optional(_text), "a checkpoint file, run folder or glob, or null"),
    "cache_descriptors": _FLAG,
    "amp": (lambda v: v in (False, None, "bf16", "fp16"), "\"bf16\", \"fp16\" or false"),
    "channels_last": _FLAG,
    "compile": _FLAG,
    "sync_batchnorm": _FLAG,
    "cache_images": _FLAG,
    "cache_dir": _PATH,
    "warp_val": _FLAG,
    "keypoint_regressor_upsample": _FLAG,
    "restrict_annos": (_optional(_at_least(0)), "a number of annotated images, or 0/null for all"),
    "trainer.epochs": (positive_integer, "a positive integer, e.g. 100"),
    "trainer.save_period": (positive_integer, "a positive integer (save every N epochs), e.g. 1"),
    "trainer.verbosity": (lambda v: _integer(v) and v in (0, 1, 2), "0, 1 or 2"),
    "trainer.monitor": (_text, "\"off\" or \"min val_loss\""),
    "trainer.early_stop": (_optional(_at_least(0)), "an integer >= 0 (epochs without "
                                                    "improvement before stopping) or null"),
    "trainer.tensorboardX": _FLAG,
    "trainer.lr_step": (lambda v: v in ("after_epoch", "epoch_start"),
                        "\"after_epoch\" (DVE's) or \"epoch_start\""),
    "trainer.save_dir": _PATH,
    "trainer.log_dir": _PATH,
    "trainer.num_workers": (_optional(_at_least(0)), "an integer >= 0 or null (the default)"),
    "dataset.args.root": _PATH,
    "dataset.args.imwidth": (positive_integer, "a positive integer (pixels), e.g. 100"),
    "dataset.args.crop": (_at_least(0), "an integer >= 0 (pixels cut from each side)"),
    "dataset.args.use_keypoints": _FLAG,
    "dataset.args.do_augmentations": _FLAG,
    "dataset.args.use_hq_ims": _FLAG,
    "dataset.args.val_split": (lambda v: v in ("celeba", "mafl"), "\"celeba\" or \"mafl\""),
    "dataset.args.val_size": (positive_integer, "a positive integer (images)"),
    "dataset.args.use_minival": _FLAG,
    "dataset.args.texture_strength": (non_negative_number, "a finite number >= 0 (SyntheticFaces: "
                                      "1.0 the original texture), e.g. 2.0"),
}


def lookup(config: Dict[str, Any], key: str) -> Tuple[bool, Any]:
    """(present, value) of the dotted ``key`` in ``config``."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def bad_value(path, key: str, value, expected: str) -> ConfigError:
    """The one-line error for ``key`` holding ``value`` where ``expected`` was wanted."""
    return ConfigError(f"{path}: {key} is {json.dumps(value)}; expected {expected}")


def check_blocks(config: Dict[str, Any], path) -> None:
    """Every ``{type, args}`` block: an object with a string ``type``, an object ``args``
    and no other key (a misspelt ``arg`` would otherwise be ignored)."""
    for block in ("trainer",) + tuple(b for b in BLOCKS if b in config):
        if not isinstance(config.get(block), dict):
            raise bad_value(path, block, config.get(block), "an object")
    for block in (b for b in BLOCKS if b in config):
        spec = config[block]
        if not _text(spec.get("type")):
            raise bad_value(path, f"{block}.type", spec.get("type"), "a registered name")
        if not isinstance(spec.get("args", {}), dict):
            raise bad_value(path, f"{block}.args", spec["args"], "an object of arguments")
        for key in spec:
            if key not in ("type", "args") and f"{block}.{key}" not in IGNORED_KEYS:
                raise ConfigError(f"{path}: unknown key '{block}.{key}'; a block has only "
                                  f"'type' and 'args'")


def check_table(config: Dict[str, Any], path,
                table: Dict[str, Tuple[Callable[[Any], bool], str]]) -> None:
    """Raise a :class:`ConfigError` for the first key of ``table`` (key path ->
    (predicate, what is expected)) present in ``config`` with a value that fails."""
    for key, (valid, expected) in table.items():
        present, value = lookup(config, key)
        if present and not valid(value):
            raise bad_value(path, key, value, expected)


def check_values(config: Dict[str, Any], path) -> None:
    """Raise a :class:`ConfigError` for the first setting of :data:`SETTINGS` whose value
    has the wrong type or range, and for a malformed ``trainer.monitor``."""
    check_blocks(config, path)
    check_table(config, path, SETTINGS)
    parse_monitor(config["trainer"].get("monitor", "off"), path)


def log_ignored_keys(config: Dict[str, Any], path) -> None:
    """One log line listing the keys of :data:`utils.config.IGNORED_KEYS` present in
    ``config`` and why they have no effect."""
    present = [f"{key} ({why})" for key, why in IGNORED_KEYS.items() if lookup(config, key)[0]]
    if present:
        _logger.info("%s: ignoring config keys without effect here: %s", path, "; ".join(present))


def parse_monitor(monitor: str, path="<config>") -> Tuple[str, Optional[str]]:
    """``"off"`` -> ("off", None); ``"min val_loss"`` -> ("min", "val_loss"); anything
    else is a :class:`ConfigError` naming ``trainer.monitor``."""
    if monitor == "off":
        return "off", None
    parts = str(monitor).split()
    if len(parts) != 2 or parts[0] not in ("min", "max"):
        raise bad_value(path, "trainer.monitor", monitor,
                        "\"off\" or a mode and a logged key, e.g. \"min val_loss\"")
    return parts[0], parts[1]
