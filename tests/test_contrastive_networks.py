"""The contrastive landmark method's networks (SPEC-contrastive sections 1, 3, 5): ResNet
sizes and parameter counts, the hypercolumn, the MoCo head, the projector and its loss,
and its released checkpoints read through the safe loader."""
import argparse
import math
import os

import pytest
import torch

from model.hypercolumn import ContrastResNet
from model.projector import ContrastProjector, FeatureProjector, dense_correlation_loss_single
from model.registry import LOSSES, NETWORKS
from utils.checkpoint import CheckpointError, load_checkpoint, load_weights_into

# SPEC-contrastive section 1: trainable parameters with the MoCo head, and without it.
PARAMETER_COUNTS = [(18, 1.0, 11_242_176, 11_176_512), (50, 1.0, 23_770_304, 23_508_032),
                    (50, 0.5, 6_033_728, None)]
# SPEC-contrastive section 1: (side, channels) after conv1, the max pool, layer1..4 at 96 px.
SIZES_96 = {50: [(48, 64), (24, 64), (24, 256), (12, 512), (6, 1024), (3, 2048)],
            18: [(48, 64), (24, 64), (24, 64), (12, 128), (6, 256), (3, 512)]}


def _trainable(network):
    return sum(p.numel() for p in network.parameters() if p.requires_grad)


