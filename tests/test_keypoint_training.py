"""The real regressor trainer on a tiny synthetic set: frozen embedding, caching, seeds,
restricted annotations, the evaluation command, and stable finetune_from paths."""
import json
import logging
import re

import pytest
import torch

import test_keypoints
import train
from data_loader.restricted_annos import RestrictedAnnotations
from model import SmallNet
from trainer import descriptor_cache
from utils.checkpoint import save_checkpoint
from utils.checkpoint_search import find_checkpoint

TINY_DATA = dict(num_train_identities=4, num_test_identities=3, images_per_identity=3,
                 num_val_images=2, num_mafl_train=2, num_mafl_test=6, seed=1)
CHANNELS = 8


@pytest.fixture(scope="module")
def embedding_dir(tmp_path_factory):
    """A SmallNet checkpoint with non-default batch-norm statistics, in a run folder."""
    root = tmp_path_factory.mktemp("embedding")
    torch.manual_seed(0)
    network = SmallNet(num_output_channels=CHANNELS)
    network(torch.randn(4, 3, 24, 24) * 3 + 1)  # train mode: running stats move
    folder = root / "models" / "tiny-embedding"
    save_checkpoint({"arch": "SmallNet", "epoch": 1, "state_dict": network.state_dict(),
                     "config": {}}, folder / "2020-01-01_00-00-00" / "checkpoint-epoch1.pth")
    return folder


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data") / "synthetic"


def regressor_config(tmp_path, data_root, embedding_dir, epochs=1, warper=True, cache=False,
                     name="regressor", **extra):
    config = {
        "n_gpu": 1, "batch_size": 4, "finetune_from": str(embedding_dir),
        "cache_descriptors": cache, "keypoint_regressor_upsample": False,
        "arch": {"type": "SmallNet", "args": {"num_output_channels": CHANNELS}},
        "dataset": {"type": "SyntheticFaces",
                    "args": {"root": str(data_root), "imwidth": 32, "crop": 4,
                             "use_keypoints": True, "do_augmentations": False, **TINY_DATA}},
        "keypoint_regressor": {"type": "IntermediateKeypointPredictor",
                               "args": {"num_annotated_points": 5, "num_intermediate_points": 6,
                                        "softargmax_mul": 100.0}},
        "optimizer": {"type": "Adam", "args": {"lr": 1e-2, "weight_decay": 5e-4, "amsgrad": True}},
        "loss": "regression_loss", "loss_args": {"alpha": 10.0},
        "metrics": ["inter_ocular_error"], "visualizations": ["keypoints_intermediate"],
        "trainer": {"epochs": epochs, "save_dir": str(tmp_path / "saved"), "save_period": 1,
                    "verbosity": 2, "monitor": "off", "tensorboardX": True,
                    "log_dir": str(tmp_path / "saved")},
        **extra,
    }
    if warper:
        config["warper"] = {"type": "WarperSingle", "args": {}}
    path = tmp_path / "configs" / "tiny-keypoints" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    return path


def run_folders(tmp_path, name="regressor"):
    return sorted((tmp_path / "saved" / "models" / f"tiny-keypoints-{name}").iterdir())


def logged_train_loss(tmp_path, name):
    (log_dir,) = (tmp_path / "saved" / "log" / f"tiny-keypoints-{name}").iterdir()
    return float(re.search(r":\s+loss\s+: (\S+)", (log_dir / "info.log").read_text()).group(1))


def test_embedding_is_frozen_and_evaluation_command_agrees(tmp_path, data_root, embedding_dir):
    config = regressor_config(tmp_path, data_root, embedding_dir, epochs=2)
    assert train.main(["--config", str(config), "--device", "cpu", "--disable_workers"]) == 0
    (folder,) = run_folders(tmp_path)
    embedding = torch.load(find_checkpoint(embedding_dir), weights_only=True)["state_dict"]
    states = [torch.load(folder / f"checkpoint-epoch{e}.pth", weights_only=True) for e in (1, 2)]
    for state in states:
        assert state["arch"] == "Sequential"
        for key, value in embedding.items():  # weights and batch-norm statistics
            assert torch.equal(state["state_dict"][f"0.wrapped_module.{key}"], value), key
    assert not torch.equal(states[0]["state_dict"]["1.reg_conv.weight"],
                           states[1]["state_dict"]["1.reg_conv.weight"])
    trained = json.loads((folder / "keypoints.json").read_text())
    assert trained["num_images"] == 6 and trained["inter_ocular_error"] > 0
    assert (folder / "ced.png").exists() and (folder / "ced.csv").exists()
    out = tmp_path / "eval"
    assert test_keypoints.main(["--resume", str(folder / "checkpoint-epoch2.pth"), "--device",
                                "cpu", "--disable_workers", "--output_dir", str(out)]) == 0
    evaluated = json.loads((out / "keypoints.json").read_text())
    assert evaluated["inter_ocular_error"] == pytest.approx(trained["inter_ocular_error"], rel=1e-5)
    log_dir = tmp_path / "saved" / "log" / "tiny-keypoints-regressor" / folder.name
    assert list(log_dir.glob("events.out.tfevents.*"))


