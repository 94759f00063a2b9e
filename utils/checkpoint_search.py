"""What a checkpoint argument designates: a file, a folder of runs, a glob, or a released
model's name; the one place where ``finetune_from``, ``--resume`` (train.py,
test_matching.py, test_keypoints.py) and the other checkpoint options are resolved.

Run folders are timestamped, so a config cannot name the run a previous command will
create. A checkpoint argument may therefore name the experiment folder
(``saved/models/synthetic-smallnet-16d-dve``), one run folder, or a glob
(``saved/models/synthetic-smallnet-16d-dve/*/checkpoint-epoch6.pth``): the candidates are
the ``checkpoint-epoch<N>.pth`` files found, and the one of the newest run (run folder
names sort by start time) with the highest N is used. A released model's name
(``celeba-smallnet-64d-dve``, ``utils.model_zoo``) stands for its file in the download
cache: :func:`require_checkpoint` downloads it on first use, :func:`find_checkpoint`
only looks in the cache.
"""
import glob
import re
from pathlib import Path
from typing import List, Optional

from utils import model_zoo

CHECKPOINT_NAME = re.compile(r"checkpoint-epoch(\d+)\.pth$")
GLOB_CHARACTERS = ("*", "?", "[")


def _candidates(pattern: str) -> List[Path]:
    if any(c in pattern for c in GLOB_CHARACTERS):
        return [Path(p) for p in glob.glob(pattern) if Path(p).is_file()]
    folder = Path(pattern)
    return list(folder.glob("checkpoint-epoch*.pth")) + list(folder.glob("*/checkpoint-epoch*.pth"))


def find_checkpoint(pattern) -> Optional[Path]:
    """The checkpoint ``pattern`` designates (see the module docstring), or None; for a
    released model's name its cached file (verified), None while it is not downloaded.
    Raises ``utils.checkpoint.CheckpointError`` for a name that is not in the table."""
    pattern = str(pattern)
    if model_zoo.is_model_name(pattern):
        cached = model_zoo.cached_model(pattern)
        return cached.checkpoint if cached is not None else None
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


def checkpoint_remedy(pattern) -> str:
    """What makes the absent checkpoint ``pattern`` exist: the download of a released
    model, or the training command of the config of ``configs/`` that writes it."""
    if model_zoo.is_model_name(pattern):
        return (f"a released model, downloaded on first use (now: python -m misc.sync_models "
                f"{pattern})")
    config = training_config_for(pattern)
    return (f"train it first: python train.py --config {config}" if config is not None
            else "train that model first or fix the path")


def require_checkpoint(pattern, source: str = "finetune_from") -> Path:
    """The checkpoint ``pattern`` designates, a released model's name downloaded first
    (``utils.model_zoo.fetch_model``); else a one-line ``FileNotFoundError`` naming
    ``source`` (the key or option) and :func:`checkpoint_remedy`. Download and digest
    failures raise ``utils.checkpoint.CheckpointError``."""
    if model_zoo.is_model_name(pattern):
        return model_zoo.fetch_model(str(pattern), source=source).checkpoint
    found = find_checkpoint(pattern)
    if found is None:
        raise FileNotFoundError(f"{source}: no checkpoint at '{pattern}' (a file, a folder of "
                                f"runs or a glob); {checkpoint_remedy(pattern)}")
    return found