def _randomize_batch_norm(network, seed=5):
    """Non-default running statistics and affine parameters, so that loading them shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in network.state_dict().items():
            if name.endswith(("running_var", "bn1.weight", "bn2.weight")):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith(("running_mean", "bn1.bias", "bn2.bias")):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
    return network


def _stages_by_hand(encoder, images):
    """conv1, max pool, layer1..4 outputs, each module called in turn."""
    conv1 = encoder.relu(encoder.bn1(encoder.conv1(images)))
    outputs = [conv1, encoder.maxpool(conv1)]
    for layer in (encoder.layer1, encoder.layer2, encoder.layer3, encoder.layer4):
        outputs.append(layer(outputs[-1]))
    return outputs


def _bilinear_matrix(size_in, size_out):
    """(size_out, size_in) weights of 1-D linear resizing, align_corners=False: output i
    samples input position (i + 0.5) size_in / size_out - 0.5, clamped below at 0."""
    matrix = torch.zeros(size_out, size_in, dtype=torch.float64)
    for i in range(size_out):
        source = max((i + 0.5) * size_in / size_out - 0.5, 0.0)
        low = min(int(math.floor(source)), size_in - 1)
        high = min(low + 1, size_in - 1)
        matrix[i, low] += 1 - (source - low)
        matrix[i, high] += source - low
    return matrix


def _resize_by_hand(maps, size):
    """(B, C, h, w) -> (B, C, size, size) with the separable matrices above."""
    rows = _bilinear_matrix(maps.shape[2], size)
    cols = _bilinear_matrix(maps.shape[3], size)
    return torch.einsum("ih,bchw,jw->bcij", rows, maps.double(), cols).float()


@pytest.mark.parametrize("depth,width,with_head,backbone", PARAMETER_COUNTS)
def test_parameter_counts_are_the_specs(depth, width, with_head, backbone):
    network = NETWORKS.get("ContrastResNet")(depth=depth, width=width)
    assert _trainable(network) == with_head
    if backbone is not None:
        head = sum(p.numel() for p in network.encoder.fc.parameters())
        assert with_head - head == backbone


def test_initialization_is_the_specs():
    torch.manual_seed(0)
    encoder = ContrastResNet(depth=18).encoder
    for conv in (encoder.conv1, encoder.layer4[1].conv2, encoder.layer3[0].downsample[0]):
        out_channels, _, kernel_h, kernel_w = conv.weight.shape
        expected_std = math.sqrt(2.0 / (kernel_h * kernel_w * out_channels))
        assert abs(conv.weight.std().item() - expected_std) / expected_std < 0.05
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) and not m.bias.any()
               for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bound = 1 / math.sqrt(512)  # nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in))
    assert encoder.fc.weight.abs().max() <= bound and encoder.fc.weight.abs().max() > 0.9 * bound


@pytest.mark.parametrize("depth", [18, 50])
def test_feature_sizes_at_96_pixels(depth):
    encoder = ContrastResNet(depth=depth).encoder.eval()
    with torch.no_grad():
        outputs = _stages_by_hand(encoder, torch.randn(1, 3, 96, 96))
    assert [(o.shape[2], o.shape[1]) for o in outputs] == SIZES_96[depth]
    assert all(o.shape[2] == o.shape[3] for o in outputs)


@pytest.mark.parametrize("depth,width,layers,channels", [
    (18, 1.0, 4, 960), (50, 1.0, 4, 3840), (50, 0.5, 4, 1920), (18, 1.0, 1, 512),
    (50, 1.0, 1, 2048)])
def test_hypercolumn_channels(depth, width, layers, channels):
    network = ContrastResNet(depth=depth, width=width, hypercolumn_size=4,
                             hypercolumn_layers=layers).eval()
    with torch.no_grad():
        (hypercolumn,) = network(torch.randn(1, 3, 32, 32))
    assert hypercolumn.shape == (1, channels, 4, 4) and network.num_output_channels == channels


def test_hypercolumn_is_the_stages_deepest_first_resized_without_aligned_corners():
    torch.manual_seed(0)
    network = ContrastResNet(depth=18, width=0.25, hypercolumn_size=24)
    network = _randomize_batch_norm(network).eval()
    images = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        (hypercolumn,) = network(images)
        stages = _stages_by_hand(network.encoder, images)
    expected = torch.cat([_resize_by_hand(stages[i], 24) for i in (5, 4, 3, 2)], dim=1)
    assert hypercolumn.shape == (2, 128 + 64 + 32 + 16, 24, 24)
    torch.testing.assert_close(hypercolumn, expected, rtol=1e-5, atol=1e-5)


def test_normalized_layers_and_the_last_layer_alone():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 64)
    normalized = ContrastResNet(depth=18, width=0.25, hypercolumn_size=12,
                                normalize_layers=True).eval()
    last = ContrastResNet(depth=18, width=0.25, hypercolumn_size=12, hypercolumn_layers=1).eval()
    last.load_state_dict(normalized.state_dict())
    with torch.no_grad():
        (unit_blocks,) = normalized(images)
        (conv5,) = last(images)
        stages = _stages_by_hand(normalized.encoder, images)
    blocks = [_resize_by_hand(stages[i], 12) for i in (5, 4, 3, 2)]
    expected = torch.cat([b / b.norm(dim=1, keepdim=True) for b in blocks], dim=1)
    torch.testing.assert_close(unit_blocks, expected, rtol=1e-5, atol=1e-5)
    assert conv5.shape == (2, 128, 12, 12)
    torch.testing.assert_close(conv5, blocks[0], rtol=1e-5, atol=1e-5)


def test_embedding_is_the_moco_head_without_the_hypercolumn():
    torch.manual_seed(0)
    network = _randomize_batch_norm(ContrastResNet(depth=18, width=0.25)).eval()
    images = torch.randn(3, 3, 96, 96)

    def no_hypercolumn(_):
        raise AssertionError("the embedding computed the hypercolumn")

    network.hypercolumn = no_hypercolumn
    with torch.no_grad():
        embedding = network(images, output="embedding")
        conv5 = _stages_by_hand(network.encoder, images)[-1]  # (3, 128, 3, 3)
    fc = network.encoder.fc
    logits = conv5.mean(dim=(2, 3)) @ fc.weight.T + fc.bias  # 3x3 average, fc
    expected = logits / logits.norm(dim=1, keepdim=True)
    assert embedding.shape == (3, 128)
    torch.testing.assert_close(embedding, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(3))


def test_embedding_reaches_every_parameter_and_refuses_another_size():
    network = ContrastResNet(depth=18, width=0.25, image_size=32)
    network(torch.randn(2, 3, 32, 32), output="embedding").sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in network.parameters())
    with pytest.raises(ValueError, match="feed images of the image_size"):
        network(torch.randn(2, 3, 64, 64), output="embedding")
    with pytest.raises(ValueError, match="output must be one of descriptors, embedding"):
        network(torch.randn(2, 3, 32, 32), output="logits")


def test_projector_softmax_is_spatial_per_channel():
    torch.manual_seed(0)
    projector = FeatureProjector(6, 4, softargmax_mul=7.0)
    raw = FeatureProjector(6, 4, softargmax_mul=0.0)
    raw.load_state_dict(projector.state_dict())
    hypercolumn = torch.randn(2, 6, 5, 5)
    conv = torch.einsum("dc,bchw->bdhw", projector.reg_conv.weight[:, :, 0, 0], hypercolumn)
    conv = conv + projector.reg_conv.bias[None, :, None, None]
    torch.testing.assert_close(raw(hypercolumn), conv, rtol=1e-5, atol=1e-6)
    maps = projector(hypercolumn)
    exp = torch.exp(7.0 * conv)
    torch.testing.assert_close(maps, exp / exp.sum(dim=(2, 3), keepdim=True))
    torch.testing.assert_close(maps.sum(dim=(2, 3)), torch.ones(2, 4))


def test_projector_network_trains_only_the_projector():
    network = NETWORKS.get("ContrastProjector")(depth=18, hypercolumn_size=6, projection_dim=8,
                                                normalize_output=True)
    assert _trainable(network) == 960 * 8 + 8
    network.train()
    assert not network.backbone.wrapped_module.training and network.projector.training
    (projected,) = network(torch.randn(2, 3, 32, 32))
    assert projected.shape == (2, 8, 6, 6)
    torch.testing.assert_close(projected.norm(dim=1), torch.ones(2, 6, 6))
    projected.sum().backward()
    assert all(p.grad is None for p in network.backbone.parameters())
    assert network.projector.reg_conv.weight.grad is not None


def _loss_by_loops(maps, temperature, power, image_size):
    """SPEC-contrastive section 3 per image, cell by cell, in float64."""
    batch, _, size, _ = maps.shape
    stride = image_size // size
    total = 0.0
    for b in range(batch):
        vectors = maps[b].double().flatten(1).T  # (N, D)
        vectors = vectors / vectors.norm(dim=1, keepdim=True)
        cells = [(stride * (n % size), stride * (n // size)) for n in range(size * size)]
        for u, (xu, yu) in enumerate(cells):
            logits = torch.stack([temperature * vectors[u] @ vectors[v]
                                  for v in range(len(cells))])
            weights = torch.softmax(logits, dim=0)
            for v, (xv, yv) in enumerate(cells):
                total = total + math.hypot(xu - xv, yu - yv) ** power * weights[v]
    return total / (size * size * batch)


def test_projector_loss_against_a_loop_per_image_and_cell():
    torch.manual_seed(0)
    maps = torch.rand(2, 5, 5, 5, requires_grad=True)
    loss = LOSSES.get("dense_correlation_loss_single")([maps], {}, temperature=8.0,
                                                       image_size=22)  # stride 22 // 5 = 4
    loss.backward()
    grad = maps.grad.clone()
    maps.grad = None
    expected = _loss_by_loops(maps, 8.0, 0.5, 22)
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(grad, maps.grad, rtol=1e-4, atol=1e-6)


def test_projector_loss_refuses_maps_that_are_not_square():
    with pytest.raises(ValueError, match=r"square \(B, D, S, S\) maps"):
        dense_correlation_loss_single([torch.rand(2, 4, 5, 6)], {})


def _moco_checkpoint(network, ema, path, opt):
    """The released MoCo layout (SPEC-contrastive section 2), saved with torch.save."""
    state = {f"encoder.module.{k}": v for k, v in network.state_dict().items()}
    optimizer = torch.optim.SGD(network.parameters(), lr=0.03, momentum=0.9)
    torch.save({"opt": opt, "model": state,
                "model_ema": {f"encoder.module.{k}": v for k, v in ema.state_dict().items()},
                "contrast": {"params": torch.tensor([-1.0, 0.07]), "memory": torch.randn(16, 128)},
                "optimizer": optimizer.state_dict(), "epoch": 800}, path)
    return path


def _options():
    return argparse.Namespace(model="resnet18", feat_dim=128, nce_t=0.07, batch_size=256,
                              model_folder="/runs/moco", start_epoch=1, layer=4)


def test_a_released_moco_checkpoint_loads_the_query_encoder(tmp_path):
    torch.manual_seed(0)
    query = _randomize_batch_norm(ContrastResNet(18, 0.25, hypercolumn_size=6), seed=1)
    ema = _randomize_batch_norm(ContrastResNet(18, 0.25), seed=2)
    path = _moco_checkpoint(query, ema, tmp_path / "ckpt_epoch_800.pth", _options())
    fresh = ContrastResNet(18, 0.25, hypercolumn_size=6)
    state = load_weights_into(fresh, path, "cpu")
    assert state["epoch"] == 800 and state["released"]
    images = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(images)[0], query.eval()(images)[0])
        assert torch.equal(fresh(images, output="embedding"), query(images, output="embedding"))
    for key, value in query.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_a_released_projector_checkpoint_loads_into_the_projector(tmp_path):
    torch.manual_seed(0)
    trained = ContrastProjector(18, 0.25, hypercolumn_size=6, projection_dim=8)
    _randomize_batch_norm(trained.backbone.wrapped_module, seed=3)
    moco = _moco_checkpoint(trained.backbone.wrapped_module, ContrastResNet(18, 0.25),
                            tmp_path / "moco.pth", _options())
    projector_path = tmp_path / "8d.pth"
    torch.save({"opt": _options(), "epoch": 10, "val_error": [2.1, 3.4], "test_error": [2.2, 3.5],
                "feat_disiller": {f"module.{k}": v
                                  for k, v in trained.projector.state_dict().items()}},
               projector_path)
    fresh = ContrastProjector(18, 0.25, hypercolumn_size=6, projection_dim=8)
    load_weights_into(fresh.backbone.wrapped_module, moco, "cpu")
    assert load_weights_into(fresh.projector, projector_path, "cpu")["epoch"] == 10
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(images)[0], trained.eval()(images)[0])
    with pytest.raises(CheckpointError, match="2 unexpected"):  # never a silent non-load
        load_weights_into(ContrastResNet(18, 0.25), projector_path, "cpu")


class _RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_moco_checkpoint_whose_options_run_code_is_refused(tmp_path):
    marker = tmp_path / "marker"
    options = argparse.Namespace(model="resnet18", hook=_RunsAShellCommand(marker))
    path = _moco_checkpoint(ContrastResNet(18, 0.25), ContrastResNet(18, 0.25),
                            tmp_path / "evil.pth", options)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message
    assert "evil.pth is refused: the pickle asks to call posix.system" in message
    assert not marker.exists()
