"""IntermediateKeypointPredictor against plain formulas, and the released checkpoint layout."""
import math

import pytest
import torch
from torch import nn

from model import IntermediateKeypointPredictor, SmallNet
from model.frozen_embedding import FrozenEmbedding, keypoint_regression_model
from model.keypoint_predictor import soft_argmax

REGRESSOR_ENTRY = ("regressor checkpoint: Sequential(embedding SmallNet-64d, "
                   "IntermediateKeypointPredictor(64, 5 points, 50 intermediate))")


def naive_soft_argmax(score_map: torch.Tensor, multiplier: float):
    """One (H, W) map -> (x, y): softmax over all positions, then the expected pixel
    position mapped linearly so that pixel 0 is -1 and the last pixel is 1."""
    height, width = score_map.shape
    scores = [multiplier * score_map[i, j].item() for i in range(height) for j in range(width)]
    top = max(scores)
    weights = [math.exp(s - top) for s in scores]
    total = sum(weights)
    x = y = 0.0
    for index, weight in enumerate(weights):
        row, col = divmod(index, width)
        x += weight / total * (-1 + 2 * col / (width - 1))
        y += weight / total * (-1 + 2 * row / (height - 1))
    return x, y


def test_virtual_points_equal_a_naive_soft_argmax_per_map():
    torch.manual_seed(0)
    predictor = IntermediateKeypointPredictor(4, num_annotated_points=2, num_intermediate_points=3,
                                              softargmax_mul=7.0).double()
    feats = torch.randn(2, 4, 5, 6, dtype=torch.float64)  # H != W catches an x/y swap
    _, intermediate = predictor(feats)
    maps = predictor.inner_conv(feats)  # (2, 6, 5, 6)
    assert intermediate.shape == (2, 2, 3, 2)
    for b in range(2):
        for point in range(2):
            for virtual in range(3):
                x, y = naive_soft_argmax(maps[b, point * 3 + virtual].detach(), 7.0)
                assert intermediate[b, point, virtual, 0].item() == pytest.approx(x, abs=1e-12)
                assert intermediate[b, point, virtual, 1].item() == pytest.approx(y, abs=1e-12)


def test_soft_argmax_of_a_sharp_peak_is_its_normalized_position():
    maps = torch.zeros(1, 1, 5, 9)
    maps[0, 0, 4, 2] = 1.0  # row 4 of 5 -> y = 1; column 2 of 9 -> x = -0.5
    assert soft_argmax(maps, 1000.0)[0, 0].tolist() == pytest.approx([-0.5, 1.0], abs=1e-6)


def test_grouped_regression_equals_independent_linear_maps():
    torch.manual_seed(1)
    num_points, num_virtual = 3, 4
    predictor = IntermediateKeypointPredictor(8, num_points, num_virtual, softargmax_mul=100.0)
    pred, intermediate = predictor(torch.randn(5, 8, 6, 6))
    weight = predictor.reg_conv.weight[:, :, 0, 0]  # (2 nA, 2 nI)
    for point in range(num_points):
        linear = nn.Linear(2 * num_virtual, 2, bias=False)
        linear.weight.data.copy_(weight[2 * point:2 * point + 2])
        # inputs x1, y1, x2, y2, ... of this point's own virtual keypoints only
        expected = linear(intermediate[:, point].reshape(5, -1))
        torch.testing.assert_close(pred[:, point], expected)


def test_initialisation_follows_the_spec():
    torch.manual_seed(2)
    predictor = IntermediateKeypointPredictor(64, 5, 50)
    inner = predictor.inner_conv.weight
    assert predictor.inner_conv.bias is None and predictor.reg_conv.bias is None
    assert abs(inner.mean().item()) < 0.02 and inner.std().item() == pytest.approx(1.0, abs=0.03)
    bound = 1 / math.sqrt(100)  # nn.Linear(100, 2): uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))
    reg = predictor.reg_conv.weight
    assert reg.abs().max().item() <= bound and reg.abs().max().item() > 0.9 * bound
    assert predictor.softargmax_mul == 50.0  # constructor default; configs pass 100


def regression_model(upsample=False):
    return keypoint_regression_model(SmallNet(num_output_channels=64),
                                     IntermediateKeypointPredictor(64, 5, 50, 100.0), upsample)


def test_state_dict_layout_equals_the_released_regressor(released_state_dict_keys):
    reference = released_state_dict_keys[REGRESSOR_ENTRY]
    ours = {k: list(v.shape) for k, v in regression_model().state_dict().items()}
    unused = {k: v for k, v in reference.items()
              if k.startswith("1.descriptors") or k.startswith("1.linear.")}
    assert sorted(unused) == ["1.descriptors"] + [f"1.linear.{i}.weight" for i in range(5)]
    assert ours == {k: v for k, v in reference.items() if k not in unused}


@pytest.mark.parametrize("upsample", [False, True])
def test_a_released_regressor_state_dict_loads_strictly(upsample, released_state_dict_keys):
    reference = released_state_dict_keys[REGRESSOR_ENTRY]
    prefix = "2." if upsample else "1."
    generator = torch.Generator().manual_seed(3)
    released = {}
    for key, shape in reference.items():
        key = prefix + key[2:] if key.startswith("1.") else key
        released[key] = (torch.tensor(7) if key.endswith("num_batches_tracked")
                         else torch.randn(shape, generator=generator))
    model = regression_model(upsample)
    model.load_state_dict(released)  # strict: the unused entries are accepted and dropped
    assert torch.equal(model[-1].reg_conv.weight, released[prefix + "reg_conv.weight"])
    assert torch.equal(model[0].wrapped_module.conv6.weight, released["0.wrapped_module.conv6.weight"])
    assert isinstance(model[1], nn.Upsample) == upsample


def test_frozen_embedding_stays_in_eval_mode_without_gradient():
    model = regression_model()
    model.train()
    embedding = model[0].wrapped_module
    assert model[0].training and not any(m.training for m in embedding.modules())
    assert not any(p.requires_grad for p in embedding.parameters())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["1.inner_conv.weight", "1.reg_conv.weight"]
    pred, _ = model(torch.randn(2, 3, 40, 40))
    pred.sum().backward()
    assert all(p.grad is None for p in embedding.parameters())
    assert model[1].inner_conv.weight.grad is not None


def test_upsampling_doubles_the_feature_map_before_the_regressor():
    model = regression_model(upsample=True).eval()
    images = torch.randn(1, 3, 40, 40)
    feats = model[0](images)  # (1, 64, 20, 20)
    expected = nn.functional.interpolate(feats, scale_factor=2, mode="bilinear", align_corners=False)
    maps = model[2].inner_conv(expected)
    _, intermediate = model(images)
    torch.testing.assert_close(intermediate.reshape(1, -1, 2), soft_argmax(maps, 100.0))
    assert isinstance(model[0], FrozenEmbedding)
