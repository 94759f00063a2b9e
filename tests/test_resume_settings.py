"""``--resume`` with changed optimizer or schedule settings: applied (and logged), with
``config.json`` recording what ran; changes the saved optimizer state cannot take are
refused before anything is written."""
import json
import logging

import pytest
import torch

import train

BASE_ARGS = ["--device", "cpu", "--disable_workers"]
BASE_LR, BIAS_LR, GAMMA = 1e-3, 1e-5, 0.1  # the tiny config's optimizer and schedule


def trained_two_epochs(tmp_path, tiny_config, run_folder):
    config = tiny_config(tmp_path, epochs=2)
    assert train.main(["--config", str(config), *BASE_ARGS]) == 0
    return run_folder(tmp_path)


def expected_lr(base: float, milestones, steps: int) -> float:
    """MultiStepLR by hand: ``base`` times gamma for each milestone reached after
    ``steps`` scheduler steps (one after each epoch from epoch 2 on)."""
    return base * GAMMA ** sum(1 for m in milestones if m <= steps)


@pytest.mark.parametrize("lr,milestones", [(0.01, [3]), (0.01, [1]), (BASE_LR, [3])])
def test_changed_lr_and_milestones_apply_on_resume(tmp_path, tiny_config, run_folder, caplog,
                                                   lr, milestones):
    caplog.set_level(logging.INFO)
    folder = trained_two_epochs(tmp_path, tiny_config, run_folder)
    assert train.main(["--resume", str(folder / "checkpoint-epoch2.pth"), *BASE_ARGS,
                       "--set", "trainer.epochs=3", "--set", f"optimizer.args.lr={lr}",
                       "--set", f"lr_scheduler.args.milestones={json.dumps(milestones)}"]) == 0
    state = torch.load(folder / "checkpoint-epoch3.pth", weights_only=True)
    steps = 2  # after epochs 2 and 3
    rates = [group["lr"] for group in state["optimizer"]["param_groups"]]
    assert rates == pytest.approx([expected_lr(BIAS_LR, milestones, steps),
                                   expected_lr(lr, milestones, steps)], rel=1e-12)
    assert sorted(state["lr_scheduler"]["milestones"]) == milestones
    assert state["lr_scheduler"]["last_epoch"] == steps
    recorded = json.loads((folder / "config.json").read_text())
    assert recorded["optimizer"]["args"]["lr"] == lr
    assert recorded["lr_scheduler"]["args"]["milestones"] == milestones
    assert state["config"]["optimizer"]["args"]["lr"] == lr
    # epoch 3 trained with the rate of the new schedule after one step
    epoch3 = [r.getMessage() for r in caplog.records if r.getMessage().strip().startswith("lr ")]
    assert float(epoch3[-1].split(":")[1]) == pytest.approx(expected_lr(lr, milestones, 1))
    (applied,) = [r.getMessage() for r in caplog.records
                  if "applied the settings" in r.getMessage()]
    if lr != BASE_LR:
        assert f"optimizer.args.lr {BASE_LR!r} -> {lr!r}" in applied
    if milestones != [1]:
        assert f"lr_scheduler.args.milestones [1] -> {milestones!r}" in applied


@pytest.mark.parametrize("override,key", [
    ("optimizer.args.amsgrad=false", "optimizer.args.amsgrad"),
    ("bias_lr=null", "bias_lr"),
    ('lr_scheduler={"type": "StepLR", "args": {"step_size": 5}}', "lr_scheduler.type"),
])
def test_changes_the_optimizer_state_cannot_take_are_refused_before_writing(
        tmp_path, tiny_config, run_folder, caplog, capsys, override, key):
    folder = trained_two_epochs(tmp_path, tiny_config, run_folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    checkpoint = folder / "checkpoint-epoch2.pth"
    assert train.main(["--resume", str(checkpoint), *BASE_ARGS, "--set", "trainer.epochs=3",
                       "--set", override]) == 2
    (message,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "\n" not in message and "Traceback" not in capsys.readouterr().err
    assert f"--resume {checkpoint}: {key} was" in message and "finetune_from" in message
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_resuming_a_finished_run_says_to_raise_the_epochs(tmp_path, tiny_config, run_folder,
                                                          caplog):
    folder = trained_two_epochs(tmp_path, tiny_config, run_folder)
    config_text = (folder / "config.json").read_text()
    assert train.main(["--resume", str(folder / "checkpoint-epoch2.pth"), *BASE_ARGS]) == 2
    (message,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "the checkpoint is at epoch 2 and trainer.epochs is 2" in message
    assert "--set trainer.epochs=3" in message
    assert (folder / "config.json").read_text() == config_text


def files_under(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize("override,expected", [
    # other weights: the checkpoint's 8 channels do not fit a 64-channel network
    ("arch.args.num_output_channels=64",
     "its parameters do not fit the configured network, SmallNet with 64 output channels"),
    # the same weights, another network: refused by name
    ("arch.args.do_maxpool=false", "the network differs from the checkpoint's run "
                                   "(arch.args.do_maxpool True -> False)"),
])
def test_network_changes_are_refused_before_writing(tmp_path, tiny_config, run_folder, caplog,
                                                    capsys, override, expected, dry_run):
    config = tiny_config(tmp_path, epochs=2, tensorboard=True)
    assert train.main(["--config", str(config), *BASE_ARGS]) == 0
    checkpoint = run_folder(tmp_path) / "checkpoint-epoch2.pth"
    before = files_under(tmp_path / "saved")
    assert train.main(["--resume", str(checkpoint), *BASE_ARGS, "--set", override,
                       "--set", "trainer.epochs=3", *(["--dry-run"] if dry_run else [])]) == 2
    (message,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "\n" not in message and "Traceback" not in capsys.readouterr().err
    assert message.startswith(f"error: --resume {checkpoint}") and expected in message
    assert files_under(tmp_path / "saved") == before
