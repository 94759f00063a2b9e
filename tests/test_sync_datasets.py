"""misc/sync_datasets.py against a loopback HTTP server serving archives built here."""
import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from misc.sync_datasets import MARKER_NAME, SyncError, check_members, main

REPO_ROOT = Path(__file__).resolve().parents[1]
IMAGE_BYTES = random.Random(0).randbytes(150_000)  # incompressible: the archive is ~150 kB
LANDMARKS_TEXT = b"2\nlefteye_x lefteye_y\n000001.jpg 69 109\n"


def file_member(name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def link_member(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def special_member(name, kind):
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


def dir_member(name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def build_archive(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def good_members(image=IMAGE_BYTES):
    return [dir_member("data/celeba"), file_member("data/celeba/Anno/landmarks.txt", LANDMARKS_TEXT),
            file_member("data/celeba/Img/000001.jpg", image)]


def sha1_of(data):
    return hashlib.sha1(data).hexdigest()


def run_sync(server, data_dir, sha1, *extra):
    return main(["--dataset", "celeba", "--root_url", server.url, "--data_dir", str(data_dir), "--sha1", sha1,
                 "--timeout", "5", "--retry_wait", "0", *extra])


def all_paths(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def assert_good_unpack(data_dir, sha1, image=IMAGE_BYTES):
    assert (data_dir / "celeba/Anno/landmarks.txt").read_bytes() == LANDMARKS_TEXT
    assert (data_dir / "celeba/Img/000001.jpg").read_bytes() == image
    assert json.loads((data_dir / "celeba" / MARKER_NAME).read_text())["sha1"] == sha1
    assert not list(data_dir.glob(".sync-*")) and not list(data_dir.glob("*.part"))


def test_fetch_verify_unpack_then_second_run_does_not_fetch(server, tmp_path):
    links = [link_member("data/celeba/latest.jpg", "Img/000001.jpg"),
             link_member("data/celeba/Img/copy.jpg", "data/celeba/Img/000001.jpg", tarfile.LNKTYPE)]
    archive = build_archive(good_members() + links)
    server.files["/datasets/celeba.tar.gz"] = archive
    data_dir = tmp_path / "data"
    assert run_sync(server, data_dir, sha1_of(archive)) == 0
    assert_good_unpack(data_dir, sha1_of(archive))
    assert os.readlink(data_dir / "celeba/latest.jpg") == "Img/000001.jpg"
    assert os.path.samefile(data_dir / "celeba/Img/copy.jpg", data_dir / "celeba/Img/000001.jpg")
    assert not (data_dir / "celeba.tar.gz").exists()  # no --keep_archive
    assert server.requests == [("/datasets/celeba.tar.gz", None)]
    assert run_sync(server, data_dir, sha1_of(archive)) == 0
    assert len(server.requests) == 1


def dot_prefixed(member_specs):
    """The members named as ``tar -C dir -czf celeba.tar.gz .`` names them ("./data/...")."""
    for info, _ in member_specs:
        info.name = f"./{info.name}"
    return member_specs


def test_archive_packed_from_inside_its_folder(server, tmp_path):
    members = [dir_member("./"), dir_member("./data/")] + dot_prefixed(good_members())
    members += [link_member("./data/celeba/latest.jpg", "Img/000001.jpg"),
                link_member("./data/celeba/Img/copy.jpg", "./data/celeba/Img/000001.jpg",
                            tarfile.LNKTYPE)]
    archive = build_archive(members)
    assert [m.name for m in tarfile.open(fileobj=io.BytesIO(archive)).getmembers()][:3] == \
        [".", "./data", "./data/celeba"]
    server.files["/datasets/celeba.tar.gz"] = archive
    data_dir = tmp_path / "data"
    assert run_sync(server, data_dir, sha1_of(archive)) == 0
    assert_good_unpack(data_dir, sha1_of(archive))
    assert os.path.samefile(data_dir / "celeba/Img/copy.jpg", data_dir / "celeba/Img/000001.jpg")
    assert all_paths(tmp_path) == ["data", "data/celeba", "data/celeba/.sync_complete",
                                   "data/celeba/Anno", "data/celeba/Anno/landmarks.txt",
                                   "data/celeba/Img", "data/celeba/Img/000001.jpg",
                                   "data/celeba/Img/copy.jpg", "data/celeba/latest.jpg"]


@pytest.mark.parametrize("extra, message", [
    ([file_member("./data/aflw/x.txt", b"x")], "'./data/aflw/x.txt' lies outside data/celeba/"),
    ([file_member("./x.txt", b"x")], "'./x.txt' lies outside data/celeba/"),
    ([file_member(".", b"x")], "'.' lies outside data/celeba/"),  # the root, but not a folder
    ([file_member("./../evil", b"x")], "'./../evil' (absolute path or '..' component)"),
    ([link_member("./data/celeba/up", "../../..")], "is a symlink to '../../..'"),
    ([special_member("./data/celeba/null", tarfile.CHRTYPE)], "device, fifo"),
])
def test_dot_prefixed_members_keep_the_safety_rules(extra, message):
    with pytest.raises(SyncError, match=re.escape(message)):
        check_members(members_of([dir_member("./")] + dot_prefixed(good_members()) + extra),
                      "celeba")


def test_refresh_refetches_and_replaces(server, tmp_path, capsys):
    first = build_archive(good_members() + [file_member("data/celeba/only_in_first.txt", b"old")])
    server.files["/datasets/celeba.tar.gz"] = first
    data_dir = tmp_path / "data"
    assert run_sync(server, data_dir, sha1_of(first), "--keep_archive") == 0
    assert (data_dir / "celeba.tar.gz").read_bytes() == first
    second_image = IMAGE_BYTES[::-1]
    second = build_archive(good_members(second_image))
    server.files["/datasets/celeba.tar.gz"] = second
    assert run_sync(server, data_dir, sha1_of(second)) == 1  # another digest, no --refresh: refused
    assert "--refresh" in capsys.readouterr().err and len(server.requests) == 1
    assert run_sync(server, data_dir, sha1_of(second), "--refresh") == 0
    assert len(server.requests) == 2
    assert_good_unpack(data_dir, sha1_of(second), second_image)
    assert not (data_dir / "celeba/only_in_first.txt").exists()


def test_existing_folder_without_marker_is_not_overwritten(server, tmp_path, capsys):
    (tmp_path / "data/celeba").mkdir(parents=True)
    (tmp_path / "data/celeba/mine.txt").write_text("hand-made")
    assert run_sync(server, tmp_path / "data", "0" * 40) == 1
    err = capsys.readouterr().err
    assert MARKER_NAME in err and "--refresh" in err and server.requests == []
    assert (tmp_path / "data/celeba/mine.txt").read_text() == "hand-made"


def test_tampered_archive_is_refused_and_moved_aside(server, tmp_path):
    archive = build_archive(good_members())
    tampered = bytearray(archive)
    tampered[len(tampered) // 2] ^= 0xFF
    server.files["/datasets/celeba.tar.gz"] = bytes(tampered)
    data_dir = tmp_path / "data"
    command = [sys.executable, "misc/sync_datasets.py", "--dataset", "celeba", "--root_url", server.url,
               "--data_dir", str(data_dir), "--sha1", sha1_of(archive), "--retry_wait", "0"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert sha1_of(archive) in errors[0] and sha1_of(bytes(tampered)) in errors[0]
    assert all_paths(tmp_path) == ["data", "data/celeba.tar.gz.bad-sha1"]
    assert (data_dir / "celeba.tar.gz.bad-sha1").read_bytes() == bytes(tampered)


@pytest.mark.parametrize("bad_member, reason", [
    (file_member("data/celeba/../../evil", b"x"), "(absolute path or '..' component)"),
    (file_member("../evil", b"x"), "(absolute path or '..' component)"),
    (file_member("ABSOLUTE/evil", b"x"), "(absolute path or '..' component)"),
    (link_member("data/celeba/etc", "/etc"), "is a symlink to '/etc'"),
], ids=["dotdot-inside-data", "dotdot", "absolute", "symlink-to-etc"])
def test_unsafe_archive_is_refused_whole(server, tmp_path, capsys, bad_member, reason):
    info, data = bad_member
    info.name = info.name.replace("ABSOLUTE", str(tmp_path / "outside"))  # would land beside data_dir
    archive = build_archive(good_members() + [(info, data)])
    server.files["/datasets/celeba.tar.gz"] = archive
    assert run_sync(server, tmp_path / "data", sha1_of(archive)) == 1
    err = capsys.readouterr().err
    assert repr(info.name) in err and reason in err
    assert all_paths(tmp_path) == ["data", "data/celeba.tar.gz"]  # nothing unpacked, inside or outside


def test_dropped_connection_then_rerun_resumes_with_range(server, tmp_path, capsys):
    archive = build_archive(good_members())
    half = len(archive) // 2
    server.files["/datasets/celeba.tar.gz"] = archive
    server.drop_after = half
    data_dir = tmp_path / "data"
    assert run_sync(server, data_dir, sha1_of(archive), "--retries", "0") == 1
    assert "re-running resumes" in capsys.readouterr().err
    assert (data_dir / "celeba.tar.gz.part").stat().st_size == half
    assert run_sync(server, data_dir, sha1_of(archive)) == 0
    assert [header for _, header in server.requests] == [None, f"bytes={half}-"]
    assert_good_unpack(data_dir, sha1_of(archive))


def test_dropped_connection_is_retried_within_a_run(server, tmp_path):
    archive = build_archive(good_members())
    server.files["/datasets/celeba.tar.gz"] = archive
    server.drop_after = 1000
    assert run_sync(server, tmp_path / "data", sha1_of(archive), "--retries", "1") == 0
    assert [header for _, header in server.requests] == [None, "bytes=1000-"]
    assert_good_unpack(tmp_path / "data", sha1_of(archive))


def test_server_answering_200_to_a_range_restarts_from_zero(server, tmp_path):
    archive = build_archive(good_members())
    server.files["/datasets/celeba.tar.gz"] = archive
    (tmp_path / "data").mkdir()
    (tmp_path / "data/celeba.tar.gz.part").write_bytes(b"stale bytes of an older file")
    server.ignore_range = True
    assert run_sync(server, tmp_path / "data", sha1_of(archive)) == 0
    assert server.requests == [("/datasets/celeba.tar.gz", "bytes=28-")]
    assert_good_unpack(tmp_path / "data", sha1_of(archive))  # appending would have failed the sha1


def test_complete_part_file_answered_416_is_used(server, tmp_path):
    archive = build_archive(good_members())
    server.files["/datasets/celeba.tar.gz"] = archive
    (tmp_path / "data").mkdir()
    (tmp_path / "data/celeba.tar.gz.part").write_bytes(archive)
    assert run_sync(server, tmp_path / "data", sha1_of(archive)) == 0
    assert server.requests == [("/datasets/celeba.tar.gz", f"bytes={len(archive)}-")]
    assert_good_unpack(tmp_path / "data", sha1_of(archive))


def test_missing_file_is_a_one_line_error(server, tmp_path, capsys):
    assert run_sync(server, tmp_path / "data", "0" * 40) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "HTTP 404" in errors[0] and "--root_url" in errors[0]


def members_of(member_specs):
    return [info for info, _ in member_specs]


def test_check_members_accepts_internal_links_and_sums_file_sizes():
    links = [link_member("data/celeba/latest.jpg", "Img/000001.jpg"),
             link_member("data/celeba/Img/copy.jpg", "data/celeba/Img/000001.jpg", tarfile.LNKTYPE)]
    members = members_of(good_members() + links + [dir_member("data")])
    assert check_members(members, "celeba") == len(LANDMARKS_TEXT) + len(IMAGE_BYTES)


@pytest.mark.parametrize("extra, message", [
    ([file_member("data/aflw/x.txt", b"x")], "outside data/celeba/"),
    ([file_member("data", b"x")], "'data' lies outside data/celeba/"),
    ([link_member("data", "data/celeba")], "'data/celeba' lies below a symlink"),
    ([link_member("data/celeba/up", "../../..")], "symlink"),
    ([link_member("data/celeba/hard", "/etc/passwd", tarfile.LNKTYPE)], "hardlink"),
    ([special_member("data/celeba/null", tarfile.CHRTYPE)], "device, fifo"),
    ([special_member("data/celeba/pipe", tarfile.FIFOTYPE)], "device, fifo"),
    ([link_member("data/celeba/s", "Img"), file_member("data/celeba/s/x", b"x")], "below a symlink"),
])
def test_check_members_refuses(extra, message):
    with pytest.raises(SyncError, match=re.escape(message)):
        check_members(members_of(good_members() + extra), "celeba")


def test_symlink_through_symlink_escape_is_caught(tmp_path):
    # a/b/s -> ../.. is data/celeba itself; t -> a/b/s/.. reads data/celeba/a/b by a purely
    # lexical check, but the filesystem follows s first and lands on data/: outside.
    stage = tmp_path / "stage"
    (stage / "data/celeba/a/b").mkdir(parents=True)
    os.symlink("../..", stage / "data/celeba/a/b/s")
    os.symlink("a/b/s/..", stage / "data/celeba/t")
    assert Path(os.path.realpath(stage / "data/celeba/t")) == stage / "data"
    with pytest.raises(SyncError, match="'data/celeba/t' is a symlink"):
        check_members(members_of(good_members() + [link_member("data/celeba/a/b/s", "../.."),
                                                   link_member("data/celeba/t", "a/b/s/..")]), "celeba")
    check_members(members_of(good_members() + [link_member("data/celeba/a/b/s", "../..")]), "celeba")
