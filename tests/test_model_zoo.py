"""Released models by name (utils/model_zoo.py, misc/sync_models.py, hubconf.py) against a
loopback HTTP server serving released-format files in the server's folder layout."""
import argparse
import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

import model
import test_keypoints
import test_matching
import train
from misc import sync_models
from released_format import SMALL_HOURGLASS, save_released
from run_helpers import BASE_ARGS, one_error
from trainer.run_setup import finetune
from utils.checkpoint import CheckpointError
from utils.checkpoint_search import require_checkpoint
from utils.model_zoo import fetch_model

REPO_ROOT = Path(__file__).resolve().parents[1]
NAME = "celeba-smallnet-64d-dve"
# The run folder of that model, as the original regression configs' finetune_from names it.
RUN_FOLDER = Path("models", "celeba-smallnet-64d-dve", "2019-08-02_06-20-28")
RUN_PATH = f"/{RUN_FOLDER}"
CHECKPOINT_PATH = f"{RUN_PATH}/checkpoint-epoch100.pth"
CONFIG_PATH = f"{RUN_PATH}/config.json"
HOURGLASS_RUN_PATH = "/models/celeba-hourglass-64d-dve/0618_103501"

# SPEC section 8: published figures, copied here (same / different identity in pixels;
# regression in % of the inter-ocular distance), by released model name.
PUBLISHED = {
    "celeba-smallnet-3d-dve": "1.36 / 3.03", "celeba-smallnet-16d-dve": "1.28 / 2.79",
    "celeba-smallnet-32d-dve": "1.29 / 2.79", "celeba-smallnet-64d-dve": "1.28 / 2.77",
    "celeba-hourglass-64d-dve": "0.93 / 2.37", "celeba-smallnet-3d": "1.33 / 2.89",
    "celeba-smallnet-16d": "1.25 / 5.65", "celeba-smallnet-32d": "1.26 / 5.81",
    "celeba-smallnet-64d": "1.25 / 5.68",
}
NETWORKS = ["smallnet-3d-dve", "smallnet-16d-dve", "smallnet-32d-dve", "smallnet-64d-dve",
            "hourglass-64d-dve"]
for prefix, figures in [("mafl-keypoints", "4.17 3.97 3.82 3.42 2.86"),
                        ("300w-keypoints", "7.66 6.29 6.13 5.75 4.65"),
                        ("aflw-ft-keypoints", "10.13 8.40 8.18 7.79 6.54"),
                        ("aflw-mtfl-ft-keypoints", "11.12 9.15 9.17 8.60 7.53")]:
    PUBLISHED.update({f"{prefix}-celeba-{net}": value
                      for net, value in zip(NETWORKS, figures.split())})
for prefix, figures in [("mafl-keypoints", "4.02 5.31 5.36 4.99"),
                        ("300w-keypoints", "8.23 10.66 10.33 9.33")]:
    PUBLISHED.update({f"{prefix}-celeba-{net[:-4]}": value
                      for net, value in zip(NETWORKS, figures.split())})


@pytest.fixture
def zoo(server, tmp_path, monkeypatch):  # noqa: F811
    """The loopback server as the models mirror, and a cache under ``tmp_path``."""
    port = server.httpd.server_address[1]
    monkeypatch.setenv("DVE_MODELS_URL", f"http://127.0.0.1:{port}/models")
    monkeypatch.setenv("DVE_CACHE", str(tmp_path / "cache"))
    return server


def serve_smallnet(zoo, tmp_path, tiny_config, seed=0):
    """Serve a released-format SmallNet-64d checkpoint and, as its config.json, the tiny
    synthetic config (64 channels); -> (checkpoint bytes, config bytes, state dict)."""
    config = json.loads(tiny_config(tmp_path, epochs=1).read_text())
    config["arch"]["args"]["num_output_channels"] = 64
    torch.manual_seed(seed)
    state_dict = model.SmallNet(64).state_dict()
    checkpoint = save_released(tmp_path / "released.pth", state_dict).read_bytes()
    config_bytes = json.dumps(config).encode()
    zoo.files[CHECKPOINT_PATH], zoo.files[CONFIG_PATH] = checkpoint, config_bytes
    return checkpoint, config_bytes, state_dict


