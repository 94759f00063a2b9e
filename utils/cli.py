"""What the command-line scripts share: where the config comes from, and user errors."""
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from utils.checkpoint import CheckpointError
from utils.config import apply_overrides, load_config
from utils.errors import USER_ERRORS, report_user_error  # noqa: F401  (re-exported)
from utils.registry import ConfigError



def run_config(config_file: Optional[str], state: Optional[Dict[str, Any]],
               checkpoint: Optional[str], overrides: List[str]) -> Tuple[Dict[str, Any], Path]:
    """The config of ``--config`` (else the one stored in the loaded checkpoint ``state``
    of ``checkpoint``) with the ``--set`` style ``overrides`` applied; -> (config, path)."""
    if config_file:
        path = Path(config_file)
        config = load_config(path)
    elif state is not None:
        config = state.get("config")
        if not isinstance(config, dict):
            raise CheckpointError(f"{checkpoint} stores no readable config (a released DVE "
                                  f"checkpoint keeps it as a pickled object, which is not "
                                  f"loaded); pass --config CONFIG.json as well")
        path = Path(state.get("config_path") or "resumed/config.json")
    else:
        raise ConfigError("pass --config CONFIG.json (or --resume CHECKPOINT, whose stored "
                          "config is then used)")
    return apply_overrides(config, overrides, path), path
