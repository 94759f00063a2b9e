"""Fetch, verify and unpack a dataset archive from the DVE mirror (SPEC section 5).

Usage (from the repository root):
    python misc/sync_datasets.py --dataset celeba [--data_dir data] [--refresh]

Steps: (1) download <root_url>/<name>.tar.gz to <data_dir>/<name>.tar.gz.part, resuming a
partial file with an HTTP Range request, retrying a dropped connection; (2) check its sha1
(table or --sha1), a mismatch moves it to <name>.tar.gz.bad-sha1; (3) check every member
(``check_members``) before writing anything, unpack into a temporary folder inside data_dir,
rename the dataset folder into place; (4) write <folder>/.sync_complete (JSON with the sha1),
so that a later run with the same digest does nothing. Members start with ``data/`` (or
``./data/``), which stands for data_dir. Exit status 0, or 1 with a one-line message on any error.
"""
import argparse
import hashlib
import http.client
import json
import logging
import os
import posixpath
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

_logger = logging.getLogger(__name__)

DEFAULT_ROOT_URL = "http://www.robots.ox.ac.uk/~vgg/research/DVE/data/datasets"
MARKER_NAME = ".sync_complete"
ARCHIVE_DATA_PREFIX = "data"
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class DatasetArchive:
    """One mirrored archive (``<dataset>.tar.gz``): its published size and sha1, and the
    folder under data_dir that all of its members unpack into."""
    size: str
    sha1: str
    folder: str


DATASET_ARCHIVES = {
    "celeba": DatasetArchive("9.0 GiB", "f6872ab0f2df8e5843abe99dc6d6100dd4fea29f", "celeba"),
    "300w": DatasetArchive("3.0 GiB", "885b09159c61fa29998437747d589c65cfc4ccd3", "300w"),
    "aflw-mtfl": DatasetArchive("252 MiB", "1ff31c07cef4f2777b416d896a65f6c17d8ae2ee", "aflw-mtfl"),
    "aflw-recrop": DatasetArchive("1.1 GiB", "939fdce0e6262a14159832c71d4f84a9d516de5e", "aflw"),
}



class SyncError(Exception):
    """An error the user can act on; its message is one line that says how."""


class _TransientNetworkError(Exception):
    """A failure worth retrying (dropped connection, short body, HTTP 5xx)."""


class _RestartDownload(Exception):
    """The saved partial file cannot be resumed: discard it, fetch from byte 0."""


def _progress(total, initial, desc):
    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True,
                unit_divisor=1024, disable=None, leave=False)


