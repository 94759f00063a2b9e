"""The released DVE models by name: the table, the download cache and its digests.

``utils/model_zoo.json`` lists every model of the original README's tables with its
published figures (SPEC section 8). A name whose run folder is known (all but the
limited-annotation regressors, which the README links no model for) is fetched from
``<root_url>/<experiment>/<run>/<file>`` (SPEC section 5, end), together with the run's
``config.json`` (original schema), once, into ``<cache>/models/<experiment>/<run>/``:

- ``root_url``: the environment variable ``DVE_MODELS_URL`` (a mirror with the same
  layout), else :data:`DEFAULT_MODELS_URL`; ``misc/sync_models.py --root_url`` too;
- ``cache``: the environment variable ``DVE_CACHE``, else ``~/.cache/dve``;
- the download is ``misc.sync_datasets.download``: a ``.part`` file resumed with an
  HTTP Range request, retried, its length checked against Content-Length;
- on the first download the sha256 and size of each file are recorded in
  ``digests.json`` of the run folder; every later use checks both, and a file that
  changed is refused with a one-line :class:`CheckpointError` saying to delete it.

Checkpoints are read by ``utils.checkpoint.load_checkpoint`` (the restricted unpickler
for released files); ``utils.checkpoint_search`` is where a name stands for a path.
"""
import difflib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional

from misc.sync_datasets import SyncError, download, file_digest
from utils.checkpoint import CheckpointError

_logger = logging.getLogger(__name__)

TABLE_PATH = Path(__file__).with_name("model_zoo.json")
DEFAULT_MODELS_URL = "http://www.robots.ox.ac.uk/~vgg/research/DVE/data/models"
MODELS_URL_VARIABLE = "DVE_MODELS_URL"
CACHE_VARIABLE = "DVE_CACHE"
CONFIG_NAME = "config.json"
DIGESTS_NAME = "digests.json"
DIGEST_ALGORITHM = "sha256"
LIST_COMMAND = "python -m misc.sync_models --list"
# Names are lower-case words joined by hyphens; a value with a path separator, a dot or
# a glob character is a path, and so is any value naming an existing file or folder.
_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


@dataclass(frozen=True)
class ZooEntry:
    """One released model. ``experiment``/``run``: its folders on the server (None where
    not known here); ``file``: the checkpoint's name; ``config``: the configuration of
    this repository that trains it; ``published``: the original README's figures
    (``same_identity``/``different_identity`` in pixels, or ``inter_ocular_error`` in
    % of the inter-ocular distance, with ``inter_ocular_error_std`` over three runs)."""
    name: str
    experiment: Optional[str]
    run: Optional[str]
    file: str
    config: str
    published: Dict[str, float]
    kind: str
    benchmark: str
    group: str


class ReleasedModel(NamedTuple):
    """A released model in the cache: its table entry, checkpoint and ``config.json``."""
    entry: ZooEntry
    checkpoint: Path
    config: Path


def zoo_groups() -> List[Dict[str, Any]]:
    """The table's groups (the original README's tables, in order): ``title``, ``kind``,
    ``benchmark`` and ``models`` (a list of :class:`ZooEntry`)."""
    groups = json.loads(TABLE_PATH.read_text())["groups"]
    return [{**group, "models": [ZooEntry(**model, kind=group["kind"],
                                          benchmark=group["benchmark"], group=group["title"])
                                 for model in group["models"]]} for group in groups]


def zoo_entries() -> Dict[str, ZooEntry]:
    """Every released model by name, in the table's order."""
    return {entry.name: entry for group in zoo_groups() for entry in group["models"]}


def is_model_name(value) -> bool:
    """Whether ``value`` (a command-line or config value) is meant as a model name: no
    path separator, dot or glob character, and no file or folder of that name here."""
    text = str(value)
    return bool(_NAME.fullmatch(text)) and not os.path.lexists(text)


def lookup(name: str, source: str = "model") -> ZooEntry:
    """The entry of ``name``; an unknown name raises :class:`CheckpointError` listing the
    closest names (``difflib``), ``source`` naming the option or key that gave it."""
    entries = zoo_entries()
    if name in entries:
        return entries[name]
    closest = difflib.get_close_matches(name, list(entries), n=3, cutoff=0.6)
    hint = f"closest names: {', '.join(closest)}" if closest else "no similar name"
    raise CheckpointError(f"{source}: '{name}' is not a released model name (nor a "
                          f"checkpoint file, folder or glob here); {hint} ({LIST_COMMAND} "
                          f"lists them)")


def models_url() -> str:
    """The released models' root URL: ``$DVE_MODELS_URL``, else the authors' server."""
    return os.environ.get(MODELS_URL_VARIABLE) or DEFAULT_MODELS_URL


def cache_root() -> Path:
    """The download cache: ``$DVE_CACHE``, else ``~/.cache/dve``."""
    return Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "dve").expanduser()


def _known_entry(name: str, source: str) -> ZooEntry:
    """The entry of ``name``, refused with one line when its run folder is not known."""
    entry = lookup(name, source)
    if entry.run is None or entry.experiment is None:
        raise CheckpointError(
            f"{source}: '{name}': the run folder of this released model is not known to this "
            f"repository (the original README links no file for it), so it cannot be fetched "
            f"by name; train it with --config {entry.config}, or pass the path of a checkpoint "
            f"of it instead (a {CONFIG_NAME} beside it is then used)")
    return entry


