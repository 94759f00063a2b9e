"""MoCo (trainer/moco.py) against the formulas of SPEC-contrastive section 2 written out
here: InfoNCE, the EMA, the FIFO queue, BatchNorm per chunk with ShuffleBN (one process
and two Gloo processes), the key encoder's start, and a resumed run through train.py."""
import copy
import json
import math

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

import train
from model.hypercolumn import ContrastResNet
from tests.moco_network import TinyContrastNet, replica, shuffle_worker
from tests.run_helpers import BASE_ARGS
from trainer.method import METHODS
from trainer.method_interface import MethodContext
from trainer.moco import MoCo, enqueue, info_nce_loss
from utils.registry import ConfigError


def context(crop: int = 4) -> MethodContext:
    return MethodContext(train_set=None, valid_set=None, crop=crop, do_augmentations=True,
                         warper=None, loss_fn=None, loss_args={})


def loader_batch(size: int = 4, width: int = 32, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (size, 3, width, width), generator=generator, dtype=torch.uint8)
    return {"data": images, "index": torch.arange(size)}


def naive_info_nce(query, keys, queue, temperature) -> float:
    query, keys = query.detach(), keys.detach()
    total = 0.0
    for i in range(query.shape[0]):
        logits = [float(query[i] @ keys[i]) / temperature]
        logits += [float(query[i] @ queue[j]) / temperature for j in range(queue.shape[0])]
        total += -logits[0] + math.log(sum(math.exp(value) for value in logits))
    return total / query.shape[0]


def chunks_by_hand(network: nn.Module, images, bounds):
    """Each slice of ``bounds`` through its own replica (one GPU each); -> (embeddings,
    the buffers of the first replica, the one DataParallel keeps)."""
    replicas = [replica(network) for _ in bounds]
    with torch.no_grad():
        parts = [r(images[a:b], output="embedding") for r, (a, b) in zip(replicas, bounds)]
    return torch.cat(parts), dict(replicas[0].named_buffers())


def test_info_nce_is_the_formula():
    generator = torch.Generator().manual_seed(0)
    query = F.normalize(torch.randn(3, 4, generator=generator), dim=1).requires_grad_()
    keys = F.normalize(torch.randn(3, 4, generator=generator), dim=1).requires_grad_()
    queue = torch.randn(5, 4, generator=generator) * 0.2
    loss = info_nce_loss(query, keys, queue, 0.07)
    assert loss.item() == pytest.approx(naive_info_nce(query, keys, queue, 0.07), rel=1e-5)
    loss.backward()
    assert query.grad is not None and keys.grad is None  # no gradient into the keys


def test_enqueue_writes_rows_modulo_the_queue_and_wraps():
    queue = torch.arange(10.0).view(5, 2)
    keys = 100 + torch.arange(8.0).view(4, 2)
    new, pointer = enqueue(queue, 3, keys)
    # rows 3, 4, 0, 1 get keys 0..3; row 2 keeps its value; pointer (3 + 4) mod 5 = 2
    expected = torch.tensor([[104., 105.], [106., 107.], [4., 5.], [100., 101.], [102., 103.]])
    assert torch.equal(new, expected) and pointer == 2
    assert torch.equal(queue, torch.arange(10.0).view(5, 2))  # out of place


def test_the_queue_starts_uniform_and_unnormalized():
    torch.manual_seed(0)
    method = MoCo(context())
    bound = 1 / math.sqrt(128 / 3)  # 0.1531
    assert method.queue.shape == (4096, 128) and method.queue_pointer == 0
    assert -bound <= method.queue.min() < -0.99 * bound
    assert 0.99 * bound < method.queue.max() < bound
    assert abs(float(method.queue.mean())) < 1e-3
    norms = method.queue.norm(dim=1)  # s^2 / 3 per entry: squared norms of 1 on average
    assert abs(float(norms.mean()) - 1) < 0.01 and float(norms.std()) > 0.02  # not normalized
    torch.manual_seed(0)
    assert torch.equal(MoCo(context()).queue, method.queue)  # from the run's seed


def test_the_key_encoder_copies_parameters_not_buffers():
    torch.manual_seed(0)
    model = TinyContrastNet().train()
    model(torch.randn(6, 3, 24, 24), output="embedding")  # move the running statistics
    method = MoCo(context(), embedding_dim=8, queue_size=16)
    method.outputs(model, torch.randn(4, 3, 24, 24))
    key = method.key_encoder
    for (name, param), (_, key_param) in zip(model.named_parameters(), key.named_parameters()):
        assert torch.equal(param, key_param) and not key_param.requires_grad, name
    fresh = TinyContrastNet()
    for name, buffer in key.named_buffers():
        assert torch.equal(buffer, dict(fresh.named_buffers())[name]), name  # 0, 1, count 0
    assert not torch.equal(model.features[1].running_mean, key.features[1].running_mean)
    with torch.no_grad():
        model.fc.bias += 1
    assert not torch.equal(model.fc.bias, key.fc.bias)  # a copy, not the same tensors


