"""SmallNet: parameter counts, the released checkpoints' names and shapes, initialisation."""
import pytest
import torch

import model
from model.registry import NETWORKS

PARAMETER_COUNTS = {3: 334_875, 16: 338_216, 32: 342_328, 64: 350_552}


@pytest.mark.parametrize("channels,expected", sorted(PARAMETER_COUNTS.items()))
def test_smallnet_parameter_count(channels, expected):
    net = model.SmallNet(num_output_channels=channels)
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == expected


@pytest.mark.parametrize("channels", sorted(PARAMETER_COUNTS))
def test_smallnet_names_and_shapes_match_released_checkpoints(channels, released_state_dict_keys):
    reference = released_state_dict_keys[f"SmallNet(num_output_channels={channels})"]
    ours = {k: list(v.shape) for k, v in model.SmallNet(channels).state_dict().items()}
    assert ours == reference


def test_smallnet_init_is_xavier_normal_with_zero_bias():
    torch.manual_seed(0)
    net = model.SmallNet(64)
    weight = net.conv5[0].weight  # (256, 80, 3, 3)
    fan_in, fan_out = 80 * 9, 256 * 9
    expected_std = (2.0 / (fan_in + fan_out)) ** 0.5
    assert abs(weight.std().item() - expected_std) / expected_std < 0.05
    assert all(m.bias.abs().max() == 0 for m in net.modules() if isinstance(m, torch.nn.Conv2d))


# name -> (constructor arguments, input side, expected descriptor shape (C, h, w), the
# forward's keyword arguments for the gradient check: ContrastResNet trains through its
# MoCo embedding, ContrastProjector only its projector)
NETWORK_CASES = {
    "SmallNet": (dict(num_output_channels=5), 40, (5, 20, 20), None),
    "HourglassNet": (dict(num_output_channels=5), 40, (5, 20, 20), None),
    "ContrastResNet": (dict(depth=18, image_size=64, hypercolumn_size=16), 64, (960, 16, 16),
                       dict(output="embedding")),
    "ContrastProjector": (dict(depth=18, image_size=64, hypercolumn_size=8,
                               projection_dim=5), 64, (5, 8, 8), None),
}


def test_every_registered_network_has_a_case():
    assert sorted(NETWORK_CASES) == sorted(NETWORKS)


@pytest.mark.parametrize("name", sorted(NETWORK_CASES))
def test_every_network_shape_finite_and_gradients(name):
    arguments, side, shape, train_call = NETWORK_CASES[name]
    torch.manual_seed(0)
    net = NETWORKS.get(name)(**arguments)
    images = torch.randn(2, 3, side, side)
    (out,) = net(images)
    assert out.shape == (2, *shape) and net.num_output_channels == shape[0]
    assert torch.isfinite(out).all()
    trained = net(images, **train_call) if train_call else out
    trained.square().mean().backward()
    for pname, param in net.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, pname
    assert any(p.requires_grad for p in net.parameters())
