"""HourglassNet: the released models' names and shapes, its wiring, options, and a real run."""
import json

import pytest
import torch
import torch.nn.functional as F

import model
import train
from model.hourglass import PreActBottleneck
from model.registry import NETWORKS

PARAMETERS_64D = 12_609_472
SMALL = dict(planes_conv1=16, planes_block=16, planes_hg=16)  # fast variants for behaviour


@pytest.fixture(scope="module")
def hourglass():
    torch.manual_seed(0)
    return model.HourglassNet(num_output_channels=64)


def trainable(network) -> int:
    return sum(p.numel() for p in network.parameters() if p.requires_grad)


def test_registered_and_exposed():
    assert NETWORKS.get("HourglassNet") is model.HourglassNet


def test_parameter_count(hourglass):
    assert trainable(hourglass) == PARAMETERS_64D


def test_names_shapes_and_order_match_released_checkpoints(hourglass, released_state_dict_keys):
    reference = released_state_dict_keys["HourglassNet(num_output_channels=64)"]
    ours = [(k, list(v.shape)) for k, v in hourglass.state_dict().items()]
    assert ours == list(reference.items())
    trainable_in_reference = sum(
        torch.Size(shape).numel() for key, shape in reference.items()
        if not key.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert trainable_in_reference == PARAMETERS_64D


def test_output_is_half_resolution_with_the_configured_channels():
    net = model.HourglassNet(num_output_channels=7, **SMALL).eval()
    with torch.no_grad():
        (out,) = net(torch.randn(1, 3, 64, 96))
    assert out.shape == (1, 7, 32, 48)


def test_pool_takes_the_skip_branch_output(hourglass):
    """The released models pool the output of layer{n}_1, not the level's input."""
    captured = {}
    level = hourglass.hg[0]
    hooks = [level.layer4_1.register_forward_hook(lambda m, i, o: captured.update(skip=o)),
             level.layer4_2.register_forward_hook(lambda m, i, o: captured.update(low_in=i[0]))]
    try:
        with torch.no_grad():
            hourglass.eval()(torch.randn(1, 3, 32, 32))
    finally:
        for hook in hooks:
            hook.remove()
    assert captured["low_in"].shape == (1, 256, 8, 8)
    assert torch.equal(captured["low_in"], F.max_pool2d(captured["skip"], 2, 2))


def test_bottleneck_adds_the_input_or_its_projection():
    torch.manual_seed(0)
    x = torch.randn(2, 256, 5, 5)
    unit = PreActBottleneck(256, 128).eval()
    torch.nn.init.zeros_(unit.conv3.weight)
    torch.nn.init.zeros_(unit.conv3.bias)
    assert torch.equal(unit(x), x)  # residual branch silenced: identity shortcut
    x = torch.randn(2, 64, 5, 5)
    unit = PreActBottleneck(64, 64).eval()  # 64 -> 128 needs a projection
    torch.nn.init.zeros_(unit.conv3.weight)
    torch.nn.init.zeros_(unit.conv3.bias)
    weight = unit.downsample.weight[:, :, 0, 0]  # (128, 64)
    expected = torch.einsum("oc,bchw->bohw", weight, x) + unit.downsample.bias.view(1, -1, 1, 1)
    assert torch.allclose(unit(x), expected, atol=1e-5)


def test_group_norm_replaces_every_batch_norm():
    net = model.HourglassNet(num_output_channels=64, use_group_norm=True)
    norms = [m for m in net.modules() if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm))]
    assert norms and all(isinstance(m, torch.nn.GroupNorm) and m.num_groups == 16 for m in norms)
    assert trainable(net) == PARAMETERS_64D  # same affine parameters, no running statistics
    # per-sample normalisation: a sample's output does not depend on the rest of the batch
    net = model.HourglassNet(num_output_channels=8, use_group_norm=True, planes_conv1=16,
                             planes_block=16, planes_hg=32)  # >= 2 channels a group at 1x1
    torch.manual_seed(0)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        alone = net(images[:1])[0]
        together = net(images)[0][:1]
    assert torch.allclose(alone, together, atol=1e-3)  # batch norm would differ by ~1


def test_scaled_norm_output_has_the_learned_norm():
    torch.manual_seed(0)
    net = model.HourglassNet(num_output_channels=16, scaled_norm_output=True, **SMALL)
    (out,) = net(torch.randn(2, 3, 32, 32))
    assert torch.allclose(out.norm(dim=1), torch.full((2, 16, 16), 20.0), atol=1e-4)
    out.sum().backward()
    assert net.normscale.grad is not None
    with torch.no_grad():
        net.normscale.fill_(3.0)
        assert torch.allclose(net.eval()(torch.randn(1, 3, 32, 32))[0].norm(dim=1),
                              torch.full((1, 16, 16), 3.0), atol=1e-4)


def test_original_normscale_checkpoint_loads_strictly():
    """The original registers the learned scale as ``normscale``, 0-dim (torch.tensor(20.0))."""
    torch.manual_seed(0)
    state = model.HourglassNet(num_output_channels=8, **SMALL).state_dict()
    state["normscale"] = torch.tensor(7.25)  # as the original's checkpoints store it
    net = model.HourglassNet(num_output_channels=8, scaled_norm_output=True, **SMALL)
    assert net.state_dict()["normscale"].shape == torch.Size([])
    assert net.state_dict()["normscale"].item() == 20.0
    assert "output_scale" not in net.state_dict()
    net.load_state_dict(state, strict=True)
    with torch.no_grad():
        (out,) = net.eval()(torch.randn(2, 3, 32, 32))
    norms = out.double().norm(dim=1)  # (2, 16, 16): one descriptor norm per pixel
    torch.testing.assert_close(norms, torch.full((2, 16, 16), 7.25, dtype=torch.float64),
                               rtol=1e-6, atol=0)


def test_only_one_stack_is_supported():
    with pytest.raises(ValueError, match="num_stacks=1"):
        model.HourglassNet(num_stacks=2)


def test_trains_on_synthetic_faces_and_runs_the_matching(tmp_path, tiny_config, run_folder):
    config_path = tiny_config(tmp_path, epochs=1)
    config = json.loads(config_path.read_text())
    config["arch"] = {"type": "HourglassNet", "args": {"num_output_channels": 16, **SMALL}}
    config["batch_size"] = 2
    config["loss_args"] = {"normalize_vectors": True}
    config["dataset"]["args"].update(imwidth=32, crop=4)  # 24 px: levels of 12, 6, 3, 2
    config_path.write_text(json.dumps(config))
    torch.manual_seed(0)
    initial = model.HourglassNet(num_output_channels=16, **SMALL).state_dict()  # as train.py
    assert train.main(["--config", str(config_path), "--device", "cpu", "--disable_workers",
                       "--mini_train"]) == 0
    folder = run_folder(tmp_path)
    state = torch.load(folder / "checkpoint-epoch1.pth", weights_only=True)
    assert state["arch"] == "HourglassNet"
    assert not torch.equal(state["state_dict"]["conv1.weight"], initial["conv1.weight"])
    matching = json.loads((folder / "matching.json").read_text())
    assert matching["num_image_pairs"] == 3  # the six MAFL-test images of the tiny set
    assert all(0 <= matching[key] < 100 for key in ("same_identity", "different_identity"))