def model_folder(entry: ZooEntry, cache: Optional[Path] = None) -> Path:
    """``<cache>/models/<experiment>/<run>``, where ``entry``'s files are kept."""
    return Path(cache or cache_root()) / "models" / entry.experiment / entry.run


def _read_digests(folder: Path) -> Dict[str, Dict[str, Any]]:
    path = folder / DIGESTS_NAME
    if not path.exists():
        return {}
    try:
        digests = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path} is unreadable ({err}); delete {folder} and re-run "
                              f"to download the model again") from None
    return digests if isinstance(digests, dict) else {}


def _record_digest(folder: Path, file_name: str, url: str) -> None:
    """Add ``file_name``'s sha256 and size to ``digests.json`` (written atomically)."""
    path = folder / file_name
    digests = _read_digests(folder)
    digests[file_name] = {DIGEST_ALGORITHM: file_digest(path, DIGEST_ALGORITHM),
                          "bytes": path.stat().st_size, "url": url}
    staging = folder / f".{DIGESTS_NAME}.tmp"
    staging.write_text(json.dumps(digests, indent=1) + "\n")
    os.replace(staging, folder / DIGESTS_NAME)


def verify_file(folder: Path, file_name: str) -> None:
    """Check ``folder/file_name`` against its digest recorded at download; raise
    :class:`CheckpointError` (one line: the file, both values, delete and re-run) on a
    mismatch. A file without a record (put there by hand) gets one now."""
    path = folder / file_name
    record = _read_digests(folder).get(file_name)
    if record is None:
        _logger.warning("%s has no recorded digest (not downloaded here); recording it now, "
                        "later uses are checked against it", path)
        _record_digest(folder, file_name, url="")
        return
    size = path.stat().st_size
    actual = file_digest(path, DIGEST_ALGORITHM) if size == record.get("bytes") else None
    if actual is None or actual != record.get(DIGEST_ALGORITHM):
        found = f"{size} bytes" if actual is None else f"{DIGEST_ALGORITHM} {actual}"
        expected = (f"{record.get('bytes')} bytes" if actual is None
                    else f"{DIGEST_ALGORITHM} {record.get(DIGEST_ALGORITHM)}")
        raise CheckpointError(f"{path} has {found}, not the {expected} recorded at its "
                              f"download in {folder / DIGESTS_NAME}: the file changed or is "
                              f"damaged; delete {folder} and re-run to download it again")


def cached_model(name: str, cache: Optional[Path] = None,
                 source: str = "model") -> Optional[ReleasedModel]:
    """The released model ``name`` if its checkpoint and config are in the cache (both
    verified), else None; nothing is downloaded. Raises :class:`CheckpointError` for an
    unknown name, an unknown run folder or a file that changed."""
    entry = _known_entry(name, source)
    folder = model_folder(entry, cache)
    files = (entry.file, CONFIG_NAME)
    if not all((folder / file_name).is_file() for file_name in files):
        return None
    for file_name in files:
        verify_file(folder, file_name)
    return ReleasedModel(entry, folder / entry.file, folder / CONFIG_NAME)


def fetch_model(name: str, cache: Optional[Path] = None, root_url: Optional[str] = None,
                source: str = "model", timeout: float = 60.0, retries: int = 5,
                retry_wait: float = 5.0) -> ReleasedModel:
    """The released model ``name`` in the cache, downloading what is missing (its
    ``config.json`` first, then the checkpoint) from ``root_url`` (default
    :func:`models_url`) and recording each new file's digest; every file is verified.
    ``timeout``, ``retries``, ``retry_wait``: see ``misc.sync_datasets.download``.
    Raises :class:`CheckpointError` (unknown name or run folder, failed download, a
    cached file that changed)."""
    entry = _known_entry(name, source)
    folder = model_folder(entry, cache)
    base = f"{(root_url or models_url()).rstrip('/')}/{entry.experiment}/{entry.run}"
    for file_name in (CONFIG_NAME, entry.file):
        path = folder / file_name
        if path.is_file():
            verify_file(folder, file_name)
            continue
        url = f"{base}/{file_name}"
        _logger.info("downloading %s to %s", url, path)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            download(url, path, timeout=timeout, retries=retries, retry_wait=retry_wait,
                     fix_url=f"check ${MODELS_URL_VARIABLE} (or --root_url of misc/sync_models.py)",
                     fix_folder=f"set ${CACHE_VARIABLE} to another folder")
        except (SyncError, OSError) as err:
            raise CheckpointError(f"released model {name}: {err}") from None
        _record_digest(folder, file_name, url)
    return ReleasedModel(entry, folder / entry.file, folder / CONFIG_NAME)


def format_figures(entry: ZooEntry) -> str:
    """The published figures of ``entry`` as the original README prints them."""
    published = entry.published
    if "same_identity" in published:
        return f"{published['same_identity']:.2f} / {published['different_identity']:.2f}"
    text = f"{published['inter_ocular_error']:.2f}"
    if "inter_ocular_error_std" in published:
        text += f" (+/- {published['inter_ocular_error_std']:.2f})"
    return text