def _parse_content_range(value):
    """'bytes START-END/TOTAL' or 'bytes */TOTAL' -> (START or None, TOTAL or None)."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(?:(\d+)|\*)\s*", value or "")
    groups = match.groups() if match else (None, None)
    return tuple(None if group is None else int(group) for group in groups)


def check_free_space(folder, needed_bytes, what, fix_folder="pass another --data_dir"):
    """SyncError naming ``folder``, the GiB needed and free and ``fix_folder`` when
    ``needed_bytes`` do not fit on its disk (``what``: what they are for)."""
    free = shutil.disk_usage(folder).free
    if needed_bytes > free:
        raise SyncError(f"not enough disk space in {folder} to {what}: need {needed_bytes / 2**30:.2f} GiB, "
                        f"{free / 2**30:.2f} GiB free; free some space or {fix_folder}")


def _open_request(url, part_path, offset, timeout, fix_url):
    """The response to a GET of ``url`` from byte ``offset`` (a Range request when > 0), or
    None when the server says the ``offset`` bytes of ``part_path`` are the whole file;
    raises _RestartDownload / _TransientNetworkError / SyncError as ``_download_once``."""
    headers = {"User-Agent": "dve-sync-datasets"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            _, total = _parse_content_range(err.headers.get("Content-Range"))
            if total == offset:
                _logger.info("%s is already complete (%d bytes)", part_path, offset)
                return None
            _logger.warning("the server cannot resume %s at byte %d (its file has %s bytes); starting again",
                            part_path, offset, total)
            raise _RestartDownload() from err
        if err.code >= 500:
            raise _TransientNetworkError(f"HTTP {err.code} {err.reason}") from err
        raise SyncError(f"HTTP {err.code} {err.reason} for {url}; {fix_url}") from err


def _resumed_offset(response, url, offset):
    """Where the body of ``response`` starts: ``offset`` when the server honoured the Range
    request, 0 when it sent the whole file; _RestartDownload when it resumed elsewhere."""
    if offset and response.status == 206:
        start, _ = _parse_content_range(response.headers.get("Content-Range"))
        if start != offset:
            _logger.warning("the server resumed at byte %s instead of %d; starting again", start, offset)
            raise _RestartDownload()
        _logger.info("resuming %s at byte %d", url, offset)
        return offset
    if offset:
        _logger.info("the server ignored the Range request (HTTP %d); downloading from byte 0",
                     response.status)
    return 0


def _download_once(url, part_path, timeout, fix_url, fix_folder):
    """One HTTP request appending to (or restarting) ``part_path``; returns once the body
    is complete, raises _TransientNetworkError / _RestartDownload / SyncError otherwise."""
    saved = part_path.stat().st_size if part_path.exists() else 0
    response = _open_request(url, part_path, saved, timeout, fix_url)
    if response is None:
        return
    with response:
        offset = _resumed_offset(response, url, saved)
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header is not None else None
        if length is not None:
            check_free_space(part_path.parent, length, f"download {url}", fix_folder)
        received = 0
        try:
            handle = open(part_path, "ab" if offset else "wb")
        except OSError as err:
            raise SyncError(f"cannot write {part_path}: {err}; {fix_folder}") from err
        with handle, _progress(None if length is None else offset + length, offset, part_path.name) as bar:
            for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                try:
                    handle.write(chunk)
                except OSError as err:
                    raise SyncError(f"cannot write {part_path}: {err}; free some disk space and re-run "
                                    "(the download resumes)") from err
                received += len(chunk)
                bar.update(len(chunk))
    if length is not None and received < length:
        raise _TransientNetworkError(f"connection closed after {received} of {length} bytes")


def download(url, archive_path, timeout=60.0, retries=5, retry_wait=5.0,
             fix_url="check --root_url and --dataset", fix_folder="pass another --data_dir"):
    """Download ``url`` to ``archive_path`` through ``<archive_path>.part`` (also used by
    ``utils.model_zoo``). ``timeout``: seconds a connect or read may block; ``retries``: failed
    requests retried, each resuming where the last stopped; ``retry_wait``: seconds before the
    first retry, doubled each time (at most 60); ``fix_url`` / ``fix_folder``: what the one-line
    SyncError of a missing file / an unwritable or full folder tells the user to do."""
    part_path = Path(f"{archive_path}.part")
    failures = restarts = 0
    while True:
        try:
            _download_once(url, part_path, timeout, fix_url, fix_folder)
            break
        except _RestartDownload as err:
            part_path.unlink()
            restarts += 1
            if restarts > 2:
                raise SyncError(f"the server at {url} keeps refusing to resume {part_path}; delete it and "
                                "re-run") from err
        except (_TransientNetworkError, OSError, http.client.HTTPException) as err:
            failures += 1
            reason = str(err) or type(err).__name__
            if failures > retries:
                saved = part_path.stat().st_size if part_path.exists() else 0
                resume = (f"re-running resumes from the {saved} bytes saved in {part_path}"
                          if saved else "re-run the command when the server is reachable")
                raise SyncError(f"download of {url} failed after {failures} attempts ({reason}); "
                                f"{resume}") from err
            wait = min(retry_wait * 2 ** (failures - 1), 60.0)
            _logger.warning("download interrupted (%s); retry %d of %d in %.0f s",
                            reason, failures, retries, wait)
            time.sleep(wait)
    os.replace(part_path, archive_path)


def file_digest(path, algorithm="sha1"):
    """The hexadecimal ``hashlib`` digest (``algorithm``) of the file at ``path``."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle, _progress(path.stat().st_size, 0, f"{algorithm} {path.name}") as bar:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def _normalized_member_name(name):
    """The member's path without './' and trailing '/', or None when it is unsafe."""
    if name.startswith("/") or name.startswith("\\") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    if ".." in parts:
        return None
    return "/".join(parts)


def _inside(path, root):
    return path == root or path.startswith(root + "/")


def _through_symlink(path, symlinks):
    parts = path.split("/")
    return any("/".join(parts[:i]) in symlinks for i in range(1, len(parts)))


