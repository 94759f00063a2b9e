"""Reading, overriding and checking JSON configs of the original DVE schema (SPEC section 7)."""
import contextlib
import copy
import inspect
import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional

from utils.config_inheritance import read_config_file
from utils.errors import UserError
from utils.registry import ConfigError, Registry

_logger = logging.getLogger(__name__)

# Top-level keys of the original schema (SPEC section 7) that act here, plus this
# project's ``name`` (the experiment folder), ``seed`` (the default run seed) and
# ``method`` (the embedding method, ``trainer.method``), and the speed options ``amp``,
# ``channels_last``, ``compile``, ``sync_batchnorm``, ``cache_images``, ``cache_dir``
# (docs/scaling.md).
KNOWN_KEYS = frozenset({
    "name", "n_gpu", "batch_size", "bias_lr", "arch", "dataset", "warper", "optimizer",
    "loss", "loss_args", "metrics", "visualizations", "lr_scheduler", "trainer",
    "finetune_from", "keypoint_regressor", "keypoint_regressor_upsample",
    "cache_descriptors", "warp_val", "restrict_annos", "seed", "method",
    "amp", "channels_last", "compile", "sync_batchnorm", "cache_images", "cache_dir",
})
# Keys the original configs carry that have no effect here, and why (logged once per run).
IGNORED_KEYS = {
    "fold_corr": "the command line decides (-f/--folded_correlation), as in the original",
    "profile": "the command line decides (-p/--profile), as in the original",
    "vis": "the command line decides (--vis), as in the original",
    "disable_workers": "the command line decides (--disable_workers), as in the original",
    "collate_fn": "the loaders here assemble batches themselves",
    "keypoint_regressor.softmaxarg_mul": "a misspelling the original never read; "
                                         "keypoint_regressor.args.softargmax_mul is used",
}
REQUIRED_KEYS = ("arch", "dataset", "optimizer", "trainer")  # and "loss": trainer.builders.resolve_loss
# ``num_workers`` and ``lr_step`` are this project's additions; the others are the original's.
KNOWN_TRAINER_KEYS = frozenset({
    "epochs", "save_dir", "save_period", "verbosity", "monitor", "early_stop",
    "tensorboardX", "log_dir", "num_workers", "lr_step",
})


def load_config(path) -> Dict[str, Any]:
    """Read a config file with its ``_base_`` chain merged in
    (``utils.config_inheritance``) and check its keys; JSON errors name the file, line and
    column."""
    path = Path(path)
    config = read_config_file(path)
    check_config(config, path)
    return config