def cached(tmp_path, file_name):
    return tmp_path / "cache" / RUN_FOLDER / file_name


def test_resume_by_name_downloads_once_and_evaluates_with_the_released_config(
        zoo, tmp_path, tiny_config):
    checkpoint, config_bytes, _ = serve_smallnet(zoo, tmp_path, tiny_config)
    by_name = tmp_path / "by_name"
    assert test_matching.main(["--resume", NAME, "--device", "cpu",
                               "--output_dir", str(by_name)]) == 0
    assert zoo.requests == [(CONFIG_PATH, None), (CHECKPOINT_PATH, None)]
    assert cached(tmp_path, "checkpoint-epoch100.pth").read_bytes() == checkpoint
    digests = json.loads(cached(tmp_path, "digests.json").read_text())
    assert digests["checkpoint-epoch100.pth"]["sha256"] == hashlib.sha256(checkpoint).hexdigest()
    assert digests["config.json"]["sha256"] == hashlib.sha256(config_bytes).hexdigest()
    # the same file and config given by hand give the same figures
    (tmp_path / "by_hand").mkdir()
    (tmp_path / "by_hand" / "released.pth").write_bytes(checkpoint)
    (tmp_path / "by_hand" / "config.json").write_bytes(config_bytes)
    assert test_matching.main(["--resume", str(tmp_path / "by_hand" / "released.pth"),
                               "--config", str(tmp_path / "by_hand" / "config.json"),
                               "--device", "cpu", "--output_dir", str(tmp_path / "by_hand")]) == 0
    results = [json.loads((folder / "matching.json").read_text())
               for folder in (by_name, tmp_path / "by_hand")]
    for key in ("same_identity", "different_identity"):
        assert results[0][key] == results[1][key]
    assert require_checkpoint(NAME) == cached(tmp_path, "checkpoint-epoch100.pth")
    assert len(zoo.requests) == 2  # later uses read the cache


def test_sync_models_downloads_names_with_its_options(zoo, tmp_path, tiny_config, capsys,
                                                     monkeypatch):
    checkpoint, _, _ = serve_smallnet(zoo, tmp_path, tiny_config)
    monkeypatch.setenv("DVE_MODELS_URL", "http://127.0.0.1:9/unreachable")  # the options win
    root_url = f"http://127.0.0.1:{zoo.httpd.server_address[1]}/models"
    other = tmp_path / "other"
    assert sync_models.main([NAME, "--root_url", root_url, "--cache_dir", str(other)]) == 0
    path = other / RUN_FOLDER / "checkpoint-epoch100.pth"
    assert path.read_bytes() == checkpoint
    ready = f"{NAME}: {path} (config {path.with_name('config.json')}) ready"
    assert ready in capsys.readouterr().out


def test_train_resume_by_name_uses_the_released_config_and_epoch(zoo, tmp_path, tiny_config,
                                                                  caplog, capsys):
    serve_smallnet(zoo, tmp_path, tiny_config)
    assert train.main(["--resume", NAME, *BASE_ARGS, "--dry-run"]) == 2
    assert one_error(caplog, capsys).endswith(
        "the checkpoint is at epoch 100 and trainer.epochs is 1: nothing to train; raise it, "
        "e.g. --set trainer.epochs=101")
    assert train.main(["--resume", NAME, *BASE_ARGS, "--set", "trainer.epochs=101",
                       "--dry-run"]) == 0
    assert f"{cached(tmp_path, 'config.json')}: SmallNet with" in capsys.readouterr().out


