"""What the command-line scripts share: where the config comes from and the run seeds."""
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from utils.checkpoint import CheckpointError
from utils.config import apply_overrides, load_config
from utils.registry import ConfigError

_logger = logging.getLogger(__name__)
DEFAULT_SEED = 0


def released_run_config(checkpoint) -> Tuple[Dict[str, Any], Path]:
    """The config of the released checkpoint ``checkpoint``: the ``config.json`` of its run
    folder, beside it (original schema; ``utils.model_zoo`` downloads it there), read by
    ``load_config``; ``name`` defaults to the experiment folder above the run folder, as
    the original named runs. Raises :class:`CheckpointError` when there is none."""
    path = Path(checkpoint).with_name("config.json")
    if not path.is_file():
        raise CheckpointError(f"{checkpoint} stores no readable config (a released DVE "
                              f"checkpoint keeps it as a pickled object, which is not "
                              f"loaded) and has no config.json beside it; pass --config "
                              f"CONFIG.json as well")
    config = load_config(path)
    config.setdefault("name", path.parent.parent.name)
    _logger.info("no --config: using %s, the released run's config (original schema)", path)
    return config, path


def run_config(config_file: Optional[str], state: Optional[Dict[str, Any]],
               checkpoint: Optional[str], overrides: List[str]) -> Tuple[Dict[str, Any], Path]:
    """The config of ``--config`` (else the one stored in the loaded checkpoint ``state``
    of ``checkpoint``, or for a released checkpoint :func:`released_run_config`) with the
    ``--set`` style ``overrides`` applied; -> (config, path)."""
    if config_file:
        path = Path(config_file)
        config = load_config(path)
    elif state is not None:
        config = state.get("config")
        if state.get("bare"):
            raise CheckpointError(f"{checkpoint} is a bare state dict (weights only, no "
                                  f"config); pass --config CONFIG.json as well")
        if isinstance(config, dict):
            path = Path(state.get("config_path") or "resumed/config.json")
        elif state.get("released"):
            config, path = released_run_config(checkpoint)
        else:
            raise CheckpointError(f"{checkpoint} stores no readable config; pass --config "
                                  f"CONFIG.json as well")
    else:
        raise ConfigError("pass --config CONFIG.json (or --resume CHECKPOINT, whose stored "
                          "config is then used)")
    return apply_overrides(config, overrides, path), path


def resolve_seeds(cli_seeds: Optional[str], config: Dict[str, Any], path) -> List[int]:
    """The run seeds: ``--seeds`` when given (it wins), else the config's ``seed``, else
    0; logs which and why. Raises :class:`ConfigError` for a malformed ``--seeds``."""
    if cli_seeds is not None:
        try:
            seeds = [int(s) for s in str(cli_seeds).split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds {cli_seeds}: expected comma-separated integers, "
                              f"e.g. --seeds 0,1,2") from None
        if not seeds:
            raise ConfigError("--seeds is empty; give comma-separated integers, e.g. 0,1,2")
        ignored = f" (the config's seed {config['seed']} is overridden)" if "seed" in config else ""
        _logger.info("seeds %s from --seeds%s", seeds, ignored)
        return seeds
    if "seed" in config:
        _logger.info("seed %d from the config's seed key (%s); --seeds overrides it",
                     config["seed"], path)
        return [int(config["seed"])]
    _logger.info("seed %d (the default: no --seeds and no seed key in %s)", DEFAULT_SEED, path)
    return [DEFAULT_SEED]
