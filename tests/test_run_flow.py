"""The order of a run: data checked before anything is created, and a run that stops before
its first checkpoint leaves no folder behind (a resumed run, or one that wrote a
checkpoint, keeps everything)."""
import logging

import numpy as np
import pytest
import torch

import test_matching
import train
from data_loader.pts_landmarks import PtsLandmarks
from dataset_fixtures import dot_image, save_image, write_pts
from model import SmallNet
from run_helpers import BASE_ARGS, one_error, rewrite
from utils.errors import UserError
from trainer.matching import evaluate_matching

FACE_POINTS = np.array([(20, 22), (44, 22), (32, 34), (24, 46), (40, 46)])


def write_pts_faces(root, count):
    """``count`` dotted 64 x 64 faces with 1-based .pts files beside them."""
    for k in range(count):
        path = root / f"face{k}.png"
        save_image(dot_image(64, 64, FACE_POINTS + k, radius=3), path)
        write_pts(path.with_suffix(".pts"), FACE_POINTS + k + 1.0)


def pts_landmarks(root):
    """A config update: ``PtsLandmarks`` on ``root`` (default test_fraction 0.2), batch 2."""
    def update(config):
        config["dataset"] = {"type": "PtsLandmarks",
                             "args": {"root": str(root), "imwidth": 32, "crop": 4}}
        config["batch_size"] = 2
    return update


def test_a_test_split_of_one_image_is_refused_before_training(tmp_path, tiny_config, caplog,
                                                              capsys):
    # 3 images, test_fraction 0.2: round(0.6) = 1 test image, so no pair to match
    faces = tmp_path / "faces"
    write_pts_faces(faces, 3)
    config = rewrite(tiny_config(tmp_path, epochs=1), pts_landmarks(faces))
    assert train.main(["--config", str(config), *BASE_ARGS]) == 2
    message = one_error(caplog, capsys)
    assert f"PtsLandmarks (test split, root {faces}) has 1 image" in message
    assert "the matching evaluation needs at least two images" in message
    assert "dataset.args.test_fraction" in message and "test_list" in message
    assert not (tmp_path / "saved").exists()


def test_test_matching_on_a_one_image_split_says_so_in_one_line(tmp_path, tiny_config, caplog,
                                                                capsys):
    faces = tmp_path / "faces"
    write_pts_faces(faces, 4)  # round(0.8) = 1 test image
    config = rewrite(tiny_config(tmp_path, epochs=1), pts_landmarks(faces))
    output = tmp_path / "matching"
    assert test_matching.main(["--config", str(config), "--eval_data", "PtsLandmarks",
                               "--device", "cpu", "--output_dir", str(output)]) == 2
    assert f"PtsLandmarks (test split, root {faces}) has 1 image" in one_error(caplog, capsys)
    assert not output.exists()


def test_evaluate_matching_refuses_a_single_image_as_a_user_error(tmp_path):
    write_pts_faces(tmp_path, 4)
    dataset = PtsLandmarks(tmp_path, train=False, imwidth=32, crop=4, use_keypoints=True)
    assert len(dataset) == 1
    with pytest.raises(UserError, match=r"needs at least two images \(a pair\), but "
                                        r"PtsLandmarks \(test split, root .*\) has 1 image"):
        evaluate_matching(SmallNet(8), dataset, torch.device("cpu"), crop=4)


def cut_off_jpeg(path):
    """A JPEG of a face, then its bytes cut to the first third (an interrupted copy)."""
    save_image(dot_image(64, 64, FACE_POINTS, radius=3), path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 3])


def test_a_new_run_that_fails_in_its_first_epoch_leaves_no_folder(tmp_path, tiny_config,
                                                                   caplog, capsys):
    caplog.set_level(logging.INFO)
    faces = tmp_path / "faces"
    for k in range(3):
        save_image(dot_image(64, 64, FACE_POINTS + k, radius=3), faces / f"face{k}.jpg")
    cut_off_jpeg(faces / "face1.jpg")  # training image (val_fraction 0.34: face2 validates)

    def image_folder(config):
        config["dataset"] = {"type": "ImageFolder", "args": {
            "root": str(faces), "imwidth": 32, "crop": 4, "val_fraction": 0.34}}
        config["batch_size"] = 2

    config = rewrite(tiny_config(tmp_path, epochs=1, tensorboard=True), image_folder)
    assert train.main(["--config", str(config), *BASE_ARGS]) == 2
    message = one_error(caplog, capsys)
    assert message.startswith(f"error: image {faces / 'face1.jpg'} (index 1) cannot be decoded")
    (removed,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert removed.startswith("the run stopped before its first checkpoint: removed its run "
                              f"folder {tmp_path / 'saved' / 'models' / 'tiny-smallnet'}")
    assert not (tmp_path / "saved").exists()


def test_a_resumed_run_that_fails_keeps_its_folder(tmp_path, tiny_config, run_folder, caplog,
                                                   capsys):
    config = tiny_config(tmp_path, epochs=2, tensorboard=True)
    assert train.main(["--config", str(config), *BASE_ARGS]) == 0
    folder = run_folder(tmp_path)
    checkpoints = {name: (folder / name).read_bytes()
                   for name in ("checkpoint-epoch1.pth", "checkpoint-epoch2.pth")}
    # Adam moves every weight by about lr per step: at 1e30 the next loss overflows
    assert train.main(["--resume", str(folder / "checkpoint-epoch2.pth"), *BASE_ARGS,
                       "--set", "trainer.epochs=3", "--set", "optimizer.args.lr=1e30"]) == 2
    assert "epoch 3, training batch index 1" in one_error(caplog, capsys)
    assert {name: (folder / name).read_bytes() for name in checkpoints} == checkpoints
    assert (folder / "config.json").exists()
    log_folder = tmp_path / "saved" / "log" / "tiny-smallnet" / folder.name
    assert (log_folder / "info.log").exists() and list(log_folder.glob("events.out.tfevents.*"))


def test_a_new_run_that_fails_after_a_checkpoint_keeps_its_folder(tmp_path, tiny_config,
                                                                  run_folder, caplog, capsys):
    # the schedule multiplies the rate by 1e40 after epoch 2 (the step at its end reaches
    # milestone 1), so epoch 3 diverges after checkpoints 1 and 2 were written
    config = rewrite(tiny_config(tmp_path, epochs=3),
                     lambda c: c["lr_scheduler"]["args"].update(gamma=1e40))
    assert train.main(["--config", str(config), *BASE_ARGS]) == 2
    assert "error: epoch 3, training batch index 1" in one_error(caplog, capsys)
    folder = run_folder(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == [
        "checkpoint-epoch1.pth", "checkpoint-epoch2.pth", "config.json", "provenance.json"]
    assert (tmp_path / "saved" / "log" / "tiny-smallnet" / folder.name / "info.log").exists()
