"""The preprocessed image cache: bit-identical items, keying, invalidation, atomic builds."""
import json
import os
import pickle
import subprocess
from collections import namedtuple

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from conftest import TINY_DATA
from data_loader import image_cache
from data_loader.cache_key import ImageCacheError, cache_key
from data_loader.image_cache import IMAGES_FILE, MANIFEST_FILE, TEMP_MARK, CachedDataset, cached
from data_loader.pts_landmarks import PtsLandmarks
from data_loader.synthetic_dataset import SyntheticFaces
from dataset_fixtures import dot_image, save_image, write_pts
import train

SYNTHETIC_ARGS = dict(imwidth=32, crop=4, use_keypoints=True, **TINY_DATA)
# relative path -> (width, height, 0-based points)
FACES = {"a/1.jpg": (120, 90, [(30, 30), (80, 32), (55, 60)]),
         "a/2.png": (100, 130, [(25, 50), (70, 48), (50, 90)]),
         "b/3.jpg": (110, 110, [(20, 40), (85, 45), (50, 80)]),
         "b/4.png": (90, 100, [(15, 30), (60, 35), (40, 70)])}


def synthetic_args(root):
    return {"root": str(root), **SYNTHETIC_ARGS}


def write_faces(root):
    for name, (width, height, points) in FACES.items():
        save_image(dot_image(width, height, np.array(points), radius=3), root / name)
        write_pts((root / name).with_suffix(".pts"), np.array(points, float) + 1)


def pts_args(root, **extra):
    return {"root": str(root), "imwidth": 40, "crop": 5, "use_keypoints": True,
            "test_fraction": 0, "box_margin": 0.3, **extra}


def assert_same_items(view, source):
    """Every item of ``view`` is ``source``'s: same keys, values, dtypes and shapes."""
    assert len(view) == len(source) > 0
    for index in range(len(source)):
        expected, got = source[index], view[index]
        assert got.keys() == expected.keys()
        assert got["index"] == expected["index"] == index
        assert type(got["index"]) is type(expected["index"])
        for key in expected.keys() - {"index"}:
            assert got[key].dtype == expected[key].dtype and got[key].shape == expected[key].shape
            assert torch.equal(got[key], expected[key]), f"item {index}: {key} differs"


def folders(cache_dir):
    return sorted(path.name for path in cache_dir.iterdir())


@pytest.mark.parametrize("train", [True, False])
def test_synthetic_items_are_the_decoded_ones(tmp_path, train):
    args = synthetic_args(tmp_path / "data")
    source = SyntheticFaces(train=train, **args)
    view = cached(source, "SyntheticFaces", args, train, tmp_path / "cache", num_workers=0)
    assert isinstance(view, CachedDataset)
    assert_same_items(view, source)
    (name,) = folders(tmp_path / "cache")
    assert name.startswith(f"SyntheticFaces-{'train' if train else 'eval'}-")
    assert (view.crop, view.eye_indices, view.has_keypoints, view.names) == \
        (4, (0, 1), True, source.names)


@pytest.mark.parametrize("use_keypoints", [True, False])
def test_pts_items_are_the_decoded_ones(tmp_path, use_keypoints):
    write_faces(tmp_path / "faces")
    args = pts_args(tmp_path / "faces", use_keypoints=use_keypoints, eye_indices=[0, 1])
    source = PtsLandmarks(train=True, **args)
    view = cached(source, "PtsLandmarks", args, True, tmp_path / "cache", num_workers=0)
    assert_same_items(view, source)
    assert view.eye_indices == (0, 1)
    assert (view.manifest["keypoints_shape"] is None) == (not use_keypoints)
    # a second call reads the same folder, built once
    again = cached(PtsLandmarks(train=True, **args), "PtsLandmarks", args, True,
                   tmp_path / "cache", num_workers=0)
    assert again.folder == view.folder and len(folders(tmp_path / "cache")) == 1


def test_key_follows_item_arguments_not_pipeline_ones(tmp_path):
    root, cache_dir = tmp_path / "data", tmp_path / "cache"
    first = cached(SyntheticFaces(**synthetic_args(root)), "SyntheticFaces",
                   synthetic_args(root), True, cache_dir, num_workers=0)
    pipeline_only = {**synthetic_args(root), "crop": 7, "do_augmentations": False}
    same = cached(SyntheticFaces(**pipeline_only), "SyntheticFaces", pipeline_only, True,
                  cache_dir, num_workers=0)
    assert same.folder == first.folder and same.crop == 7  # the attribute is the source's
    wider = {**synthetic_args(root), "imwidth": 24}
    source = SyntheticFaces(**wider)
    other = cached(source, "SyntheticFaces", wider, True, cache_dir, num_workers=0)
    assert other.folder != first.folder and other[0]["data"].shape == (3, 24, 24)
    assert_same_items(other, source)
    assert len(folders(cache_dir)) == 2


