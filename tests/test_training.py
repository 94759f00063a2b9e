"""The real trainer for a few steps on a tiny synthetic set: files, resume, matching."""
import json

import pytest
import torch

import test_matching
import train

def test_two_epochs_write_loadable_checkpoints_logs_and_matching(tmp_path, tiny_config, run_folder):
    config = tiny_config(tmp_path, tensorboard=True)
    assert train.main(["--config", str(config), "--device", "cpu", "--disable_workers"]) == 0
    folder = run_folder(tmp_path)
    for epoch in (1, 2):
        state = torch.load(folder / f"checkpoint-epoch{epoch}.pth", weights_only=True)
        assert state["epoch"] == epoch and state["arch"] == "SmallNet"
        assert state["config"]["arch"]["args"]["num_output_channels"] == 8
    assert json.loads((folder / "config.json").read_text())["batch_size"] == 4
    matching = json.loads((folder / "matching.json").read_text())
    assert matching["num_image_pairs"] == 3
    log_dir = tmp_path / "saved" / "log" / "tiny-smallnet" / folder.name
    log_text = (log_dir / "info.log").read_text()
    assert "Mean Pixel Error (same-identity):" in log_text
    assert "Mean Pixel Error (different-identity):" in log_text
    assert list(log_dir.glob("events.out.tfevents.*"))


def test_resume_continues_exactly(tmp_path, tiny_config, run_folder):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    config = tiny_config(straight, epochs=3)
    assert train.main(["--config", str(config), "--device", "cpu", "--disable_workers"]) == 0
    config = tiny_config(resumed, epochs=2)
    assert train.main(["--config", str(config), "--device", "cpu", "--disable_workers"]) == 0
    folder = run_folder(resumed)
    assert train.main(["--resume", str(folder / "checkpoint-epoch2.pth"), "--device", "cpu",
                       "--disable_workers", "--set", "trainer.epochs=3"]) == 0
    final_straight = torch.load(run_folder(straight) / "checkpoint-epoch3.pth", weights_only=True)
    final_resumed = torch.load(folder / "checkpoint-epoch3.pth", weights_only=True)
    for key, value in final_straight["state_dict"].items():
        assert torch.equal(value, final_resumed["state_dict"][key]), key
    assert final_straight["optimizer"]["param_groups"][1]["lr"] == pytest.approx(1e-4)
    assert final_resumed["optimizer"]["param_groups"][1]["lr"] == pytest.approx(1e-4)


def test_test_matching_cli_writes_json_and_figure(tmp_path, tiny_config, run_folder):
    config = tiny_config(tmp_path, epochs=1)
    assert train.main(["--config", str(config), "--device", "cpu", "--disable_workers"]) == 0
    checkpoint = run_folder(tmp_path) / "checkpoint-epoch1.pth"
    out = tmp_path / "eval"
    assert test_matching.main(["--resume", str(checkpoint), "--device", "cpu", "--vis",
                               "--output_dir", str(out)]) == 0
    first = json.loads((out / "matching.json").read_text())
    assert (out / "matching.png").stat().st_size > 0
    assert test_matching.main(["--resume", str(checkpoint), "--device", "cpu",
                               "--output_dir", str(out)]) == 0
    second = json.loads((out / "matching.json").read_text())
    assert first["same_identity"] == second["same_identity"]  # seeded protocol
    trained = json.loads((run_folder(tmp_path) / "matching.json").read_text())
    assert trained["different_identity"] == pytest.approx(first["different_identity"])
