"""Checkpoints in the released DVE format: loaded without the original code, evaluated by
test_matching.py; regressor checkpoints; mismatch messages; pickles that ask to run code."""
import json
import os

import pytest
import torch

import model
import test_matching
import train
from model.frozen_embedding import keypoint_regression_model
from trainer.builders import load_finetune_weights
from released_format import SMALL_HOURGLASS, save_released
from utils.checkpoint import (CheckpointError, load_checkpoint, load_weights_into,
                              save_checkpoint)

def test_the_config_class_is_not_importable_when_loading(tmp_path):
    path = save_released(tmp_path / "released.pth", model.SmallNet(4).state_dict())
    with pytest.raises(ModuleNotFoundError):
        __import__("parse_config")
    with pytest.raises(Exception, match="Unsupported global"):
        torch.load(path, weights_only=True)  # numpy scalar, ConfigParser: refused


@pytest.mark.parametrize("arch,legacy", [("SmallNet", True), ("HourglassNet", False)])
def test_released_checkpoint_evaluates_like_the_same_weights_in_our_format(tmp_path, tiny_config, arch, legacy):
    args = {"num_output_channels": 8, **(SMALL_HOURGLASS if arch == "HourglassNet" else {})}
    config_path = tiny_config(tmp_path, epochs=1)
    config = json.loads(config_path.read_text())
    config["arch"] = {"type": arch, "args": args}
    config_path.write_text(json.dumps(config))
    torch.manual_seed(3)
    network = model.NETWORKS.get(arch)(**args)
    with torch.no_grad():  # non-default running statistics must load too
        for name, buffer in network.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
    released = save_released(tmp_path / "released.pth", network.state_dict(), arch, legacy=legacy)
    ours = save_checkpoint({"state_dict": network.state_dict(), "epoch": 1, "config": config},
                           tmp_path / "ours.pth")
    results = {}
    for name, path in (("released", released), ("ours", ours)):
        out = tmp_path / name
        assert test_matching.main(["--config", str(config_path), "--resume", str(path),
                                   "--device", "cpu", "--output_dir", str(out)]) == 0
        results[name] = json.loads((out / "matching.json").read_text())
    for key in ("same_identity", "different_identity"):
        assert results["released"][key] == results["ours"][key]
    state = load_checkpoint(released)
    assert state["released"] and state["epoch"] == 100 and "config" not in state


def test_released_checkpoint_needs_a_config(tmp_path, caplog):
    path = save_released(tmp_path / "released.pth", model.SmallNet(4).state_dict())
    assert test_matching.main(["--resume", str(path), "--device", "cpu"]) == 2
    assert "pass --config" in caplog.text
    assert train.main(["--resume", str(path), "--device", "cpu"]) == 2


def test_training_resumes_from_the_weights_and_epoch_of_a_released_checkpoint(tmp_path, tiny_config):
    config_path = tiny_config(tmp_path, epochs=2)
    torch.manual_seed(0)
    released = model.SmallNet(8).state_dict()
    (tmp_path / "run").mkdir()
    path = save_released(tmp_path / "run" / "released.pth", released, epoch=1)
    assert train.main(["--config", str(config_path), "--resume", str(path), "--device", "cpu",
                       "--disable_workers"]) == 0
    folder = tmp_path / "saved" / "models" / "tiny-smallnet" / "run"
    assert not (folder / "checkpoint-epoch1.pth").exists()  # epoch 1 came from the release
    state = torch.load(folder / "checkpoint-epoch2.pth", weights_only=True)
    assert state["epoch"] == 2
    assert not torch.equal(state["state_dict"]["conv1.0.weight"], released["conv1.0.weight"])


def _regressor_state(embedding, points=5, intermediate=50, index=1):
    """A released regressor's state dict: the embedding under ``0.wrapped_module.``, the
    regressor (with its unused ``descriptors`` and ``linear.*``) under ``index``."""
    torch.manual_seed(1)
    channels = embedding.num_output_channels
    state = {f"0.wrapped_module.{k}": v for k, v in embedding.state_dict().items()}
    state[f"{index}.descriptors"] = torch.randn(points * intermediate, channels, 1, 1)
    state[f"{index}.inner_conv.weight"] = torch.randn(points * intermediate, channels, 1, 1)
    state[f"{index}.reg_conv.weight"] = torch.randn(2 * points, 2 * intermediate, 1, 1)
    for point in range(points):
        state[f"{index}.linear.{point}.weight"] = torch.randn(2, 2 * intermediate)
    return state


