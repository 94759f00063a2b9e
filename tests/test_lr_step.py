"""``trainer.lr_step``: DVE's after-epoch stepping and the contrastive code's step before
every epoch, by hand-computed learning rates, also across ``--resume``."""
import re

import pytest

import train

CPU_ARGS = ["--device", "cpu", "--disable_workers"]
LR, GAMMA = 1e-3, 0.1  # the tiny config's Adam rate; StepLR(step_size=1, gamma 0.1) below


def logged_rates(caplog):
    return [float(m.group(1)) for r in caplog.records
            for m in [re.match(r"\s+lr\s+: (\S+)", r.getMessage())] if m]


@pytest.mark.parametrize("lr_step,steps_before_epoch", [
    ("after_epoch", [0, 0, 1]),  # epochs 1 and 2 at the base rate, then one step a epoch
    ("epoch_start", [1, 2, 3]),  # epoch e trains at step e
])
def test_the_rate_of_each_epoch(tmp_path, tiny_config, run_folder, caplog, lr_step,
                                steps_before_epoch):
    caplog.set_level("INFO")
    config = tiny_config(tmp_path, epochs=2)
    sets = ["--set", f'trainer.lr_step="{lr_step}"', "--set", 'lr_scheduler.type="StepLR"',
            "--set", 'lr_scheduler.args={"step_size": 1, "gamma": 0.1}']
    assert train.main(["--config", str(config), *CPU_ARGS, *sets]) == 0
    folder = run_folder(tmp_path)
    assert train.main(["--resume", str(folder / "checkpoint-epoch2.pth"), *CPU_ARGS,
                       "--set", "trainer.epochs=3"]) == 0
    expected = [LR * GAMMA ** steps for steps in steps_before_epoch]
    assert logged_rates(caplog) == pytest.approx(expected, rel=1e-9)
