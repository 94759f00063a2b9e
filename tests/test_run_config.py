"""The resolved run configuration: ``_base_`` inheritance, every default written out,
and the provenance record of a run."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import train
from trainer.run_config import resolve_defaults
from utils import provenance
from utils.config import load_config
from utils.config_values import check_values
from utils.registry import ConfigError
from tests.run_helpers import BASE_ARGS

ROOT = Path(__file__).resolve().parents[1]
ALL_CONFIGS = sorted((ROOT / "configs").rglob("*.json")) + sorted(
    (ROOT / "tests" / "fixtures" / "original_configs").rglob("*.json"))


def write(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


# ---------------------------------------------------------------------- inheritance

def test_a_child_merges_objects_and_replaces_everything_else(tmp_path):
    write(tmp_path / "family" / "base.json", {
        "batch_size": 16, "loss": "dense_correlation_loss_dve", "metrics": ["a", "b"],
        "arch": {"type": "SmallNet", "args": {"num_output_channels": 16, "do_maxpool": False}},
        "dataset": {"type": "SyntheticFaces", "args": {"imwidth": 64, "crop": 10}},
        "optimizer": {"type": "Adam", "args": {"lr": 0.001}}, "trainer": {"epochs": 6}})
    child = write(tmp_path / "family" / "sub" / "child.json", {
        "_base_": "../base.json", "metrics": ["c"], "loss": "dense_correlation_loss",
        "arch": {"args": {"num_output_channels": 3}},
        "dataset": {"type": "MAFLAligned", "args": {"root": "data/celeba"}},
        "trainer": {"epochs": 2, "save_dir": "elsewhere/"}})
    assert load_config(child) == {
        "batch_size": 16, "loss": "dense_correlation_loss", "metrics": ["c"],
        # same type: argument by argument
        "arch": {"type": "SmallNet", "args": {"num_output_channels": 3, "do_maxpool": False}},
        # another type: the block is replaced whole (no imwidth/crop of SyntheticFaces)
        "dataset": {"type": "MAFLAligned", "args": {"root": "data/celeba"}},
        "optimizer": {"type": "Adam", "args": {"lr": 0.001}},
        "trainer": {"epochs": 2, "save_dir": "elsewhere/"}}


def test_a_base_may_inherit_in_turn(tmp_path):
    write(tmp_path / "a.json", {"arch": {"type": "SmallNet", "args": {}}, "dataset": {
        "type": "SyntheticFaces"}, "optimizer": {"type": "Adam"}, "loss": "x",
        "trainer": {"epochs": 1}, "batch_size": 1})
    write(tmp_path / "b.json", {"_base_": "a.json", "batch_size": 2, "trainer": {"epochs": 5}})
    c = write(tmp_path / "c.json", {"_base_": "b.json", "batch_size": 3})
    config = load_config(c)
    assert (config["batch_size"], config["trainer"], "_base_" in config) == (3, {"epochs": 5}, False)


@pytest.mark.parametrize("files,message", [
    ({"a.json": {"_base_": "b.json"}, "b.json": {"_base_": "a.json"}}, "makes a cycle"),
    ({"a.json": {"_base_": "a.json"}}, "makes a cycle"),
    ({"a.json": {"_base_": "missing.json"}}, "which does not exist"),
    ({"a.json": {"_base_": 3}}, "must be the path of the config it inherits from"),
    ({"a.json": {"_base_": "b.json"}, "b.json": [1, 2]}, "must be a JSON object"),
])
def test_broken_inheritance_is_one_line_naming_the_file(tmp_path, files, message):
    for name, content in files.items():
        write(tmp_path / name, content)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "a.json")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(tmp_path / "a.json") in str(err.value)


def test_the_synthetic_families_are_their_base_with_the_keys_that_differ():
    """Each family is written once: a child is the 16d-dve config with only the
    dimension, the loss (and the 3-d visualizations, or the finetuned embedding) changed."""
    for folder in ("synthetic", "synthetic-keypoints"):
        base = json.loads((ROOT / "configs" / folder / "smallnet-16d-dve.json").read_text())
        for dim in (3, 16, 64):
            for dve in ("", "-dve"):
                name = f"smallnet-{dim}d{dve}"
                expected = json.loads(json.dumps(base))
                expected["arch"]["args"]["num_output_channels"] = dim
                if folder == "synthetic":
                    expected["loss"] = "dense_correlation_loss" + ("_dve" if dve else "")
                    if dim == 3:
                        expected["visualizations"] = ["sphere_colormap", "sphere_scatter3d",
                                                      "sphere_norm_scatter3d"]
                else:
                    expected["finetune_from"] = f"saved/models/synthetic-{name}"
                assert load_config(ROOT / "configs" / folder / f"{name}.json") == expected, name


# ------------------------------------------------------------------------- defaults

@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_config_resolves_idempotently_and_stays_valid(path):
    config = load_config(path)
    resolved = resolve_defaults(config, path)
    check_values(resolved, path)
    assert resolve_defaults(resolved, path) == resolved
    assert json.loads(json.dumps(resolved)) == resolved  # plain JSON
    for key, value in config.items():  # nothing the config says is changed
        if isinstance(value, dict):
            for inner, inner_value in value.items():
                if isinstance(inner_value, dict):
                    assert {**resolved[key][inner], **inner_value} == resolved[key][inner]
                else:
                    assert resolved[key][inner] == inner_value
        else:
            assert resolved[key] == value


def test_the_defaults_written_out_are_the_original_values():
    """SPEC section 3 (warp parameters) and 4 (loss exponent), SmallNet's max-pooling,
    the trainer defaults, and the experiment name from the path."""
    path = ROOT / "configs" / "synthetic" / "smallnet-16d.json"
    resolved = resolve_defaults(load_config(path), path)
    assert resolved["warper"]["args"] == {
        "warpsd_all": 0.001, "warpsd_subset": 0.01, "transsd": 0.1, "scalesd": 0.1,
        "rotsd": 5, "im1_multiplier": 0.5, "im1_multiplier_aff": 1.0}
    assert resolved["loss_args"] == {"pow": 0.5, "fold_corr": False, "normalize_vectors": False}
    assert resolved["arch"]["args"] == {"num_output_channels": 16, "do_maxpool": True}
    assert resolved["dataset"]["args"]["texture_strength"] == 2.0
    assert resolved["name"] == "synthetic-smallnet-16d"
    assert resolved["trainer"]["log_dir"] == "saved/" and resolved["n_gpu"] == 1
    assert resolved["optimizer"] == {"type": "Adam", "args": {
        "lr": 0.001, "weight_decay": 0, "amsgrad": True}}  # PyTorch's own: not filled
    assert "warp_val" not in resolved  # regressor keys only for regressor configs
    keypoints = ROOT / "configs" / "synthetic-keypoints" / "smallnet-16d.json"
    regressor = resolve_defaults(load_config(keypoints), keypoints)
    assert regressor["keypoint_regressor"]["args"]["softargmax_mul"] == 100.0
    assert (regressor["warp_val"], regressor["restrict_annos"]) == (False, None)  # as set; filled


def test_a_run_writes_the_resolved_config_and_rerunning_it_trains_the_same(
        tmp_path, tiny_config):
    """config.json holds every default, and training from it gives the same weights as
    training from the file it came from."""
    config = tiny_config(tmp_path, epochs=1)
    assert train.main(["--config", str(config), *BASE_ARGS, "--mini_train"]) == 0
    (first,) = (tmp_path / "saved" / "models" / "tiny-smallnet").iterdir()
    written = json.loads((first / "config.json").read_text())
    assert written == resolve_defaults({**load_config(config), "seed": 0}, config)
    assert written["warper"]["args"]["rotsd"] == 5 and written["name"] == "tiny-smallnet"
    rerun = tmp_path / "rerun.json"
    rerun.write_text(json.dumps(written))
    assert train.main(["--config", str(rerun), *BASE_ARGS, "--mini_train"]) == 0
    second = max((tmp_path / "saved" / "models" / "tiny-smallnet").iterdir())
    assert second != first
    a = torch.load(first / "checkpoint-epoch1.pth", weights_only=False)["state_dict"]
    b = torch.load(second / "checkpoint-epoch1.pth", weights_only=False)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((second / "config.json").read_text()) == written


# ----------------------------------------------------------------------- provenance

def test_a_run_records_its_command_code_and_software(tmp_path, tiny_config):
    config = tiny_config(tmp_path, epochs=1)
    argv = ["--config", str(config), *BASE_ARGS, "--mini_train"]
    assert train.main(argv) == 0
    (folder,) = (tmp_path / "saved" / "models" / "tiny-smallnet").iterdir()
    (entry,) = json.loads((folder / "provenance.json").read_text())["starts"]
    assert entry["command"] == "python train.py " + " ".join(argv)
    assert (entry["torch"], entry["cuda"], entry["device"]) == (
        torch.__version__, torch.version.cuda, "cpu")
    assert entry["python"].count(".") == 2 and entry["device_name"]
    git = shutil.which("git")
    head = subprocess.run([git, "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True) if git else None
    expected = head.stdout.strip() if head is not None and head.returncode == 0 else None
    assert entry["code"]["commit"] == expected
    # a resume appends a second entry
    resume = ["--resume", str(folder / "checkpoint-epoch1.pth"), *BASE_ARGS, "--mini_train",
              "--set", "trainer.epochs=2"]
    assert train.main(resume) == 0
    starts = json.loads((folder / "provenance.json").read_text())["starts"]
    assert [s["command"] for s in starts] == [entry["command"],
                                              "python train.py " + " ".join(resume)]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_code_version_says_whether_tracked_files_changed(tmp_path, monkeypatch):
    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True,
                              capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    monkeypatch.setattr(provenance, "CODE_ROOT", tmp_path)
    assert provenance.code_version() == {"commit": git("rev-parse", "HEAD"), "modified": False}
    (tmp_path / "notes.txt").write_text("untracked files do not count\n")
    assert provenance.code_version()["modified"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert provenance.code_version()["modified"] is True
    monkeypatch.setattr(provenance, "CODE_ROOT", tmp_path / "not-a-checkout")
    assert provenance.code_version() == {"commit": None, "modified": None}
