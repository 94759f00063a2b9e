"""Starts that fail leave no run folder; a diverging run stops in one line."""
import pytest
import torch

import train
from model import SmallNet
from run_helpers import BASE_ARGS, one_error, rewrite
from utils.checkpoint_search import require_checkpoint


def test_missing_data_root_leaves_no_run_folder(tmp_path, tiny_config, caplog, capsys):
    missing = tmp_path / "nowhere" / "celeba"

    def celeba(config):
        config["dataset"] = {"type": "CelebAPrunedAligned_MAFLVal",
                             "args": {"root": str(missing), "imwidth": 32, "crop": 4}}

    config = rewrite(tiny_config(tmp_path, epochs=1), celeba)
    assert train.main(["--config", str(config), *BASE_ARGS]) == 2
    assert str(missing) in one_error(caplog, capsys)
    assert not (tmp_path / "saved").exists()


def test_missing_finetune_checkpoint_leaves_no_run_folder(tmp_path, tiny_config, caplog, capsys):
    config = rewrite(tiny_config(tmp_path, epochs=1),
                     lambda c: c.update(finetune_from=str(tmp_path / "runs")))
    assert train.main(["--config", str(config), *BASE_ARGS]) == 2
    assert "finetune_from: no checkpoint at" in one_error(caplog, capsys)
    assert not (tmp_path / "saved").exists()


def test_a_bare_state_dict_cannot_be_resumed(tmp_path, tiny_config, caplog, capsys):
    run = tmp_path / "published"
    run.mkdir()
    torch.save(SmallNet(8).state_dict(), run / "weights.pth")
    config = tiny_config(tmp_path, epochs=2)
    assert train.main(["--config", str(config), "--resume", str(run / "weights.pth"),
                       *BASE_ARGS]) == 2
    message = one_error(caplog, capsys)
    assert "bare state dict" in message and "cannot be resumed" in message
    assert f'"finetune_from": "{run / "weights.pth"}"' in message
    assert not (tmp_path / "saved").exists()


def test_a_non_finite_loss_stops_naming_epoch_batch_and_value(tmp_path, tiny_config, caplog,
                                                               capsys):
    # Plain SGD at lr 1e30: the first step (batch 0, the initial weights) is finite, the
    # weights it produces overflow, so the loss of batch 1 is NaN.
    config = rewrite(tiny_config(tmp_path, epochs=2),
                     lambda c: c.update(optimizer={"type": "SGD", "args": {"lr": 1e30}}))
    assert train.main(["--config", str(config), *BASE_ARGS]) == 2
    message = one_error(caplog, capsys)
    assert message.startswith("error: epoch 1, training batch index 1: the loss "
                              "dense_correlation_loss_dve is nan")
    assert "lower the learning rate (optimizer.args.lr in" in message
    assert "check the data" in message


def test_missing_synthetic_embedding_names_the_command_that_trains_it(tmp_path, monkeypatch,
                                                                       caplog, capsys):
    # a new user runs a synthetic regression config before the synthetic embedding exists
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs" / "synthetic").mkdir(parents=True)
    (tmp_path / "configs" / "synthetic" / "smallnet-16d-dve.json").write_text("{}")
    missing = "saved/models/synthetic-smallnet-16d-dve"
    with pytest.raises(FileNotFoundError) as err:
        require_checkpoint(missing)
    assert str(err.value) == (
        f"finetune_from: no checkpoint at '{missing}' (a file, a folder of runs or a glob); "
        f"train it first: python train.py --config configs/synthetic/smallnet-16d-dve.json")
    assert "sync_datasets" not in str(err.value)


@pytest.mark.parametrize("dry_run", [True, False])
def test_finetune_weights_of_another_width_are_refused_by_the_config_check(
        tmp_path, tiny_config, caplog, capsys, dry_run):
    weights = tmp_path / "published" / "smallnet-16d.pth"
    weights.parent.mkdir()
    torch.save(SmallNet(16).state_dict(), weights)  # the tiny config's network has 8 channels
    config = rewrite(tiny_config(tmp_path, epochs=1),
                     lambda c: c.update(finetune_from=str(weights)))
    assert train.main(["--config", str(config), *BASE_ARGS,
                       *(["--dry-run"] if dry_run else [])]) == 2
    message = one_error(caplog, capsys)
    assert message.startswith(f"error: finetune_from {weights}: its parameters do not fit the "
                              f"configured network, SmallNet with 8 output channels")
    assert "SmallNet with 16 output channels" in message
    assert not (tmp_path / "saved").exists()