def _symlink_target(name, linkname, symlinks):
    """Walk ``linkname`` from the folder of the symlink member ``name`` as the filesystem
    would; None when it climbs above the archive root, passes through or ends on a
    symlink member (``symlinks``: their normalized names)."""
    parts = [part for part in posixpath.dirname(name).split("/") if part]
    for part in linkname.replace("\\", "/").split("/"):
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
            if "/".join(parts) in symlinks:
                return None
    return "/".join(parts)


def _check_link(member, name, root, symlinks, files):
    """SyncError unless the link ``member`` (normalized ``name``) points inside ``root``:
    a symlink through real folders, a hardlink to a file member."""
    if member.issym():
        resolved = _symlink_target(name, member.linkname, symlinks)
        if member.linkname.startswith(("/", "\\")) or resolved is None or not _inside(resolved, root):
            raise SyncError(f"archive member {member.name!r} is a symlink to {member.linkname!r}, "
                            f"outside {root}/")
    elif member.islnk():
        target = _normalized_member_name(member.linkname)
        if target is None or not _inside(target, root) or target not in files \
                or _through_symlink(target, symlinks):
            raise SyncError(f"archive member {member.name!r} is a hardlink to {member.linkname!r}, "
                            f"not a file of {root}/")


def check_members(members, folder):
    """Refuse an archive unless every member stays inside ``data/<folder>``.

    Rules: no absolute path, no '..' component; every member is the folder ``.`` or
    ``data`` (an archive packed with ``tar -C dir .`` holds ``./`` and ``./data/...``),
    ``data/<folder>`` or below it; only files, folders, symlinks and hardlinks (no devices, fifos); a symlink
    target is relative and, walked from the symlink's folder, stays below ``data/<folder>``
    without passing through or ending on a symlink member (so the walk is the real
    resolution); a hardlink names a file member below it; no member lies below a symlink.
    ``members``: the ``tarfile.TarInfo`` list. Returns the regular files' total size in
    bytes; raises SyncError naming the first offending member.
    """
    root = f"{ARCHIVE_DATA_PREFIX}/{folder}"
    names = {member.name: _normalized_member_name(member.name) for member in members}
    symlinks = {names[m.name] for m in members if m.issym() and names[m.name]}
    files = {names[m.name] for m in members if m.isreg() and names[m.name]}
    total_bytes = 0
    found_root = False
    for member in members:
        name = names[member.name]
        if name is None:
            raise SyncError(f"unsafe archive member {member.name!r} (absolute path or '..' component)")
        if not _inside(name, root) and (name not in ("", ARCHIVE_DATA_PREFIX) or not member.isdir()):
            raise SyncError(f"archive member {member.name!r} lies outside {root}/")
        if _through_symlink(name, symlinks):
            raise SyncError(f"archive member {member.name!r} lies below a symlink of the archive")
        found_root = found_root or _inside(name, root)
        if member.isreg():
            total_bytes += member.size
        elif member.issym() or member.islnk():
            _check_link(member, name, root, symlinks, files)
        elif not member.isdir():
            raise SyncError(f"archive member {member.name!r} is a device, fifo or other special file")
    if not found_root:
        raise SyncError(f"the archive has no member under {root}/; is --dataset right?")
    return total_bytes


