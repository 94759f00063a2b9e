"""A method defined outside the core (``tests/toy_method.py``) trains, checkpoints its own
state, resumes bit for bit, and is evaluated by both evaluations, through the same
trainer and scripts as DVE, with no change to any core file."""
import json

import pytest
import torch

import test_keypoints
import test_matching
import train
from tests.run_helpers import BASE_ARGS
from tests.toy_method import flip_consistency_loss

TOY = {"type": "tests.toy_method.FlipEquivariance", "args": {"ema_decay": 0.8}}


def toy_config(tiny_config, tmp_path, epochs):
    path = tiny_config(tmp_path, epochs=epochs)
    config = json.loads(path.read_text())
    del config["warper"]  # the toy method makes its own views
    config.update(method=TOY, loss="tests.toy_method.flip_consistency_loss",
                  loss_args={"spread": 0.5}, visualizations=["sphere_colormap"])
    path.write_text(json.dumps(config))
    return path


def regressor_config(embedding_config, finetune_from):
    config = json.loads(embedding_config.read_text())
    config["dataset"]["args"].update(use_keypoints=True, do_augmentations=False)
    config.update(
        name="tiny-regressor", finetune_from=str(finetune_from), cache_descriptors=True,
        warp_val=False, keypoint_regressor={"type": "IntermediateKeypointPredictor", "args": {
            "num_annotated_points": 5, "num_intermediate_points": 6}},
        loss="regression_loss", loss_args={}, metrics=["inter_ocular_error"],
        visualizations=[])
    del config["method"], config["lr_scheduler"]
    path = embedding_config.with_name("regressor.json")
    path.write_text(json.dumps(config))
    return path


def runs(tmp_path, name="tiny-smallnet"):
    return sorted((tmp_path / "saved" / "models" / name).iterdir())


def test_the_toy_loss_is_its_formula():
    torch.manual_seed(0)
    feats = torch.randn(4, 3, 5, 6)
    own, mirrored = feats[0::2], feats[1::2].flip(-1)
    expected = ((own - mirrored) ** 2).mean() + 0.5 * torch.clamp(
        1 - own.reshape(2, 3, 30).std(dim=2), min=0).mean()
    assert torch.allclose(flip_consistency_loss([feats], {}, spread=0.5), expected)


def test_a_method_outside_the_core_trains_resumes_and_is_evaluated(tmp_path, tiny_config):
    config = toy_config(tiny_config, tmp_path, epochs=2)
    assert train.main(["--config", str(config), *BASE_ARGS]) == 0
    (straight,) = runs(tmp_path)
    written = json.loads((straight / "config.json").read_text())
    assert written["method"] == TOY and "warper" not in written
    state = torch.load(straight / "checkpoint-epoch2.pth", weights_only=True)
    batches_per_epoch = 2  # 12 training images - 2 in MAFL training = 10: 10 // 4 (last dropped)
    assert int(state["method"]["steps"]) == 2 * batches_per_epoch
    weights = state["state_dict"]
    ema = state["method"]["ema"]
    assert ema.keys() == {k for k, v in weights.items() if v.is_floating_point()}
    assert any(not torch.equal(ema[k], weights[k]) for k in ema)  # an average, not a copy

    # the same run in two processes' worth of steps: one epoch, then --resume
    shorter = json.loads(config.read_text())
    shorter["trainer"]["epochs"] = 1
    config.write_text(json.dumps(shorter))
    assert train.main(["--config", str(config), *BASE_ARGS]) == 0
    first_half = runs(tmp_path)[-1]
    assert train.main(["--resume", str(first_half / "checkpoint-epoch1.pth"), *BASE_ARGS,
                       "--set", "trainer.epochs=2"]) == 0
    resumed = torch.load(first_half / "checkpoint-epoch2.pth", weights_only=True)
    for key, value in weights.items():
        assert torch.equal(resumed["state_dict"][key], value), key
    assert int(resumed["method"]["steps"]) == 2 * batches_per_epoch
    for key, value in ema.items():
        assert torch.equal(resumed["method"]["ema"][key], value), key

    # evaluation 1: the matching at the end of training, and test_matching.py on the same
    # checkpoint, give the same figures
    at_end = json.loads((straight / "matching.json").read_text())
    assert 0 < at_end["same_identity"] < 100 and 0 < at_end["different_identity"] < 100
    out = tmp_path / "matching-again"
    assert test_matching.main(["--resume", str(straight / "checkpoint-epoch2.pth"),
                               "--eval_data", "SyntheticFaces", "--output_dir", str(out),
                               *BASE_ARGS[:2]]) == 0
    again = json.loads((out / "matching.json").read_text())
    assert again["same_identity"] == pytest.approx(at_end["same_identity"], abs=1e-6)
    assert again["different_identity"] == pytest.approx(at_end["different_identity"], abs=1e-6)

    # evaluation 2: a landmark regressor on the frozen toy embedding
    regressor = regressor_config(config, straight / "checkpoint-epoch2.pth")
    assert train.main(["--config", str(regressor), *BASE_ARGS, "--set", "trainer.epochs=1"]) == 0
    (run,) = runs(tmp_path, "tiny-regressor")
    report = json.loads((run / "keypoints.json").read_text())
    assert 0 < report["inter_ocular_error"] < 200
    trained = torch.load(run / "checkpoint-epoch1.pth", weights_only=True)["state_dict"]
    for key, value in weights.items():  # frozen: still the toy method's weights
        assert torch.equal(trained[f"0.wrapped_module.{key}"], value), key
    assert test_keypoints.main(["--resume", str(run / "checkpoint-epoch1.pth"),
                                *BASE_ARGS]) == 0