def test_a_rewritten_image_is_served_anew(tmp_path):
    root, cache_dir = tmp_path / "data", tmp_path / "cache"
    args = synthetic_args(root)
    before = cached(SyntheticFaces(**args), "SyntheticFaces", args, True, cache_dir,
                    num_workers=0)
    old_pixels = before[1]["data"].clone()
    path = SyntheticFaces(**args).image_paths[1]
    stat = os.stat(path)
    save_image(np.full((218, 178, 3), (200, 40, 90), np.uint8), path)  # same name, new pixels
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
    source = SyntheticFaces(**args)
    after = cached(source, "SyntheticFaces", args, True, cache_dir, num_workers=0)
    assert after.folder != before.folder
    assert not torch.equal(after[1]["data"], old_pixels)
    assert_same_items(after, source)
    assert (after[1]["data"][:, 5, 5] - torch.tensor([200, 40, 90])).abs().max() <= 3


def test_a_touched_annotation_file_changes_the_key(tmp_path):
    write_faces(tmp_path / "faces")
    args, cache_dir = pts_args(tmp_path / "faces"), tmp_path / "cache"
    before = cached(PtsLandmarks(**args), "PtsLandmarks", args, True, cache_dir, num_workers=0)
    pts = tmp_path / "faces" / "b" / "3.pts"
    write_pts(pts, np.array([(22, 41), (85, 45), (50, 80)], float) + 1)
    os.utime(pts, ns=(0, os.stat(pts).st_mtime_ns + 10 ** 9))
    source = PtsLandmarks(**args)
    after = cached(source, "PtsLandmarks", args, True, cache_dir, num_workers=0)
    assert after.folder != before.folder
    assert_same_items(after, source)


def test_linked_folders_are_followed_once(tmp_path):
    write_faces(tmp_path / "faces")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("one")
    (tmp_path / "faces" / "notes").symlink_to(tmp_path / "notes")
    (tmp_path / "faces" / "loop").symlink_to(tmp_path / "faces")  # a cycle
    args, cache_dir = pts_args(tmp_path / "faces"), tmp_path / "cache"
    before = cached(PtsLandmarks(**args), "PtsLandmarks", args, True, cache_dir, num_workers=0)
    (tmp_path / "notes" / "readme.txt").write_text("two, a file reached through a link")
    after = cached(PtsLandmarks(**args), "PtsLandmarks", args, True, cache_dir, num_workers=0)
    assert after.folder != before.folder


class FailingFaces(SyntheticFaces):
    """Fails on item 5, like a build killed half-way."""

    def __getitem__(self, index):
        if index == 5:
            raise RuntimeError("disk gone")
        return super().__getitem__(index)


def test_a_failed_build_leaves_nothing_used(tmp_path):
    args, cache_dir = synthetic_args(tmp_path / "data"), tmp_path / "cache"
    with pytest.raises(RuntimeError, match="disk gone"):
        cached(FailingFaces(**args), "SyntheticFaces", args, True, cache_dir, num_workers=0)
    assert folders(cache_dir) == []
    source = SyntheticFaces(**args)
    assert_same_items(cached(source, "SyntheticFaces", args, True, cache_dir, num_workers=0),
                      source)


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_leftovers_of_killed_builds_are_removed_or_ignored(tmp_path):
    args, cache_dir = synthetic_args(tmp_path / "data"), tmp_path / "cache"
    source = SyntheticFaces(**args)
    key, parts = cache_key(source, "SyntheticFaces", args, True, cache_dir)
    final = cache_dir / f"SyntheticFaces-train-{key[:16]}"
    final.mkdir(parents=True)  # under the final name, without a manifest: never read
    (final / IMAGES_FILE).write_bytes(b"\xff" * 10)
    host = os.uname().nodename
    killed = cache_dir / f".{final.name}{TEMP_MARK}{host}-{dead_pid()}-0000abcd"
    running = cache_dir / f".{final.name}{TEMP_MARK}{host}-{os.getpid()}-0000abcd"
    for folder in (killed, running):
        folder.mkdir()
    view = cached(source, "SyntheticFaces", args, True, cache_dir, num_workers=0)
    assert view.folder == final
    assert_same_items(view, source)
    assert not killed.exists() and running.exists()


