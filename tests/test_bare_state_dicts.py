"""Bare state dicts (``torch.save(model.state_dict())``) load as weights wherever weights
enter a network: ``test_matching.py --resume``, ``finetune_from``, ``test_keypoints.py``."""
import json
import logging
from collections import OrderedDict

import pytest
import torch

import test_keypoints
import test_matching
import train
from model import SmallNet
from utils.checkpoint import load_checkpoint, save_checkpoint

BASE_ARGS = ["--device", "cpu"]


def save_bare(path, state_dict, prefix=""):
    torch.save(OrderedDict((prefix + k, v) for k, v in state_dict.items()), path)
    return path


def matching(config, checkpoint, out, *extra):
    assert test_matching.main(["--config", str(config), "--resume", str(checkpoint),
                               *BASE_ARGS, "--output_dir", str(out), *extra]) == 0
    return json.loads((out / "matching.json").read_text())


@pytest.mark.parametrize("prefix", ["", "module."])
def test_bare_embedding_evaluates_like_the_same_weights_in_a_checkpoint(tmp_path, tiny_config,
                                                                        prefix):
    config = tiny_config(tmp_path, epochs=1)
    torch.manual_seed(5)
    network = SmallNet(8)
    bare = save_bare(tmp_path / "bare.pth", network.state_dict(), prefix)
    assert load_checkpoint(bare)["bare"] is True
    ours = save_checkpoint({"state_dict": network.state_dict(), "epoch": 1}, tmp_path / "ours.pth")
    from_bare = matching(config, bare, tmp_path / "bare")
    from_ours = matching(config, ours, tmp_path / "ours")
    for key in ("same_identity", "different_identity"):
        assert from_bare[key] == from_ours[key]


def test_bare_state_dict_that_does_not_fit_is_reported(tmp_path, tiny_config, caplog):
    config = tiny_config(tmp_path, epochs=1)
    bare = save_bare(tmp_path / "bare16.pth", SmallNet(16).state_dict(), "module.")
    assert test_matching.main(["--config", str(config), "--resume", str(bare), *BASE_ARGS]) == 2
    (message,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "configured network, SmallNet with 8 output channels" in message
    assert "checkpoint looks like SmallNet with 16 output channels" in message


def test_bare_state_dict_needs_a_config(tmp_path, caplog):
    bare = save_bare(tmp_path / "bare.pth", SmallNet(4).state_dict())
    assert test_matching.main(["--resume", str(bare), *BASE_ARGS]) == 2
    (message,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "bare.pth is a bare state dict" in message and "pass --config" in message


def regressor_config(path, finetune_from):
    """The tiny embedding config turned into a cached regressor config."""
    config = json.loads(path.read_text())
    config["dataset"]["args"].update(use_keypoints=True, do_augmentations=False)
    config.update(
        finetune_from=str(finetune_from), cache_descriptors=True, warp_val=False,
        keypoint_regressor={"type": "IntermediateKeypointPredictor",
                            "args": {"num_annotated_points": 5, "num_intermediate_points": 6}},
        loss="regression_loss", loss_args={}, metrics=["inter_ocular_error"], visualizations=[])
    del config["warper"], config["lr_scheduler"]
    path = path.with_name("regressor.json")
    path.write_text(json.dumps(config))
    return path


def test_bare_states_as_finetune_from_and_for_test_keypoints(tmp_path, tiny_config):
    torch.manual_seed(2)
    embedding = SmallNet(8)
    bare_embedding = save_bare(tmp_path / "embedding.pth", embedding.state_dict(), "module.")
    config = regressor_config(tiny_config(tmp_path, epochs=1), bare_embedding)
    assert train.main(["--config", str(config), *BASE_ARGS, "--disable_workers"]) == 0
    (run,) = (tmp_path / "saved" / "models" / "tiny-regressor").iterdir()
    trained = torch.load(run / "checkpoint-epoch1.pth", weights_only=True)["state_dict"]
    for key, value in embedding.state_dict().items():  # frozen: still the bare weights
        assert torch.equal(trained[f"0.wrapped_module.{key}"], value), key
    bare_regressor = save_bare(tmp_path / "regressor.pth", trained)
    out = tmp_path / "eval"
    assert test_keypoints.main(["--resume", str(bare_regressor), "--config", str(config),
                                *BASE_ARGS, "--disable_workers", "--output_dir", str(out)]) == 0
    evaluated = json.loads((out / "keypoints.json").read_text())
    expected = json.loads((run / "keypoints.json").read_text())
    assert evaluated["inter_ocular_error"] == pytest.approx(expected["inter_ocular_error"],
                                                            rel=1e-5)


def test_a_whole_pickled_model_is_refused_with_the_way_to_save_weights(tmp_path, tiny_config,
                                                                      caplog, capsys):
    config = tiny_config(tmp_path, epochs=1)
    whole = tmp_path / "whole.pth"
    torch.save(SmallNet(8), whole)  # the network object itself, not its state dict
    with caplog.at_level(logging.ERROR):
        assert test_matching.main(["--config", str(config), "--resume", str(whole),
                                   *BASE_ARGS]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and str(whole) in errors[0]
    assert "save model.state_dict() instead" in errors[0]
    assert "Traceback" not in capsys.readouterr().err
