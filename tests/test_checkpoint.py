import pytest
import torch

from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, strip_prefix


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


def test_strip_module_prefix():
    stripped = strip_prefix({"module.conv.weight": 1, "head.bias": 2})
    assert stripped == {"conv.weight": 1, "head.bias": 2}
