"""Broken user files end in one line naming the file and the fix, exit status 2, no traceback.

The inputs are the kinds of files users' bug reports describe (a binary .pts export, a .pts
in another layout, a JPEG cut off halfway, a .mat that is a Git LFS pointer, half a file or
MATLAB v7.3), regenerated here byte for byte and run through ``train.main``.
"""
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

import train
import utils.errors
from base.base_dataset import AnnotationError
from data_loader.aflw import AFLW
from data_loader.aflw_mtfl import AFLW_MTFL
from data_loader.celeba import MAFLAligned
from data_loader.threehundredw import ThreeHundredW
from dataset_fixtures import (dot_image, save_image, write_300w_boxes, write_aflw_index,
                              write_lines, write_pts)

ROOT = Path(__file__).resolve().parents[1]
FACE_POINTS = np.array([(20, 22), (44, 22), (32, 34), (24, 46), (40, 46)])
LFS_POINTER = ("version https://git-lfs.github.com/spec/v1\n"
               "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbc3f1e4a1e7f7e2f0c1c5d2a0b1c2d\n"
               "size 536\n")


def write_faces(root, count=4):
    """``count`` 64 x 64 dotted faces with 1-based .pts beside them; their paths."""
    paths = []
    for k in range(count):
        path = root / f"face{k}.jpg"
        save_image(dot_image(64, 64, FACE_POINTS + k, radius=3), path)
        write_pts(path.with_suffix(".pts"), FACE_POINTS + k + 1.0)
        paths.append(path)
    return paths


