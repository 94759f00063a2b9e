"""Console and ``info.log`` logging for the command-line scripts."""
import logging
import sys
from pathlib import Path
from typing import Optional

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (not at creation), so
    a process that swaps stderr (pytest's capture, notebooks) never writes to a closed one."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def close_run_log() -> None:
    """Detach and close the ``info.log`` handler of the finished run, if any."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_dve_run_file", False)]:
        root.removeHandler(old)
        old.close()


def setup_logging(log_dir: Optional[Path] = None, verbosity: int = 2) -> None:
    """Log to the console and, with ``log_dir``, to ``log_dir/info.log``."""
    level = {0: logging.WARNING, 1: logging.INFO, 2: logging.INFO}.get(verbosity, logging.DEBUG)
    root = logging.getLogger()
    root.setLevel(level)
    if not any(getattr(h, "_dve_console", False) for h in root.handlers):
        console = _StderrHandler()
        console.setFormatter(logging.Formatter("%(message)s"))
        console._dve_console = True
        root.addHandler(console)
    if log_dir is not None:
        close_run_log()  # a new run (e.g. the next seed) logs to its own file
        log_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_dir / "info.log")
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._dve_run_file = True
        root.addHandler(handler)
    for noisy in ("matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