@pytest.mark.parametrize("index", [1, 2])
def test_embedding_from_a_regressor_checkpoint(tmp_path, index):
    torch.manual_seed(0)
    trained = model.SmallNet(6)
    path = save_released(tmp_path / "regressor.pth", _regressor_state(trained, index=index),
                         arch="Sequential", prefix="")
    fresh = model.SmallNet(6)
    load_finetune_weights(fresh, path, "cpu")
    for key, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_regressor_checkpoint_loads_into_the_regression_model(tmp_path):
    torch.manual_seed(0)
    state = _regressor_state(model.SmallNet(6), points=5, intermediate=4)
    path = save_released(tmp_path / "regressor.pth", state, arch="Sequential")
    regressor = model.IntermediateKeypointPredictor(6, num_annotated_points=5,
                                                    num_intermediate_points=4)
    regression_model = keypoint_regression_model(model.SmallNet(6), regressor)
    load_weights_into(regression_model, path, "cpu")
    loaded = regression_model.state_dict()
    for key in ("0.wrapped_module.conv6.weight", "1.inner_conv.weight", "1.reg_conv.weight"):
        assert torch.equal(loaded[key], state[key]), key


def test_mismatch_names_shapes_and_what_the_checkpoint_is(tmp_path):
    path = save_released(tmp_path / "smallnet16.pth", model.SmallNet(16).state_dict())
    with pytest.raises(CheckpointError) as info:
        load_weights_into(model.SmallNet(64), path, "cpu", source="--resume")
    message = str(info.value)
    assert "\n" not in message and "--resume" in message and "smallnet16.pth" in message
    assert "2 of another shape" in message  # conv6.weight and conv6.bias
    assert "conv6.weight: checkpoint [16, 256, 1, 1], network [64, 256, 1, 1]" in message
    assert "conv6.bias: checkpoint [16], network [64]" in message
    assert "configured network, SmallNet with 64 output channels" in message
    assert "checkpoint looks like SmallNet with 16 output channels" in message


def test_mismatch_between_architectures_lists_a_few_names_and_counts(tmp_path):
    hourglass = model.HourglassNet(num_output_channels=32)
    path = save_released(tmp_path / "hourglass.pth", hourglass.state_dict(), "HourglassNet")
    with pytest.raises(CheckpointError) as info:
        load_weights_into(model.SmallNet(32), path, "cpu")
    message = str(info.value)
    smallnet_keys = list(model.SmallNet(32).state_dict())
    hourglass_keys = list(hourglass.state_dict())
    assert f"{len(smallnet_keys)} missing ({', '.join(smallnet_keys[:4])} and " \
           f"{len(smallnet_keys) - 4} more)" in message
    assert f"{len(hourglass_keys)} unexpected ({', '.join(hourglass_keys[:4])} and " \
           f"{len(hourglass_keys) - 4} more)" in message
    assert "checkpoint looks like HourglassNet with 32 output channels" in message


class _RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _WritesAFile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("payload", [_RunsAShellCommand, _WritesAFile])
@pytest.mark.parametrize("legacy", [True, False])
def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path, tiny_config, caplog, payload, legacy):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    torch.save({"epoch": 1, "state_dict": model.SmallNet(4).state_dict(),
                "config": payload(marker)}, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError, match=r"evil.pth is refused: the pickle asks to call "
                                              r"(posix\.system|io\.open)"):
        load_checkpoint(path)
    config_path = tiny_config(tmp_path, epochs=1)
    assert test_matching.main(["--config", str(config_path), "--resume", str(path),
                               "--device", "cpu"]) == 2
    assert "refusing to run code" in caplog.text
    assert not marker.exists()


def test_truncated_released_checkpoint_fails_clearly(tmp_path):
    path = save_released(tmp_path / "released.pth", model.SmallNet(4).state_dict())
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.pth is not a loadable checkpoint"):
        load_checkpoint(cut)