def cut_in_half(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def matlab_v73_bytes():
    """The start of a MATLAB v7.3 file: the 128-byte MAT header (version 0x0200) in a
    512-byte user block, then the HDF5 signature."""
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Sun Nov 29 17:37:45 2026 " \
           b"HDF5 schema 1.00 ."
    header = text.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02" + b"IM"
    return header.ljust(512, b"\0") + b"\x89HDF\r\n\x1a\n" + b"\0" * 64


def run_train(tmp_path, dataset_type, dataset_args, workers=0):
    """``train.main`` on an embedding config for ``dataset_type``; its exit status."""
    config = json.loads((ROOT / "configs/own-data/image-folder-smallnet-16d-dve.json").read_text())
    config["dataset"] = {"type": dataset_type, "args": {"imwidth": 32, "crop": 4, **dataset_args}}
    config["batch_size"] = 2
    config["visualizations"] = []
    config["trainer"].update(epochs=1, save_dir=str(tmp_path / "saved"), num_workers=workers,
                             log_dir=str(tmp_path / "saved"), tensorboardX=False)
    path = tmp_path / "user.json"
    path.write_text(json.dumps(config))
    return train.main(["--config", str(path), "--device", "cpu"])


def the_error(capsys, caplog):
    """The message of the one ERROR record ("error: <one line>"), after checking that
    nothing printed a traceback."""
    captured = capsys.readouterr()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Traceback" not in captured.out + captured.err
    assert len(errors) == 1 and "\n" not in errors[0] and errors[0].startswith("error: "), errors
    return errors[0][len("error: "):]


def pts_dataset(root):
    return {"root": str(root), "test_fraction": 0.25}


def binary_pts(root):
    (path, *_) = write_faces(root)
    points = np.asarray(FACE_POINTS, "<f4").ravel()  # a binary export: count, then floats
    path.with_suffix(".pts").write_bytes(np.int32(68).tobytes() + points.tobytes() + b"\xe8\xff")
    return path.with_suffix(".pts"), "not a text iBUG .pts file (byte "


def other_pts_layout(root):
    (_, path, *_) = write_faces(root)
    write_lines(path.with_suffix(".pts"), ["5", *(f"{x} {y}" for x, y in FACE_POINTS)])
    return path.with_suffix(".pts"), "not an iBUG .pts file (no 'n_points: N' line followed by"


@pytest.mark.parametrize("make_case", [binary_pts, other_pts_layout])
def test_unreadable_pts_file(tmp_path, capsys, caplog, make_case):
    broken, message = make_case(tmp_path / "faces")
    assert run_train(tmp_path, "PtsLandmarks", pts_dataset(tmp_path / "faces")) == 2
    error = the_error(capsys, caplog)
    assert f"{broken}: {message}" in error and "'version: 1', 'n_points: N'" in error


def write_aflw(root, broken):
    """The AFLW layout with a good training split and the test .mat replaced by ``broken``."""
    for split, count in (("train", 3), ("test", 2)):
        names = [f"faces/{split}_{k}.jpg" for k in range(count)]
        for name in names:
            save_image(dot_image(40, 40, FACE_POINTS // 2, radius=2), root / "output" / name)
        write_aflw_index(root, split, names, np.tile(FACE_POINTS / 2.0, (count, 1, 1)),
                         np.full((count, 2), 40.0))
    path = root / "aflw_test_keypoints.mat"
    if broken == "lfs":
        path.write_text(LFS_POINTER)
    elif broken == "truncated":
        cut_in_half(path)
    else:
        path.write_bytes(matlab_v73_bytes())
    return path


@pytest.mark.parametrize("broken, message", [
    ("lfs", "a Git LFS pointer (a small text stub), not the data; run 'git lfs pull'"),
    ("truncated", "not a readable .mat file ("),
    ("v7.3", "a MATLAB v7.3 (HDF5) file, which scipy cannot read; save it again with "
             "save(..., '-v7') in MATLAB, or"),
])
def test_unreadable_mat_file(tmp_path, capsys, caplog, broken, message):
    path = write_aflw(tmp_path / "aflw", broken)
    assert run_train(tmp_path, "AFLW", {"root": str(tmp_path / "aflw")}) == 2
    error = the_error(capsys, caplog)
    assert f"{path}: {message}" in error
    assert error.endswith("re-fetch the dataset with: python misc/sync_datasets.py --dataset "
                          "aflw-recrop --refresh")


@pytest.mark.parametrize("workers", [0, 1])  # 1: raised in a DataLoader worker, sent back
def test_truncated_jpeg_names_file_and_index(tmp_path, capsys, caplog, monkeypatch, workers):
    raised = []  # the exception texts reported, before the worker's traceback is cut away
    original = utils.errors.user_message
    monkeypatch.setattr(utils.errors, "user_message", lambda err: raised.append(str(err))
                        or original(err))
    faces = tmp_path / "faces"
    paths = write_faces(faces, count=3)
    cut_in_half(paths[1])  # index 1, in the first training batch (2 training images)
    assert run_train(tmp_path, "ImageFolder", {"root": str(faces), "val_fraction": 0.34},
                     workers) == 2
    assert len(raised) == 1 and ("Original Traceback" in raised[0]) == (workers == 1)
    error = the_error(capsys, caplog)
    assert error.startswith(f"image {paths[1]} (index 1) cannot be decoded (image file is "
                            f"truncated")
    assert error.endswith("; replace or remove that file") and "worker" not in error


def test_non_image_with_an_image_name(tmp_path, capsys, caplog):
    faces = tmp_path / "faces"
    paths = write_faces(faces, count=3)
    paths[0].write_text(LFS_POINTER)
    assert run_train(tmp_path, "ImageFolder", {"root": str(faces), "val_fraction": 0.34}) == 2
    assert the_error(capsys, caplog) == (f"image {paths[0]} (index 0) cannot be decoded (not an "
                                         f"image format Pillow reads); replace or remove that file")


def test_unreadable_text_tables_name_the_file(tmp_path, capsys, caplog):
    faces = tmp_path / "faces"
    write_faces(faces)
    (faces / "train.txt").write_bytes(b"face0.jpg\nface1\xff.jpg\n")
    write_lines(faces / "test.txt", ["face3.jpg"])
    lists = {"train_list": "train.txt", "test_list": "test.txt"}
    assert run_train(tmp_path, "PtsLandmarks", {"root": str(faces), **lists}) == 2
    assert the_error(capsys, caplog) == (f"{faces / 'train.txt'}: not a text annotation file "
                                         f"(byte 15 is not UTF-8 text); fix or re-fetch it")


def test_mat_with_the_wrong_variables(tmp_path, capsys, caplog):
    path = write_aflw(tmp_path / "aflw", "lfs")
    savemat(path, {"gt": np.array([["a", "b"]], dtype=object), "hw": np.ones((2, 2))})
    assert run_train(tmp_path, "AFLW", {"root": str(tmp_path / "aflw")}) == 2
    assert f"{path}: no numeric variable 'gt'" in the_error(capsys, caplog)


BINARY = b"\x00\x01\xfe\xff" + bytes(range(256))  # byte 2 is the first that is not UTF-8


def binary_celeba_landmarks(root):
    for folder in ("Img/img_align_celeba_hq", "Anno", "Eval", "MAFL"):
        (root / folder).mkdir(parents=True)
    for name in ("Eval/list_eval_partition.txt", "MAFL/training.txt", "MAFL/testing.txt"):
        (root / name).write_text("")
    (root / "Anno/list_landmarks_align_celeba.txt").write_bytes(BINARY)
    return MAFLAligned, {}, root / "Anno/list_landmarks_align_celeba.txt", "annotation"


def binary_mtfl_csv(root):
    (root / "aflw_cropped").mkdir(parents=True)
    (root / "aflw_cropped/facedata_cropped.csv").write_bytes(BINARY)
    return AFLW_MTFL, {}, root / "aflw_cropped/facedata_cropped.csv", "CSV"


def binary_mtfl_test_list(root):
    (root / "MTFL").mkdir(parents=True)
    (root / "MTFL/testing.txt").write_bytes(BINARY)
    return AFLW_MTFL, {"train": False}, root / "MTFL/testing.txt", "annotation"


def binary_aflw_names(root):
    write_aflw(root, "truncated")
    (root / "aflw_test_images.txt").write_bytes(BINARY)
    return AFLW, {"train": False}, root / "aflw_test_images.txt", "annotation"


def binary_300w_pts(root):
    write_300w_boxes(root, "afw", [("face.jpg", (1, 1, 40, 40))])
    (root / "afw").mkdir()
    (root / "afw/face.pts").write_bytes(BINARY)
    return ThreeHundredW, {}, root / "afw/face.pts", "iBUG .pts"


@pytest.mark.parametrize("make_case", [binary_celeba_landmarks, binary_mtfl_csv,
                                       binary_mtfl_test_list, binary_aflw_names, binary_300w_pts])
def test_every_text_reader_names_a_file_that_is_not_text(tmp_path, make_case):
    dataset_class, args, path, kind = make_case(tmp_path)
    with pytest.raises(AnnotationError) as error:
        dataset_class(tmp_path, **args)
    assert str(error.value).startswith(f"{path}: not a text {kind} file (byte 2 is not UTF-8 "
                                       f"text); ")