def unpack(archive_path, data_dir, folder, sha1, dataset):
    """Check, unpack ``archive_path`` and move ``data/<folder>`` to ``data_dir/<folder>``
    (replacing what is there), with the marker written inside before the move."""
    try:
        archive = tarfile.open(archive_path, "r:*")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise SyncError(f"cannot read {archive_path} as a tar archive ({err}); delete it and re-run") from err
    staging = Path(tempfile.mkdtemp(prefix=f".sync-{dataset}-", dir=data_dir))
    try:
        with archive:
            members = archive.getmembers()
            total_bytes = check_members(members, folder)
            check_free_space(data_dir, total_bytes, f"unpack {archive_path}")
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            _logger.info("unpacking %d members (%.2f GiB) of %s", len(members), total_bytes / 2**30,
                         archive_path)
            archive.extractall(staging, members=tqdm(members, desc="unpack", disable=None, leave=False),
                               **extra)
        unpacked = staging / ARCHIVE_DATA_PREFIX / folder
        marker = {"dataset": dataset, "archive": archive_path.name, "sha1": sha1}
        (unpacked / MARKER_NAME).write_text(json.dumps(marker) + "\n")
        destination = data_dir / folder
        replaced = staging / "replaced"
        if os.path.lexists(destination):
            os.replace(destination, replaced)
        try:
            os.replace(unpacked, destination)
        except OSError:
            if os.path.lexists(replaced):
                os.replace(replaced, destination)
            raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise SyncError(f"unpacking {archive_path} failed ({err}); nothing was installed, "
                        "re-run to retry") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def sync_dataset(dataset, root_url=DEFAULT_ROOT_URL, data_dir="data", refresh=False, keep_archive=False,
                 sha1=None, timeout=60.0, retries=5, retry_wait=5.0):
    """Make ``data_dir`` (standing for the members' leading ``data/``) hold the verified,
    unpacked ``dataset`` (a key of DATASET_ARCHIVES); returns its folder. ``sha1`` replaces
    the table's digest; timeout, retries and retry_wait: see ``download``."""
    entry = DATASET_ARCHIVES[dataset]
    expected = (sha1 or entry.sha1).lower()
    data_dir = Path(data_dir)
    destination = data_dir / entry.folder
    try:  # the sha1 recorded by a finished unpack
        installed = json.loads((destination / MARKER_NAME).read_text()).get("sha1")
    except (OSError, ValueError, AttributeError):
        installed = None
    if not refresh and installed == expected:
        _logger.info("%s is already unpacked and verified (sha1 %s); --refresh fetches it again",
                     destination, expected)
        return destination
    if not refresh and destination.exists():
        found = f"was unpacked from an archive with sha1 {installed}" if installed else \
            f"exists without {MARKER_NAME} (not written by this script)"
        raise SyncError(f"{destination} {found}; pass --refresh to replace it, or move it away")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SyncError(f"cannot create {data_dir} ({err}); pass another --data_dir") from err
    for stale in data_dir.glob(f".sync-{dataset}-*"):
        _logger.warning("removing %s left by an interrupted run", stale)
        shutil.rmtree(stale, ignore_errors=True)
    archive_path = data_dir / f"{dataset}.tar.gz"
    if refresh:
        for path in (archive_path, Path(f"{archive_path}.part")):
            path.unlink(missing_ok=True)
    url = f"{root_url.rstrip('/')}/{archive_path.name}"
    if archive_path.exists():
        _logger.info("using the downloaded %s", archive_path)
    else:
        _logger.info("downloading %s (%s) to %s", url, entry.size, archive_path)
        download(url, archive_path, timeout=timeout, retries=retries, retry_wait=retry_wait)
    actual = file_digest(archive_path)
    if actual != expected:
        bad_path = Path(f"{archive_path}.bad-sha1")
        os.replace(archive_path, bad_path)
        raise SyncError(f"sha1 mismatch for {archive_path}: expected {expected}, got {actual}; moved it to "
                        f"{bad_path}, nothing unpacked; re-run to download again (--sha1 for another mirror)")
    _logger.info("sha1 %s verified", actual)
    unpack(archive_path, data_dir, entry.folder, expected, dataset)
    if not keep_archive:
        archive_path.unlink()
    return destination


def _sha1_argument(value):
    if not re.fullmatch(r"[0-9a-fA-F]{40}", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a sha1 digest (40 hexadecimal digits)")
    return value.lower()


def build_parser():
    parser = argparse.ArgumentParser(description="Fetch, verify and unpack a DVE dataset mirror archive.")
    parser.add_argument("--dataset", required=True, choices=sorted(DATASET_ARCHIVES))
    parser.add_argument("--root_url", default=DEFAULT_ROOT_URL, help="mirror folder holding <dataset>.tar.gz")
    parser.add_argument("--data_dir", default="data", help="folder standing for the archives' leading data/")
    parser.add_argument("--refresh", action="store_true", help="fetch and unpack again even if present")
    parser.add_argument("--keep_archive", action="store_true", help="keep the .tar.gz after unpacking")
    parser.add_argument("--sha1", type=_sha1_argument, help="digest to expect instead of the table's")
    parser.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds")
    parser.add_argument("--retries", type=int, default=5, help="retries of a dropped download")
    parser.add_argument("--retry_wait", type=float, default=5.0, help="seconds before the first retry")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        destination = sync_dataset(**vars(args))  # the options are sync_dataset's arguments
    except SyncError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"error: {err}; check --data_dir and free disk space, then re-run", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; re-running resumes the download", file=sys.stderr)
        return 130
    print(f"{args.dataset}: {destination} ready")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main())
