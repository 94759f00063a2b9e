"""A small network with MoCo's interface, and the code each process of the two-process
ShuffleBN test runs (tests/test_moco.py); kept apart from the test module so that the
spawned processes import only this."""
import copy

import torch
import torch.distributed as dist
from torch import nn

from trainer.moco import shuffled_keys_across_processes


class TinyContrastNet(nn.Module):
    """A small network with the interface MoCo needs: ``forward(x)`` -> [dense descriptors
    (B, C, H/2, W/2)], ``forward(x, output="embedding")`` -> (B, D) of unit length."""

    def __init__(self, embedding_dim: int = 8, descriptor_dim: int = 6):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, descriptor_dim, 3, padding=1, bias=False),
            nn.BatchNorm2d(descriptor_dim), nn.ReLU())
        self.fc = nn.Linear(descriptor_dim, embedding_dim)

    def forward(self, images, output="descriptors"):
        dense = self.features(images)
        if output == "embedding":
            vector = self.fc(dense.mean(dim=(2, 3)))
            return vector / vector.norm(dim=1, keepdim=True)
        return [dense]


def replica(network: nn.Module, batchnorm_train: bool = True) -> nn.Module:
    """An independent copy of ``network``: eval mode, BatchNorm in training mode."""
    copied = copy.deepcopy(network).eval()
    for module in copied.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.train(batchnorm_train)
    return copied


def shuffle_worker(rank, init_file, images, permutations, key_state, results):
    """Process ``rank`` of 2 (Gloo, rendezvous through ``init_file``): a key encoder with
    ``key_state`` encodes its 3 of the 6 ``images`` with its row of ``permutations`` (2, 6)
    by ``shuffled_keys_across_processes``; its keys and buffers go to ``results[rank]``."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        key = TinyContrastNet()
        key.load_state_dict(key_state)
        key = replica(key)
        mine, everyone = shuffled_keys_across_processes(
            key, images[3 * rank:3 * rank + 3], permutations[rank].clone())
        torch.save({"mine": mine, "everyone": everyone, "buffers": dict(key.named_buffers())},
                   results[rank])
    finally:
        dist.destroy_process_group()