def test_cached_and_uncached_training_agree(tmp_path, data_root, embedding_dir):
    results = {}
    for cache in (False, True):
        name = f"cache-{cache}".lower()
        config = regressor_config(tmp_path, data_root, embedding_dir, warper=False, cache=cache,
                                  name=name)
        assert train.main(["--config", str(config), "--device", "cpu", "--disable_workers"]) == 0
        (folder,) = run_folders(tmp_path, name)
        results[cache] = (logged_train_loss(tmp_path, name),
                          torch.load(folder / "checkpoint-epoch1.pth", weights_only=True),
                          json.loads((folder / "keypoints.json").read_text()))
    (loss_plain, state_plain, summary_plain), (loss_cached, state_cached, summary_cached) = (
        results[False], results[True])
    assert loss_plain == pytest.approx(loss_cached, rel=1e-4)
    torch.testing.assert_close(state_plain["state_dict"]["1.reg_conv.weight"],
                               state_cached["state_dict"]["1.reg_conv.weight"], rtol=1e-4, atol=1e-6)
    assert summary_plain["inter_ocular_error"] == pytest.approx(
        summary_cached["inter_ocular_error"], rel=1e-4)


def test_seeds_log_mean_and_std_of_the_final_error(tmp_path, data_root, embedding_dir, caplog):
    caplog.set_level(logging.INFO)
    config = regressor_config(tmp_path, data_root, embedding_dir, cache=True, restrict_annos=2)
    assert train.main(["--config", str(config), "--device", "cpu", "--disable_workers",
                       "--seeds", "0,1"]) == 0
    errors = torch.tensor([json.loads((f / "keypoints.json").read_text())["inter_ocular_error"]
                           for f in run_folders(tmp_path)], dtype=torch.float64)
    assert len(errors) == 2
    summary = [r.getMessage() for r in caplog.records if "over seeds [0, 1]" in r.getMessage()]
    assert summary == [f"inter_ocular_error over seeds [0, 1]: {errors.mean():.4f} +/- "
                       f"{errors.std():.4f}"]
    chosen = [r.getMessage() for r in caplog.records if r.getMessage().startswith("restrict_annos")]
    assert len(chosen) == 2 and all("2 images" in m for m in chosen)


def test_cache_that_does_not_fit_fails_naming_the_key(tmp_path, data_root, embedding_dir,
                                                      monkeypatch, caplog):
    monkeypatch.setattr(descriptor_cache, "available_memory_bytes", lambda: 1000)
    config = regressor_config(tmp_path, data_root, embedding_dir, cache=True)
    assert train.main(["--config", str(config), "--device", "cpu", "--disable_workers"]) == 2
    (error,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    # 16 images (10 train + 6 test) of 8 x 12 x 12 float32 features
    needed = 16 * 8 * 12 * 12 * 4 / 2 ** 30
    assert f"cache_descriptors needs {needed:.2f} GiB" in error
    assert 'set "cache_descriptors": false' in error and "\n" not in error


class NamedItems:
    def __init__(self, count):
        self.names = [f"img{i}.jpg" for i in range(count)]

    def __len__(self):
        return len(self.names)

    def __getitem__(self, index):
        return {"name": self.names[index], "index": index}


def test_restrict_annos_tiles_the_requested_distinct_images():
    dataset = NamedItems(23)
    restricted = RestrictedAnnotations(dataset, 5, seed=3)
    assert len(set(restricted.chosen)) == 5 and len(restricted) == 5 * (23 // 5)
    names = [restricted[i]["name"] for i in range(len(restricted))]
    assert sorted(set(names)) == sorted(dataset.names[i] for i in restricted.chosen)
    assert all(names.count(n) == 23 // 5 for n in set(names))
    assert RestrictedAnnotations(dataset, 5, seed=3).chosen == restricted.chosen
    with pytest.raises(ValueError, match="restrict_annos=30"):
        RestrictedAnnotations(dataset, 30, seed=0)


def test_finetune_from_a_folder_picks_the_newest_run_and_highest_epoch(tmp_path):
    for run, epoch in [("2020-01-01_00-00-00", 9), ("2021-05-01_00-00-00", 2),
                       ("2021-05-01_00-00-00", 10), ("2021-05-01_00-00-00", 3)]:
        path = tmp_path / "exp" / run / f"checkpoint-epoch{epoch}.pth"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    newest = tmp_path / "exp" / "2021-05-01_00-00-00" / "checkpoint-epoch10.pth"
    assert find_checkpoint(tmp_path / "exp") == newest
    assert find_checkpoint(str(tmp_path / "exp" / "*" / "checkpoint-epoch9.pth")) == \
        tmp_path / "exp" / "2020-01-01_00-00-00" / "checkpoint-epoch9.pth"
    assert find_checkpoint(newest) == newest
    assert find_checkpoint(tmp_path / "missing") is None