def test_after_step_is_the_ema_of_the_parameters_only():
    torch.manual_seed(0)
    model = TinyContrastNet().train()
    method = MoCo(context(), embedding_dim=8, queue_size=16, momentum=0.9)
    method.outputs(model, torch.randn(4, 3, 24, 24))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param))
    old_key = {k: v.clone() for k, v in method.key_encoder.state_dict().items()}
    method.after_step(model)
    query = dict(model.named_parameters())
    for name, value in method.key_encoder.state_dict().items():
        if name in query:
            assert torch.equal(value, 0.9 * old_key[name] + (1 - 0.9) * query[name]), name
        else:
            assert torch.equal(value, old_key[name]), name  # buffers untouched


def test_per_chunk_batchnorm_with_shuffled_keys_and_queue():
    """One training batch on one process, bn_chunks 2: queries and (permuted) keys are
    encoded per chunk with the first chunk's running statistics kept; the loss is InfoNCE
    against the queue as it was; the keys then fill rows 8, 9, 0, 1."""
    torch.manual_seed(0)
    model = TinyContrastNet().train()
    method = MoCo(context(), embedding_dim=8, queue_size=10, bn_chunks=2)
    method.queue_pointer = 8
    inputs = method.views(loader_batch(), torch.device("cpu"), torch.Generator().manual_seed(1),
                          True)
    meta, permutation = inputs["meta"], inputs["meta"]["key_permutation"]
    assert sorted(permutation.tolist()) == [0, 1, 2, 3]
    model_before, queue_before = copy.deepcopy(model), method.queue.clone()
    query = method.outputs(model, inputs["data"])
    expected_query, query_buffers = chunks_by_hand(model_before, inputs["data"], [(0, 2), (2, 4)])
    assert torch.allclose(query, expected_query, atol=1e-6)
    for name, buffer in model.named_buffers():
        assert torch.allclose(buffer.float(), query_buffers[name].float(), atol=1e-6), name

    key_before = replica(method.key_encoder)
    loss = method.loss(query, meta)
    shuffled, key_buffers = chunks_by_hand(key_before, meta["key_images"][permutation],
                                           [(0, 2), (2, 4)])
    keys = torch.empty_like(shuffled)
    keys[permutation] = shuffled  # keys[i]: the key of image i
    assert loss.item() == pytest.approx(naive_info_nce(query, keys, queue_before, 0.07), rel=1e-5)
    for name, buffer in method.key_encoder.named_buffers():
        assert torch.allclose(buffer.float(), key_buffers[name].float(), atol=1e-6), name
    assert torch.allclose(method.queue[[8, 9, 0, 1]], keys, atol=1e-6)
    assert torch.equal(method.queue[2:8], queue_before[2:8]) and method.queue_pointer == 2
    loss.backward()  # the per-chunk forwards leave a usable graph


def test_validation_batches_change_no_state():
    torch.manual_seed(0)
    model = TinyContrastNet().train()
    method = MoCo(context(), embedding_dim=8, queue_size=10)
    method.outputs(model, torch.randn(4, 3, 24, 24))
    model.eval()
    before = copy.deepcopy(method.state_dict())
    key_in_eval_mode = replica(method.key_encoder, batchnorm_train=False)
    inputs = method.views(loader_batch(), torch.device("cpu"), torch.Generator().manual_seed(0),
                          False)
    assert "key_permutation" not in inputs["meta"]
    loss = method.loss(method.outputs(model, inputs["data"]), inputs["meta"])
    with torch.no_grad():
        expected_keys = key_in_eval_mode(inputs["meta"]["key_images"], output="embedding")
        query = model(inputs["data"], output="embedding")
    assert loss.item() == pytest.approx(naive_info_nce(query, expected_keys, before["queue"], 0.07),
                                        rel=1e-5)
    after = method.state_dict()
    assert after["queue_pointer"] == before["queue_pointer"]
    assert torch.equal(after["queue"], before["queue"])
    for name, value in before["key_encoder"].items():
        assert torch.equal(after["key_encoder"][name], value), name


def test_mistakes_are_config_errors():
    assert METHODS.get("MoCo") is MoCo
    with pytest.raises(ValueError, match="bn_chunks must be a positive integer"):
        MoCo(context(), bn_chunks=0)
    method = MoCo(context(), embedding_dim=16, queue_size=16)
    model = TinyContrastNet()
    with pytest.raises(ConfigError, match=r"embedding has shape \(4, 8\), expected \(B, 16\)"):
        method.loss(method.outputs(model, torch.randn(4, 3, 24, 24)), {})
    small = MoCo(context(), embedding_dim=8, queue_size=3)
    with pytest.raises(ConfigError, match="queue_size 3 is smaller than the global batch 4"):
        small.loss(small.outputs(model, torch.randn(4, 3, 24, 24)), {})
    with pytest.raises(ConfigError, match="forward\\(x, output=\"embedding\"\\)"):
        MoCo(context()).outputs(nn.Conv2d(3, 3, 1), torch.randn(1, 3, 4, 4))


