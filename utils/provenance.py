"""What reproduces a run: the command, the code version, the software and the device.

``record_start`` appends one entry to the run folder's ``provenance.json`` each time the
run starts or resumes:

- ``command``: the script and its arguments as the run received them (``python train.py
  --config ...``; for a run started by another script, e.g. ``misc.reproduce_claim``,
  the arguments it passed), ``process``: the process's own command line, ``cwd``;
- ``code``: the git commit of this checkout and whether tracked files differ from it
  (``modified``; null for both when the code is not a git checkout or git is missing);
- ``python``, ``torch``, ``cuda`` (the CUDA version PyTorch was built with, null on a CPU
  build), ``cudnn``; ``device`` and ``device_name`` (the GPU's name, or the CPU's);
  ``host``, ``platform``, ``started`` (local time, ISO 8601).
"""
import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch

from utils.distributed import SINGLE_PROCESS, ProcessGroup

PROVENANCE_NAME = "provenance.json"
CODE_ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> Optional[str]:
    try:
        done = subprocess.run(["git", "-C", str(CODE_ROOT), *args], capture_output=True,
                              text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def code_version() -> Dict[str, Any]:
    """``{"commit": sha or None, "modified": bool or None}`` of the code's git checkout
    (``modified``: tracked files differ from the commit; untracked files do not count)."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "modified": None}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "modified": None if status is None else bool(status.strip())}


def device_name(device: torch.device) -> str:
    """The GPU's name for a CUDA device, else the processor's (or the machine type)."""
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def run_provenance(device: torch.device, script: str, argv: Sequence[str],
                   group: ProcessGroup = SINGLE_PROCESS) -> Dict[str, Any]:
    """One ``provenance.json`` entry (module docstring) for ``script`` run with ``argv``
    on ``device`` (by each of ``group.world_size`` processes)."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "command": shlex.join(["python", script, *argv]),
        "process": shlex.join([Path(sys.executable).name, *sys.argv]),
        "cwd": os.getcwd(),
        "code": code_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "device": str(device),
        "device_name": device_name(device),
        "processes": group.world_size,
        "host": platform.node(),
        "platform": platform.platform(),
        "started": datetime.now().isoformat(timespec="seconds"),
    }


def record_start(model_dir: Path, entry: Dict[str, Any]) -> None:
    """Append ``entry`` to ``model_dir/provenance.json`` (``{"starts": [...]}``, oldest
    first); a missing or unreadable file starts a new list."""
    path = Path(model_dir) / PROVENANCE_NAME
    try:
        starts = json.loads(path.read_text())["starts"]
        starts = starts if isinstance(starts, list) else []
    except (OSError, ValueError, KeyError, TypeError):
        starts = []
    path.write_text(json.dumps({"starts": [*starts, entry]}, indent=2) + "\n")
