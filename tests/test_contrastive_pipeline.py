"""The contrastive method's stages through train.py: MoCo, then the projector on the frozen
MoCo hypercolumn (``AugmentedViews`` + ``dense_correlation_loss_single``), then a landmark
regressor on either; ``finetune_from`` fills what a checkpoint holds."""
import json

import pytest
import torch

import train
from model.hypercolumn import ContrastResNet
from model.projector import ContrastProjector
from trainer.builders import load_finetune_weights
from trainer.comparison import scoped_overrides
from trainer.method import AugmentedViews
from trainer.method_interface import MethodContext
from utils.checkpoint import save_checkpoint
from utils.registry import ConfigError

BASE_ARGS = ["--device", "cpu", "--disable_workers"]
MEAN = torch.tensor([0.5084, 0.4224, 0.3769]).view(1, 3, 1, 1)  # the face statistics
STD = torch.tensor([0.2599, 0.2371, 0.2323]).view(1, 3, 1, 1)
SMALL = dict(depth=18, width=0.25, image_size=64)


def test_validation_views_are_the_normalized_crop_and_training_views_are_augmented():
    context = MethodContext(train_set=None, valid_set=None, crop=8, do_augmentations=False,
                            warper=None, loss_fn=None, loss_args={})
    method = AugmentedViews(context)
    images = torch.randint(0, 256, (3, 3, 80, 80), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    batch = {"data": images, "index": torch.arange(3)}
    valid = method.views(batch, torch.device("cpu"), None, train=False)["data"]
    by_hand = ((images.float() / 255 - MEAN) / STD)[:, :, 8:72, 8:72]
    assert torch.allclose(valid, by_hand, atol=1e-6)
    first = method.views(batch, torch.device("cpu"), torch.Generator().manual_seed(1), True)
    again = method.views(batch, torch.device("cpu"), torch.Generator().manual_seed(1), True)
    assert first["data"].shape == (3, 3, 64, 64) and torch.equal(first["data"], again["data"])
    assert not torch.allclose(first["data"], by_hand, atol=0.1)


def save_network(network, path, arch):
    return save_checkpoint({"arch": arch, "epoch": 1, "state_dict": network.state_dict(),
                            "config": {"arch": {"type": arch}}}, path)


def test_finetune_from_fills_the_backbone_or_the_whole_projector(tmp_path):
    torch.manual_seed(0)
    moco = ContrastResNet(**SMALL, hypercolumn_size=8)
    projector_run = ContrastProjector(**SMALL, hypercolumn_size=8, projection_dim=4)
    torch.manual_seed(1)
    network = ContrastProjector(**SMALL, hypercolumn_size=8, projection_dim=4)
    fresh_projector = {k: v.clone() for k, v in network.projector.state_dict().items()}
    load_finetune_weights(network, save_network(moco, tmp_path / "moco.pth", "ContrastResNet"),
                          "cpu")
    for key, value in moco.state_dict().items():
        assert torch.equal(network.backbone.wrapped_module.state_dict()[key], value), key
    for key, value in fresh_projector.items():  # a MoCo run has no projector: left as it was
        assert torch.equal(network.projector.state_dict()[key], value)
    load_finetune_weights(network, save_network(projector_run, tmp_path / "p.pth",
                                                "ContrastProjector"), "cpu")
    for key, value in projector_run.state_dict().items():
        assert torch.equal(network.state_dict()[key], value), key


def stage_config(tmp_path, tiny_config, name, epochs=1, **changes):
    config = json.loads(tiny_config(tmp_path / name, epochs=epochs).read_text())
    for key in ("warper", "loss", "loss_args"):
        config.pop(key)
    config["dataset"]["args"].update(imwidth=80, crop=8, root=str(tmp_path / "data"))
    config.update(visualizations=[], name=name, **changes)
    config["trainer"].update(save_dir=str(tmp_path / "saved"), log_dir=str(tmp_path / "saved"))
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    return path


def only_checkpoint(tmp_path, name, epoch=1):
    (run,) = (tmp_path / "saved" / "models" / name).iterdir()
    return torch.load(run / f"checkpoint-epoch{epoch}.pth", weights_only=True), run


def test_moco_then_projector_then_regressor(tmp_path, tiny_config):
    moco = stage_config(tmp_path, tiny_config, "moco",
                        arch={"type": "ContrastResNet", "args": {**SMALL, "hypercolumn_size": 16}},
                        method={"type": "MoCo", "args": {"queue_size": 16, "bn_chunks": 2}},
                        optimizer={"type": "SGD", "args": {"lr": 0.03, "momentum": 0.9}})
    assert train.main(["--config", str(moco), *BASE_ARGS]) == 0
    moco_state, moco_run = only_checkpoint(tmp_path, "moco")
    projector = stage_config(
        tmp_path, tiny_config, "projector", finetune_from=str(moco_run),
        arch={"type": "ContrastProjector", "args": {**SMALL, "hypercolumn_size": 8,
                                                    "projection_dim": 4}},
        method={"type": "AugmentedViews", "args": {}},
        loss="dense_correlation_loss_single", loss_args={"image_size": 64})
    assert train.main(["--config", str(projector), *BASE_ARGS]) == 0
    state, projector_run = only_checkpoint(tmp_path, "projector")
    backbone = {k[len("backbone.wrapped_module."):]: v for k, v in state["state_dict"].items()
                if k.startswith("backbone.wrapped_module.")}
    assert backbone.keys() == moco_state["state_dict"].keys()
    assert all(torch.equal(backbone[k], v) for k, v in moco_state["state_dict"].items())
    assert json.loads((projector_run / "matching.json").read_text())["num_image_pairs"] == 3
    regressor = json.loads(stage_config(tmp_path, tiny_config, "regressor").read_text())
    regressor.update(
        arch={"type": "ContrastProjector", "args": {**SMALL, "hypercolumn_size": 8,
                                                    "projection_dim": 4}},
        finetune_from=str(projector_run), loss="regression_loss", metrics=["inter_ocular_error"],
        batch_size=2,  # the tiny set's 2 MAFL training images
        keypoint_regressor={"type": "IntermediateKeypointPredictor",
                            "args": {"num_annotated_points": 5, "num_intermediate_points": 4}})
    regressor["dataset"] = {"type": "MAFLAligned", "args": {
        "root": str(tmp_path / "data"), "imwidth": 80, "crop": 8, "use_keypoints": True}}
    (tmp_path / "regressor.json").write_text(json.dumps(regressor))
    assert train.main(["--config", str(tmp_path / "regressor.json"), *BASE_ARGS]) == 0
    reg_state, reg_run = only_checkpoint(tmp_path, "regressor")
    for key, value in state["state_dict"].items():  # the whole projector network, frozen
        assert torch.equal(reg_state["state_dict"][f"0.wrapped_module.{key}"], value), key
    assert (reg_run / "keypoints.json").is_file()


def test_comparison_overrides_are_scoped_by_entry():
    scoped = scoped_overrides(["last:arch.args.hypercolumn_layers=1", "epochs=2"],
                              ["moco", "last"], "--set")
    assert scoped == {"moco": ["epochs=2"],
                      "last": ["arch.args.hypercolumn_layers=1", "epochs=2"]}
    with pytest.raises(ConfigError, match="--set x:a=1: no --entry is labelled 'x'"):
        scoped_overrides(["x:a=1"], ["moco"], "--set")
