"""``--resume`` with loader worker processes (the default outside the tests): the resumed
epoch shuffles exactly as the uninterrupted run's (bug: restarting the persistent workers
after restoring the loader's generator drew their base seed from it a second time)."""
import json

import torch

import train


def test_one_epoch_then_resume_equals_two_epochs_with_a_worker(tmp_path, tiny_config):
    config = tiny_config(tmp_path, epochs=2)
    data = json.loads(config.read_text())
    data["trainer"]["num_workers"] = 1  # persistent workers, as train.py runs by default
    config.write_text(json.dumps(data))
    assert train.main(["--config", str(config), "--device", "cpu"]) == 0
    (run,) = (tmp_path / "saved" / "models" / "tiny-smallnet").iterdir()
    straight = torch.load(run / "checkpoint-epoch2.pth", weights_only=True)["state_dict"]
    (run / "checkpoint-epoch2.pth").unlink()
    assert train.main(["--resume", str(run / "checkpoint-epoch1.pth"), "--device", "cpu"]) == 0
    resumed = torch.load(run / "checkpoint-epoch2.pth", weights_only=True)["state_dict"]
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)