def check_config(config: Dict[str, Any], path) -> None:
    """Reject unknown top-level or trainer keys and missing required blocks.

    Keys the original configs carry without effect here (:data:`IGNORED_KEYS`) are
    accepted; ``utils.config_values.log_ignored_keys`` says so once per run.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: the config must be a JSON object")
    for key in config:
        if key not in KNOWN_KEYS and key not in IGNORED_KEYS:
            raise ConfigError(f"{path}: unknown config key '{key}'; valid keys: "
                              f"{', '.join(sorted(KNOWN_KEYS | set(IGNORED_KEYS)))}")
    for key in REQUIRED_KEYS:
        if key not in config:
            raise ConfigError(f"{path}: missing required key '{key}'")
    if not isinstance(config["trainer"], dict):
        raise ConfigError(f"{path}: trainer must be an object, e.g. {{\"epochs\": 100}}")
    for key in config["trainer"]:
        if key not in KNOWN_TRAINER_KEYS:
            raise ConfigError(f"{path}: unknown key 'trainer.{key}'; valid keys: "
                              f"{', '.join(sorted(KNOWN_TRAINER_KEYS))}")


@contextlib.contextmanager
def as_config_error(path, what: str):
    """Report a ``ValueError`` or ``TypeError`` raised while building ``what`` from the
    config (a constructor refusing a value) as a one-line :class:`ConfigError` naming
    the file; errors that already are user errors pass through."""
    try:
        yield
    except UserError:
        raise
    except (TypeError, ValueError) as err:
        text = str(err).strip().splitlines()
        raise ConfigError(f"{path}: {what}: {text[0] if text else type(err).__name__}") from None


def parse_override(text: str):
    """Split ``a.b.c=value`` into (["a", "b", "c"], value); value is JSON if it parses."""
    if "=" not in text:
        raise ConfigError(f"--set '{text}': expected KEY.PATH=VALUE, e.g. optimizer.args.lr=0.01")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(config: Dict[str, Any], overrides: Iterable[str], path="<config>") -> Dict:
    """Return a copy of ``config`` with each ``KEY.PATH=VALUE`` override applied."""
    config = copy.deepcopy(config)
    for text in overrides:
        keys, value = parse_override(text)
        node = config
        for depth, key in enumerate(keys[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text}: '{'.'.join(keys[:depth + 1])}' is not a block")
            node = child
        node[keys[-1]] = value
        try:
            check_config(config, path)
        except ConfigError as err:  # the key came from the command line, not the file
            raise ConfigError(f"--set {text}: {str(err).removeprefix(f'{path}: ')}") from None
    check_config(config, path)
    return config


def check_arguments(func: Callable, args: Dict[str, Any], block: str, path,
                    reserved: Iterable[str] = ()) -> None:
    """Fail naming the key, the block and the file if ``func`` does not take an argument.

    ``block`` is where the arguments sit in the config: a block name (``arch``: its
    ``args``, named ``arch.args.<key>``) or a dotted key ending in ``_args``
    (``loss_args``: named ``loss_args.<key>``)."""
    params = inspect.signature(func).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    accepted = set(params) - {"self"} - set(reserved)
    prefix = block if block.endswith("_args") else f"{block}.args"
    for key in args:
        if key not in accepted:
            raise ConfigError(
                f"{path}: {prefix}.{key} is not an argument of {func.__name__}; "
                f"it takes: {', '.join(sorted(accepted))}")


def resolve_block(registry: Registry, config: Dict[str, Any], block: str, path,
                  reserved: Iterable[str] = ()) -> Callable:
    """Look up ``config[block]['type']`` and check its ``args``; return the constructor."""
    spec = config.get(block)
    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError(f"{path}: '{block}' must be an object with a 'type' and 'args'")
    try:
        constructor = registry.get(spec["type"])
    except ConfigError as err:
        raise ConfigError(f"{path}: {block}.type: {err}") from None
    check_arguments(constructor, spec.get("args", {}), block, path, reserved)
    return constructor


def build_block(registry: Registry, config: Dict[str, Any], block: str, path,
                **extra) -> Any:
    """Build ``config[block]`` with its args plus ``extra`` keyword arguments."""
    constructor = resolve_block(registry, config, block, path, reserved=extra)
    with as_config_error(path, f"{block} {config[block]['type']}"):
        return constructor(**config[block].get("args", {}), **extra)


def experiment_name(config_path, config: Optional[Dict[str, Any]] = None) -> str:
    """``<config folder>-<config stem>``, e.g. ``celeba-smallnet-16d-dve`` (or config['name'])."""
    if config and config.get("name"):
        return str(config["name"])
    path = Path(config_path)
    return f"{path.parent.name}-{path.stem}"


def run_directories(config: Dict[str, Any], config_path, run_id: Optional[str] = None):
    """(models dir, log dir) as ``<save_dir>/models/<name>/<run>`` and ``<log_dir>/log/...``.

    A new run (no ``run_id``) is named by its start time; a run started in the same second
    as an existing one (e.g. the next of ``--seeds``) gets a ``-2``, ``-3``... suffix.
    """
    name = experiment_name(config_path, config)
    trainer = config["trainer"]
    models = Path(trainer.get("save_dir", "saved/")) / "models" / name
    logs = Path(trainer.get("log_dir", trainer.get("save_dir", "saved/"))) / "log" / name
    if run_id is None:
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        run_id, count = stamp, 1
        while (models / run_id).exists() or (logs / run_id).exists():
            count += 1
            run_id = f"{stamp}-{count}"
    return models / run_id, logs / run_id
