"""Training under ``torchrun`` (Gloo on the CPU): shards, one set of checkpoints, exact
resumption, a regressor run; the sampler checked against its documented arithmetic."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import write_tiny_config
from data_loader.loaders import make_loader
from test_keypoint_training import regressor_config
from utils.distributed import ProcessGroup, per_process_batch, process_seed, unwrapped
from utils.registry import ConfigError

REPO = Path(__file__).resolve().parents[1]
CPU_ARGS = ["--device", "cpu", "--disable_workers"]


def torchrun(tmp_path, *args):
    """``torchrun --standalone --nproc_per_node=2 train.py ARGS`` in the repository;
    -> the finished process (output captured)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "train.py", *args, *CPU_ARGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=240)


def shard(rank: int, epoch: int, count: int = 11, seed: int = 5):
    loader = make_loader(list(range(count)), 4, True, torch.device("cpu"), 0,
                         group=ProcessGroup(rank=rank, world_size=2), seed=seed)
    loader.sampler.set_epoch(epoch)
    return [batch.tolist() for batch in loader]


def test_each_process_reads_its_own_shard_of_every_epoch():
    for epoch in (0, 1):
        # DistributedSampler's stated arithmetic: a permutation drawn from seed + epoch,
        # cut to a multiple of the processes (drop_last), rank r takes items r, r + 2, ...
        order = torch.randperm(11, generator=torch.Generator().manual_seed(5 + epoch)).tolist()
        order = order[:10]
        for rank in (0, 1):
            mine = order[rank::2]
            assert shard(rank, epoch) == [mine[0:2], mine[2:4]]  # global batch 4 -> 2 each
    first, second = shard(0, 0) + shard(1, 0), shard(0, 1) + shard(1, 1)
    assert not set(sum(shard(0, 0), [])) & set(sum(shard(1, 0), []))
    assert first != second  # the epoch reshuffles


def test_the_global_batch_must_divide_over_the_processes():
    assert per_process_batch(32, ProcessGroup(rank=1, world_size=4)) == 8
    with pytest.raises(ConfigError, match="batch_size 30 .* 4 processes; use a multiple of 4"):
        per_process_batch(30, ProcessGroup(rank=0, world_size=4))


def test_augmentation_streams_differ_by_process_and_epoch():
    seeds = {process_seed(0, ProcessGroup(rank=r, world_size=2), e) for r in (0, 1) for e in (1, 2)}
    assert len(seeds) == 4
    assert process_seed(0, ProcessGroup(rank=1, world_size=2), 2) == \
        process_seed(0, ProcessGroup(rank=1, world_size=4), 2)  # a rank's stream, any world


def test_unwrapped_reaches_the_network_through_every_wrapper():
    network = torch.nn.Linear(2, 2)
    assert unwrapped(torch.nn.DataParallel(network)) is network
    assert unwrapped(network) is network


def checkpoint_weights(path):
    return torch.load(path, weights_only=False)["state_dict"]


def test_two_processes_train_checkpoint_once_and_resume_exactly(tmp_path):
    config = write_tiny_config(tmp_path, epochs=2)
    result = torchrun(tmp_path, "--config", str(config))
    assert result.returncode == 0, result.stderr[-2000:]
    (folder,) = (tmp_path / "saved" / "models" / "tiny-smallnet").iterdir()
    assert sorted(p.name for p in folder.glob("*.pth")) == ["checkpoint-epoch1.pth",
                                                            "checkpoint-epoch2.pth"]
    # only rank 0 logs: each checkpoint is announced once, the matching table once
    assert result.stderr.count("saved ") == 2 and result.stderr.count("Mean Pixel Error (same") == 1
    assert json.loads((folder / "provenance.json").read_text())["starts"][0]["processes"] == 2
    matching = json.loads((folder / "matching.json").read_text())
    straight = checkpoint_weights(folder / "checkpoint-epoch2.pth")
    (folder / "checkpoint-epoch2.pth").unlink()
    resumed = torchrun(tmp_path, "--resume", str(folder / "checkpoint-epoch1.pth"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    again = checkpoint_weights(folder / "checkpoint-epoch2.pth")
    assert all(torch.equal(straight[k], again[k]) for k in straight)
    assert json.loads((folder / "matching.json").read_text())["same_identity"] == \
        matching["same_identity"]
    assert len(list((tmp_path / "saved" / "models" / "tiny-smallnet").iterdir())) == 1


def test_two_processes_train_a_regressor(tmp_path):
    embedding = write_tiny_config(tmp_path, epochs=1)
    assert torchrun(tmp_path, "--config", str(embedding)).returncode == 0
    (embedding_dir,) = (tmp_path / "saved" / "models" / "tiny-smallnet").iterdir()
    config = regressor_config(tmp_path, tmp_path / "data" / "synthetic", embedding_dir, epochs=2)
    result = torchrun(tmp_path, "--config", str(config))
    assert result.returncode == 0, result.stderr[-2000:]
    (folder,) = (tmp_path / "saved" / "models" / "tiny-keypoints-regressor").iterdir()
    report = json.loads((folder / "keypoints.json").read_text())
    assert report["num_images"] == 6 and 0 < report["inter_ocular_error"] < 200
    first, last = (checkpoint_weights(folder / f"checkpoint-epoch{e}.pth") for e in (1, 2))
    head = [k for k in last if not k.startswith("0.")]
    assert head and any(not torch.equal(first[k], last[k]) for k in head)  # the head trained
    assert all(torch.equal(first[k], last[k]) for k in last if k.startswith("0."))  # frozen
