"""Stable ``finetune_from`` paths: a checkpoint file, a folder of runs, or a glob.

Run folders are timestamped, so a config cannot name the run a previous command will
create. ``finetune_from`` may therefore name the experiment folder
(``saved/models/synthetic-smallnet-16d-dve``), one run folder, or a glob
(``saved/models/synthetic-smallnet-16d-dve/*/checkpoint-epoch6.pth``): the candidates are
the ``checkpoint-epoch<N>.pth`` files found, and the one of the newest run (run folder
names sort by start time) with the highest N is used.
"""
import glob
import re
from pathlib import Path
from typing import List, Optional

CHECKPOINT_NAME = re.compile(r"checkpoint-epoch(\d+)\.pth$")
GLOB_CHARACTERS = ("*", "?", "[")


def _candidates(pattern: str) -> List[Path]:
    if any(c in pattern for c in GLOB_CHARACTERS):
        return [Path(p) for p in glob.glob(pattern) if Path(p).is_file()]
    folder = Path(pattern)
    return list(folder.glob("checkpoint-epoch*.pth")) + list(folder.glob("*/checkpoint-epoch*.pth"))


def find_checkpoint(pattern) -> Optional[Path]:
    """The checkpoint ``pattern`` designates (see the module docstring), or None."""
    pattern = str(pattern)
    if Path(pattern).is_file():
        return Path(pattern)

    def order(path: Path):  # (run folder, epoch N)
        return path.parent.name, int(CHECKPOINT_NAME.search(path.name).group(1))

    candidates = [p for p in _candidates(pattern) if CHECKPOINT_NAME.search(p.name)]
    return max(candidates, key=order) if candidates else None


def training_config_for(pattern, configs_dir: Path = Path("configs")) -> Optional[Path]:
    """The config whose run writes under ``pattern``: the experiment folder after
    ``models/`` (``saved/models/synthetic-smallnet-16d-dve/...``) is named
    ``<config folder>-<config stem>``; None when no config in ``configs_dir`` matches."""
    parts = Path(str(pattern)).parts
    if "models" not in parts[:-1]:
        return None
    experiment = parts[parts.index("models") + 1]
    matches = [path for path in sorted(configs_dir.glob("*/*.json"))
               if f"{path.parent.name}-{path.stem}" == experiment]
    return matches[0] if matches else None


def require_checkpoint(pattern) -> Path:
    """``find_checkpoint`` or a one-line error naming ``finetune_from`` and, where a config
    of ``configs/`` trains that experiment, the command that does."""
    found = find_checkpoint(pattern)
    if found is None:
        config = training_config_for(pattern)
        remedy = (f"train it first: python train.py --config {config}" if config is not None
                  else "train that model first or fix the path")
        raise FileNotFoundError(f"finetune_from: no checkpoint at '{pattern}' (a file, a "
                                f"folder of runs or a glob); {remedy}")
    return found
