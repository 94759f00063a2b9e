"""Console and ``info.log`` logging for the command-line scripts."""
import logging
from pathlib import Path
from typing import Optional

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_dir: Optional[Path] = None, verbosity: int = 2) -> None:
    """Log to the console and, with ``log_dir``, to ``log_dir/info.log``."""
    level = {0: logging.WARNING, 1: logging.INFO, 2: logging.INFO}.get(verbosity, logging.DEBUG)
    root = logging.getLogger()
    root.setLevel(level)
    if not any(getattr(h, "_dve_console", False) for h in root.handlers):
        console = logging.StreamHandler()
        console.setFormatter(logging.Formatter("%(message)s"))
        console._dve_console = True
        root.addHandler(console)
    if log_dir is not None:
        for old in [h for h in root.handlers if getattr(h, "_dve_run_file", False)]:
            root.removeHandler(old)  # a new run (e.g. the next seed) logs to its own file
            old.close()
        log_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_dir / "info.log")
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._dve_run_file = True
        root.addHandler(handler)
    for noisy in ("matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
