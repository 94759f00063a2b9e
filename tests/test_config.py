"""Config resolution: registries, argument checks, overrides and --dry-run on every config."""
import json
from pathlib import Path

import pytest

import train
from utils.config import (apply_overrides, check_arguments, experiment_name, load_config,
                          run_directories)
from utils.registry import ConfigError

ROOT = Path(__file__).resolve().parents[1]
OUR_CONFIGS = sorted((ROOT / "configs").rglob("*.json"))
ORIGINAL_CONFIGS = sorted((ROOT / "tests" / "fixtures" / "original_configs").rglob("*.json"))


def test_unexpected_argument_names_key_block_and_file():
    def network(num_output_channels=3):
        return num_output_channels

    with pytest.raises(ConfigError) as err:
        check_arguments(network, {"num_output_channel": 3}, "arch", "configs/x.json")
    assert str(err.value) == ("configs/x.json: arch.args.num_output_channel is not an argument "
                              "of network; it takes: num_output_channels")


def test_overrides_set_nested_keys_with_json_values():
    config = {"arch": {"type": "SmallNet", "args": {}}, "dataset": {}, "optimizer": {"args": {"lr": 1}},
              "loss": "l", "trainer": {"epochs": 1}}
    out = apply_overrides(config, ["optimizer.args.lr=0.01", "arch.args.num_output_channels=16",
                                   "loss=dense_correlation_loss", "lr_scheduler.args.milestones=[1,2]"])
    assert out["optimizer"]["args"]["lr"] == 0.01
    assert out["arch"]["args"]["num_output_channels"] == 16
    assert out["loss"] == "dense_correlation_loss"
    assert out["lr_scheduler"]["args"]["milestones"] == [1, 2]
    assert config["optimizer"]["args"]["lr"] == 1  # the input is not modified
    with pytest.raises(ConfigError, match="unknown config key 'epochs'"):
        apply_overrides(config, ["epochs=3"])


def test_run_directories_follow_the_original_layout():
    config = {"trainer": {"save_dir": "saved/"}}
    path = Path("configs/celeba/smallnet-16d-dve.json")
    assert experiment_name(path) == "celeba-smallnet-16d-dve"
    models, logs = run_directories(config, path, "2019-08-02_06-20-13")
    assert models == Path("saved/models/celeba-smallnet-16d-dve/2019-08-02_06-20-13")
    assert logs == Path("saved/log/celeba-smallnet-16d-dve/2019-08-02_06-20-13")


@pytest.mark.parametrize("config", OUR_CONFIGS + ORIGINAL_CONFIGS, ids=lambda p: p.name)
def test_dry_run_accepts_every_config(config, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data and no checkpoints here
    assert train.main(["--config", str(config), "--dry-run", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "trainable parameters" in out
    data = load_config(config)
    if data["dataset"]["type"] != "SyntheticFaces":
        assert "missing on this machine: dataset root" in out


def _write(tmp_path, config):
    path = tmp_path / "exp" / "bad.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("edit,message", [
    (lambda c: c["arch"].update(type="SmallNett"),
     "bad.json: arch.type: unknown arch 'SmallNett'; valid names: "),
    (lambda c: c["arch"]["args"].update(num_channels=3),
     "bad.json: arch.args.num_channels is not an argument of SmallNet"),
    (lambda c: c.update(loss="dense_loss"), "bad.json: loss: unknown loss 'dense_loss'; valid names: "),
    (lambda c: c["loss_args"].update(normalise=True),
     "bad.json: loss_args.normalise is not an argument of dense_correlation_loss_dve"),
    (lambda c: c["dataset"]["args"].update(imsize=3),
     "bad.json: dataset.args.imsize is not an argument of CelebAPrunedAligned_MAFLVal"),
    (lambda c: c.update(visualizations=["sphere"]), "unknown visualization 'sphere'; valid names: "),
    (lambda c: c.update(keypoint_regressor={"type": "IntermediateKeypointPredicter", "args": {}}),
     "unknown keypoint_regressor 'IntermediateKeypointPredicter'; valid names: "
     "IntermediateKeypointPredictor"),
    (lambda c: c.update(keypoint_regressor={"type": "IntermediateKeypointPredictor",
                                            "args": {"num_points": 5}}),
     "bad.json: keypoint_regressor.args.num_points is not an argument of "
     "IntermediateKeypointPredictor"),
])
def test_wrong_names_and_arguments_give_one_line_errors(tmp_path, caplog, edit, message):
    config = json.loads((ROOT / "configs" / "celeba" / "smallnet-16d-dve.json").read_text())
    edit(config)
    path = _write(tmp_path, config)
    assert train.main(["--config", str(path), "--dry-run", "--device", "cpu"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0] and "\n" not in errors[0]


def test_an_unknown_key_from_set_is_blamed_on_set_not_the_file():
    config = json.loads((ROOT / "configs" / "synthetic" / "smallnet-16d-dve.json").read_text())
    with pytest.raises(ConfigError) as err:
        apply_overrides(config, ["trainer.epochs=2", "trainer.epoch=1"], "configs/x.json")
    assert str(err.value).startswith("--set trainer.epoch=1: unknown key 'trainer.epoch'; ")


def test_a_loss_argument_typo_names_loss_args():
    with pytest.raises(ConfigError) as err:
        check_arguments(lambda outputs, meta, pow=0.5: None, {"powr": 1}, "loss_args",
                        "configs/x.json", reserved=("outputs", "meta"))
    assert str(err.value).startswith("configs/x.json: loss_args.powr is not an argument of ")


def test_dataset_overrides_a_type_lacks_are_an_error_unless_marked_optional(tmp_path):
    from trainer.builders import build_dataset
    config = {"dataset": {"type": "ImageFolder", "args": {"root": str(tmp_path)}}}
    (tmp_path / "a.png").write_bytes(b"")  # listed, never decoded
    with pytest.raises(TypeError, match="ImageFolder takes no val_split"):
        build_dataset(config, "x.json", train=False, overrides={"val_split": "mafl"})
    dataset = build_dataset(config, "x.json", train=False, overrides={"imwidth": 40},
                            where_accepted={"val_split": "mafl"})
    assert dataset.imwidth == 40
