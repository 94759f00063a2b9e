import collections
from pathlib import PosixPath

import numpy as np
import pytest
import torch

from model.smallnet import SmallNet
from utils.checkpoint import (CheckpointError, check_plain_data, load_checkpoint,
                              load_weights_into, save_checkpoint, select_state_dict)


def test_round_trip_with_weights_only(tmp_path):
    state = {"state_dict": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 3,
             "config": {"trainer": {"epochs": 4}, "metrics": []}, "rng": torch.random.get_rng_state()}
    path = save_checkpoint(state, tmp_path / "sub" / "checkpoint-epoch3.pth")
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["state_dict"]["w"], state["state_dict"]["w"])
    assert loaded["config"] == state["config"] and loaded["epoch"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint-epoch3.pth"]  # no temp left


def test_interrupted_write_keeps_previous_file(tmp_path, monkeypatch):
    path = save_checkpoint({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "c.pth")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"state_dict": {"w": torch.ones(2)}}, path)
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.zeros(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pth"]


def test_truncated_and_foreign_files_fail_clearly(tmp_path):
    good = save_checkpoint({"state_dict": {"w": torch.zeros(100)}}, tmp_path / "good.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated.pth is not a loadable checkpoint"):
        load_checkpoint(truncated)
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pth"):
        load_checkpoint(text)
    with pytest.raises(CheckpointError, match="missing.pth not found"):
        load_checkpoint(tmp_path / "missing.pth")


class _Exploit:
    def __reduce__(self):
        return (print, ("side effect",))


def test_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "config": _Exploit()}, path)
    with pytest.raises(CheckpointError, match="evil.pth"):
        load_checkpoint(path)
    assert "side effect" not in capsys.readouterr().out


def test_only_plain_data_is_saved(tmp_path):
    check_plain_data({"state_dict": {"w": torch.nn.Parameter(torch.zeros(2))},
                      "size": torch.Size([2]),
                      "milestones": collections.Counter([3, 5]), "dtype": torch.float32,
                      "rng": [torch.zeros(3, dtype=torch.uint8)], "best": float("inf")})
    with pytest.raises(TypeError, match=r"checkpoint\['config'\]\['best'\] is a numpy.float64"):
        save_checkpoint({"state_dict": {}, "config": {"best": np.float64(1.0)}}, tmp_path / "c.pth")
    with pytest.raises(TypeError, match=r"checkpoint\['config'\] is a pathlib.PosixPath"):
        check_plain_data({"config": PosixPath("a.json")})
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("checkpoint_keys,prefix", [
    (["conv.weight", "head.bias"], ""),
    (["module.conv.weight", "module.head.bias"], ""),  # `module` segments are dropped first
    (["0.wrapped_module.conv.weight", "0.wrapped_module.head.bias", "1.reg.weight"],
     "0.wrapped_module."),
    (["0.wrapped_module.module.conv.weight", "0.wrapped_module.module.head.bias"],
     "0.wrapped_module."),
])
def test_the_view_that_fits_the_network_is_selected(checkpoint_keys, prefix):
    state_dict = {key: torch.tensor(float(i)) for i, key in enumerate(checkpoint_keys)}
    chosen, view = select_state_dict(["conv.weight", "head.bias"], state_dict)
    assert chosen == prefix
    assert view == {"conv.weight": torch.tensor(0.0), "head.bias": torch.tensor(1.0)}


def test_a_failed_load_leaves_the_network_untouched(tmp_path):
    torch.manual_seed(0)
    path = save_checkpoint({"state_dict": SmallNet(8).state_dict()}, tmp_path / "c8.pth")
    network = SmallNet(4)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    with pytest.raises(CheckpointError, match="looks like SmallNet with 8 output channels"):
        load_weights_into(network, path, "cpu")
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
