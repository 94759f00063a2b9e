"""Console and ``info.log`` logging for the command-line scripts.

A run's folder is created only once its data and settings have been checked, so what is
logged while the run is prepared is held (:func:`hold_run_log`) and written at the top
of its ``info.log`` when the folder exists (:func:`setup_logging` with ``log_dir``).
"""
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


class _HeldRecords(logging.Handler):
    """Keeps the records of a run being prepared, for its ``info.log``."""

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _run_handlers(root: logging.Logger):
    return [h for h in root.handlers if isinstance(h, _HeldRecords)
            or getattr(h, "_dve_run_file", False)]


def close_run_log() -> None:
    """Detach and close the ``info.log`` handler of the finished run (or the records held
    for a run that never started), if any."""
    root = logging.getLogger()
    for old in _run_handlers(root):
        root.removeHandler(old)
        old.close()


def hold_run_log() -> None:
    """Hold log records for the next run's ``info.log`` (see the module doc): the previous
    run's file is closed; records already held (a script's preamble) stay held."""
    root = logging.getLogger()
    if not any(isinstance(h, _HeldRecords) for h in root.handlers):
        close_run_log()
        root.addHandler(_HeldRecords())


def setup_logging(log_dir: Optional[Path] = None, verbosity: int = 2) -> None:
    """Log to the console and, with ``log_dir``, to ``log_dir/info.log`` (starting with the
    records held by :func:`hold_run_log`)."""
    level = {0: logging.WARNING, 1: logging.INFO, 2: logging.INFO}.get(verbosity, logging.DEBUG)
    root = logging.getLogger()
    root.setLevel(level)
    if not any(getattr(h, "_dve_console", False) for h in root.handlers):
        console = _StderrHandler()
        console.setFormatter(logging.Formatter("%(message)s"))
        console._dve_console = True
        root.addHandler(console)
    if log_dir is not None:
        held = [r for h in root.handlers if isinstance(h, _HeldRecords) for r in h.records]
        close_run_log()  # a new run (e.g. the next seed) logs to its own file
        log_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_dir / "info.log")
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._dve_run_file = True
        for record in held:
            if record.levelno >= level:
                handler.handle(record)
        root.addHandler(handler)
    for noisy in ("matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