def test_interrupted_download_is_resumed_with_a_range_request(zoo, tmp_path, tiny_config):
    checkpoint, config_bytes, _ = serve_smallnet(zoo, tmp_path, tiny_config)
    del zoo.files[CHECKPOINT_PATH]
    with pytest.raises(CheckpointError,
                       match=r"HTTP 404 .*checkpoint-epoch100\.pth; check \$DVE_MODELS_URL"):
        fetch_model(NAME, retries=0)
    zoo.files[CHECKPOINT_PATH] = checkpoint
    half = len(checkpoint) // 2
    zoo.drop_after = half
    with pytest.raises(CheckpointError, match=f"re-running resumes from the {half} bytes saved"):
        fetch_model(NAME, retries=0)
    assert zoo.requests == [(CONFIG_PATH, None), (CHECKPOINT_PATH, None), (CHECKPOINT_PATH, None)]
    fetched = fetch_model(NAME, retries=0)
    assert zoo.requests[-1] == (CHECKPOINT_PATH, f"bytes={half}-")
    assert fetched.checkpoint.read_bytes() == checkpoint
    assert fetched.config.read_bytes() == config_bytes


@pytest.mark.parametrize("file_name, damage", [
    ("checkpoint-epoch100.pth", lambda data: data[:100] + bytes([data[100] ^ 1]) + data[101:]),
    ("config.json", lambda data: data + b" "),
])
def test_a_changed_cached_file_is_refused_in_one_line(zoo, tmp_path, tiny_config, caplog,
                                                      capsys, file_name, damage):
    serve_smallnet(zoo, tmp_path, tiny_config)
    fetch_model(NAME)
    path = cached(tmp_path, file_name)
    original = hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes(damage(path.read_bytes()))
    assert test_matching.main(["--resume", NAME, "--device", "cpu"]) == 2
    message = one_error(caplog, capsys)
    assert str(path) in message and "delete" in message and "re-run" in message
    if file_name == "config.json":  # another size: named before any digest is computed
        assert f"{path.stat().st_size} bytes" in message
    else:
        assert hashlib.sha256(path.read_bytes()).hexdigest() in message and original in message
    assert len(zoo.requests) == 2


def test_a_name_typo_lists_the_closest_names(zoo, caplog, capsys):
    assert test_matching.main(["--resume", "celeba-smalnet-64d-dve", "--device", "cpu"]) == 2
    message = one_error(caplog, capsys)
    assert re.search(r"closest names: celeba-smallnet-64d-dve\b", message)
    assert message.startswith("error: --resume: 'celeba-smalnet-64d-dve' is not a released model")
    assert zoo.requests == []


# Model links of the original README (jamt9000/DVE, 2019), copied here: experiment/run
# of a regressor, a fine-tuned embedding and an ablation without DVE; the file is
# checkpoint-epoch<N>.pth (SPEC section 5: N = 300 for regressors, 50 for fine-tuned).
REGRESSOR, FINE_TUNED = "checkpoint-epoch300.pth", "checkpoint-epoch50.pth"
PUBLISHED_RUNS = {
    "mafl-keypoints-celeba-smallnet-64d-dve": ("2019-08-11_08-40-48", REGRESSOR),
    "300w-keypoints-celeba-hourglass-64d-dve": ("2019-08-11_18-50-33", REGRESSOR),
    "300w-ft-keypoints-celeba-smallnet-3d-dve": ("2019-08-12_05-21-09", REGRESSOR),
    "aflw-mtfl-ft-keypoints-celeba-smallnet-16d": ("2019-08-11_18-43-03", REGRESSOR),
    "aflw-ft-celeba-hourglass-64d-dve": ("2019-08-11_14-43-34", FINE_TUNED),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_RUNS))
def test_a_released_model_is_fetched_from_its_published_run_folder(zoo, name):
    run, file_name = PUBLISHED_RUNS[name]
    folder = f"/models/{name}/{run}"
    zoo.files[f"{folder}/config.json"], zoo.files[f"{folder}/{file_name}"] = b"{}", b"weights"
    fetched = fetch_model(name, retries=0)
    assert zoo.requests == [(f"{folder}/config.json", None), (f"{folder}/{file_name}", None)]
    assert fetched.checkpoint.read_bytes() == b"weights"
    assert fetched.checkpoint.parent.parts[-2:] == (name, run)