def test_shuffle_across_two_processes_is_one_process_with_two_chunks(tmp_path):
    """Two Gloo processes with 3 key views each: rank 0's permutation of the 6 views is
    used, each process encodes 3 of them, and all get every key in rank order and rank
    0's running statistics: as one process encoding the permuted 6 in chunks of 3."""
    torch.manual_seed(0)
    network = TinyContrastNet()
    images = torch.randn(6, 3, 16, 16)
    permutations = torch.stack([torch.tensor([4, 0, 5, 2, 1, 3]), torch.arange(6)])
    results = [tmp_path / "rank0.pt", tmp_path / "rank1.pt"]
    mp.spawn(shuffle_worker, nprocs=2, args=(tmp_path / "init", images, permutations,
                                              network.state_dict(), results))
    shuffled, buffers = chunks_by_hand(network, images[permutations[0]], [(0, 3), (3, 6)])
    keys = torch.empty_like(shuffled)
    keys[permutations[0]] = shuffled
    for rank in (0, 1):
        got = torch.load(results[rank], weights_only=True)
        assert torch.allclose(got["everyone"], keys, atol=1e-6)
        assert torch.allclose(got["mine"], keys[3 * rank:3 * rank + 3], atol=1e-6)
        for name, value in buffers.items():
            assert torch.allclose(got["buffers"][name].float(), value.float(), atol=1e-6), name


def moco_config(tiny_config, tmp_path, epochs):
    path = tiny_config(tmp_path, epochs=epochs)
    config = json.loads(path.read_text())
    del config["warper"]  # MoCo makes its own views
    config.update(arch={"type": "tests.moco_network.TinyContrastNet", "args": {}},
                  method={"type": "MoCo", "args": {"queue_size": 10, "embedding_dim": 8,
                                                   "bn_chunks": 2, "momentum": 0.9}},
                  visualizations=[])
    path.write_text(json.dumps(config))
    return path


def test_a_resumed_run_continues_bit_for_bit(tmp_path, tiny_config):
    config = moco_config(tiny_config, tmp_path, epochs=2)
    assert train.main(["--config", str(config), *BASE_ARGS]) == 0
    (straight,) = sorted((tmp_path / "saved" / "models" / "tiny-smallnet").iterdir())
    state = torch.load(straight / "checkpoint-epoch2.pth", weights_only=True)
    method = state["method"]
    steps = 2 * 2  # 10 training images // batch 4 (last dropped), 2 epochs
    assert method["queue_pointer"] == steps * 4 % 10
    # running statistics from the first chunk only: one update per step, both encoders
    assert int(method["key_encoder"]["features.1.num_batches_tracked"]) == steps
    assert int(state["state_dict"]["features.1.num_batches_tracked"]) == steps
    assert not torch.equal(method["key_encoder"]["fc.weight"], state["state_dict"]["fc.weight"])

    shorter = json.loads(config.read_text())
    shorter["trainer"]["epochs"] = 1
    config.write_text(json.dumps(shorter))
    assert train.main(["--config", str(config), *BASE_ARGS]) == 0
    first_half = sorted((tmp_path / "saved" / "models" / "tiny-smallnet").iterdir())[-1]
    assert train.main(["--resume", str(first_half / "checkpoint-epoch1.pth"), *BASE_ARGS,
                       "--set", "trainer.epochs=2"]) == 0
    resumed = torch.load(first_half / "checkpoint-epoch2.pth", weights_only=True)
    for key, value in state["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    assert resumed["method"]["queue_pointer"] == method["queue_pointer"]
    assert torch.equal(resumed["method"]["queue"], method["queue"])
    for key, value in method["key_encoder"].items():
        assert torch.equal(resumed["method"]["key_encoder"][key], value), key


def test_one_step_with_the_contrast_resnet():
    """The registered network of the method (a quarter-width ResNet-18): 136-px images give 96-px
    views, a 128-d embedding, the InfoNCE of the hand-computed keys, and a step."""
    torch.manual_seed(0)
    model = ContrastResNet(depth=18, width=0.25).train()  # stages 16..128 channels
    method = MoCo(context(crop=20), queue_size=16, bn_chunks=2)
    inputs = method.views(loader_batch(size=2, width=136), torch.device("cpu"),
                          torch.Generator().manual_seed(0), True)
    assert inputs["data"].shape == inputs["meta"]["key_images"].shape == (2, 3, 96, 96)
    query = method.outputs(model, inputs["data"])
    assert query.shape == (2, 128)
    permutation, queue = inputs["meta"]["key_permutation"], method.queue.clone()
    shuffled, _ = chunks_by_hand(method.key_encoder, inputs["meta"]["key_images"][permutation],
                                 [(0, 1), (1, 2)])
    keys = torch.empty_like(shuffled)
    keys[permutation] = shuffled
    loss = method.loss(query, inputs["meta"])
    # logits of ~1 / 0.07 = 14: float32 resolves the loss to about 1e-6
    assert loss.item() == pytest.approx(naive_info_nce(query, keys, queue, 0.07), abs=1e-5)
    loss.backward()
    method.after_step(model)