@pytest.mark.parametrize("damage", ["key", "truncate"])
def test_a_mismatching_cache_is_rebuilt(tmp_path, damage):
    args, cache_dir = synthetic_args(tmp_path / "data"), tmp_path / "cache"
    source = SyntheticFaces(**args)
    view = cached(source, "SyntheticFaces", args, True, cache_dir, num_workers=0)
    manifest_path = view.folder / MANIFEST_FILE
    if damage == "key":
        manifest = json.loads(manifest_path.read_text())
        manifest_path.write_text(json.dumps({**manifest, "key": "0" * 64}))
    else:
        with open(view.folder / IMAGES_FILE, "r+b") as handle:
            handle.truncate(100)
    assert image_cache.read_manifest(view.folder, view.manifest["key"])[0] is None
    again = cached(source, "SyntheticFaces", args, True, cache_dir, num_workers=0)
    assert again.folder == view.folder
    assert json.loads(manifest_path.read_text())["key"] == view.manifest["key"]
    assert_same_items(again, source)


def test_a_second_builder_keeps_the_first_copy(tmp_path):
    args, cache_dir = synthetic_args(tmp_path / "data"), tmp_path / "cache"
    source = SyntheticFaces(**args)
    view = cached(source, "SyntheticFaces", args, True, cache_dir, num_workers=0)
    inode = os.stat(view.folder / IMAGES_FILE).st_ino
    key, parts = cache_key(source, "SyntheticFaces", args, True, cache_dir)
    image_cache.build(source, "SyntheticFaces", view.folder, key, parts, num_workers=0)
    assert os.stat(view.folder / IMAGES_FILE).st_ino == inode  # the first copy stays
    assert folders(cache_dir) == [view.folder.name]  # the second's copy is gone


def test_two_loader_workers_read_the_same_batches(tmp_path):
    args = synthetic_args(tmp_path / "data")
    source = SyntheticFaces(**args)
    view = cached(source, "SyntheticFaces", args, True, tmp_path / "cache", num_workers=0)
    view[0]  # the memmaps are open in this process ...
    assert len(pickle.dumps(view)) < view.manifest["bytes"]  # ... but not pickled
    expected = list(DataLoader(source, batch_size=4))
    got = list(DataLoader(view, batch_size=4, num_workers=2))
    assert len(got) == len(expected)
    for batch_got, batch_expected in zip(got, expected):
        assert batch_got.keys() == batch_expected.keys()
        for key in batch_expected:
            assert torch.equal(batch_got[key], batch_expected[key])


def test_an_unwritable_cache_dir_is_one_line(tmp_path):
    args = synthetic_args(tmp_path / "data")
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ImageCacheError, match=r"cannot write to .*file.*set cache_dir"):
        cached(SyntheticFaces(**args), "SyntheticFaces", args, True, tmp_path / "file" / "cache",
               num_workers=0)


def test_a_disk_too_small_names_the_space_needed(tmp_path, monkeypatch):
    args, cache_dir = synthetic_args(tmp_path / "data"), tmp_path / "cache"
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(image_cache.shutil, "disk_usage", lambda path: usage(100, 90, 10))
    needed = 10 * 3 * 32 * 32 + 10 * 5 * 2 * 4  # 10 training images, 5 keypoints each
    with pytest.raises(ImageCacheError, match=f"0.00 GiB free, but 10 images of SyntheticFaces "
                                              f"need {needed / 2 ** 30:.2f} GiB"):
        cached(SyntheticFaces(**args), "SyntheticFaces", args, True, cache_dir, num_workers=0)
    assert folders(cache_dir) == []


def test_a_cached_run_names_its_dataset_type_and_matches_as_without(tmp_path, tiny_config):
    """Bug: matching.json said "CachedDataset" for a run with cache_images."""
    results = {}
    for cache in (False, True):
        folder = tmp_path / str(cache)
        config = tiny_config(folder, epochs=1)
        args = ["--config", str(config), "--device", "cpu", "--disable_workers",
                "--set", f"cache_images={str(cache).lower()}",
                "--set", f'cache_dir="{folder / "cache"}"']
        assert train.main(args) == 0
        (run,) = (folder / "saved" / "models" / "tiny-smallnet").iterdir()
        results[cache] = json.loads((run / "matching.json").read_text())
    assert results[True]["dataset"] == results[False]["dataset"] == "SyntheticFaces"
    assert results[True]["same_identity"] == results[False]["same_identity"]