def test_a_model_of_unknown_run_folder_says_how_to_use_it(zoo, caplog, capsys):
    name = "aflw-mtfl-limit-annos-ft-keypoints-celeba-smallnet-64d-dve-5annos"
    assert test_keypoints.main(["--resume", name, "--device", "cpu"]) == 2
    message = one_error(caplog, capsys)
    assert f"'{name}': the run folder of this released model is not known" in message
    assert ("--config configs/aflw-mtfl-limit-annos-ft-keypoints/smallnet-64d-dve-5annos.json"
            in message and "pass the path of a checkpoint" in message)
    assert zoo.requests == []


def test_list_prints_every_published_figure(capsys):
    assert sync_models.main(["--list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line}
    for name, figures in PUBLISHED.items():
        assert f"  {figures}  " in rows[name], name
    assert "2019-08-02_06-20-28" in rows[NAME]
    for name, (run, _) in PUBLISHED_RUNS.items():
        assert f"  {run}  " in rows[name], name


def test_docs_show_the_list_output(capsys):
    sync_models.main(["--list"])
    listing = capsys.readouterr().out
    assert listing in (REPO_ROOT / "docs" / "released-models.md").read_text()


def test_finetune_from_a_name_is_listed_by_dry_run_downloaded_by_the_run_then_checked(
        zoo, tmp_path, tiny_config, caplog, capsys):
    _, _, state_dict = serve_smallnet(zoo, tmp_path, tiny_config)
    narrow = tiny_config(tmp_path, epochs=1)  # 8 channels
    wide = tmp_path / "wide.json"  # 64 channels, as the release
    wide.write_bytes(zoo.files[CONFIG_PATH])
    args = ["--set", f"finetune_from={NAME}", *BASE_ARGS, "--dry-run"]
    assert train.main(["--config", str(wide), *args]) == 0
    assert (f"missing on this machine: finetune_from checkpoint {NAME} (a released model, "
            f"downloaded on first use (now: python -m misc.sync_models {NAME}))"
            in capsys.readouterr().out)
    assert zoo.requests == []
    network = model.SmallNet(64)
    finetune(network, {"finetune_from": NAME}, argparse.Namespace(resume=None), "cpu")
    assert zoo.requests == [(CONFIG_PATH, None), (CHECKPOINT_PATH, None)]
    for key, value in state_dict.items():
        assert torch.equal(network.state_dict()[key], value), key
    assert train.main(["--config", str(narrow), *args]) == 2  # the cached weights are checked
    message = one_error(caplog, capsys)
    assert str(cached(tmp_path, "checkpoint-epoch100.pth")) in message
    assert "checkpoint looks like SmallNet with 64 output channels" in message
    assert len(zoo.requests) == 2


def test_torch_hub_loads_the_released_networks_by_name(zoo, tmp_path, tiny_config):
    _, _, state_dict = serve_smallnet(zoo, tmp_path, tiny_config, seed=4)
    network = torch.hub.load(str(REPO_ROOT), "smallnet", dim=64, pretrained=NAME, source="local")
    assert isinstance(network, model.SmallNet) and not network.training
    for key, value in state_dict.items():
        assert torch.equal(network.state_dict()[key], value), key
    # the hourglass: its arguments come from the released config.json
    config = json.loads(zoo.files[CONFIG_PATH])
    config["arch"] = {"type": "HourglassNet",
                      "args": {"num_output_channels": 64, **SMALL_HOURGLASS}}
    hourglass = model.HourglassNet(64, **SMALL_HOURGLASS).state_dict()
    zoo.files[f"{HOURGLASS_RUN_PATH}/config.json"] = json.dumps(config).encode()
    zoo.files[f"{HOURGLASS_RUN_PATH}/checkpoint-epoch100.pth"] = save_released(
        tmp_path / "hourglass.pth", hourglass, arch="HourglassNet").read_bytes()
    network = torch.hub.load(str(REPO_ROOT), "hourglass", pretrained="celeba-hourglass-64d-dve",
                             source="local")
    for key, value in hourglass.items():
        assert torch.equal(network.state_dict()[key], value), key
    untrained = torch.hub.load(str(REPO_ROOT), "smallnet", dim=16, source="local")
    assert untrained.conv6.out_channels == 16 and untrained.training
