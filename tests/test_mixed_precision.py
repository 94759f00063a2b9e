"""Mixed precision (``"amp"``) and channels-last: losses in float32 under autocast, fp16's
gradient scaler checkpointed, bf16 and channels-last training close to float32's."""
import re

import pytest
import torch

import train
from data_loader.device_pipeline import build_pair_pipeline
from data_loader.warper import Warper
from model.registry import LOSSES
from model.smallnet import SmallNet
from utils.mixed_precision import MixedPrecision, amp_dtype, float32_outputs
from utils.registry import ConfigError

CPU_ARGS = ["--device", "cpu", "--disable_workers"]


def pair_batch(seed=0):
    images = (torch.rand(6, 3, 40, 40, generator=torch.Generator().manual_seed(seed)) * 255)
    pipeline = build_pair_pipeline(Warper(), 4, False, train=False)
    return pipeline({"data": images.to(torch.uint8), "index": torch.arange(6)},
                    torch.device("cpu"), torch.Generator().manual_seed(seed))


def test_float32_outputs_casts_nested_floating_tensors_only():
    half, index = torch.ones(2, dtype=torch.bfloat16), torch.arange(3)
    single = torch.zeros(2)
    cast = float32_outputs([half, (index, single)])
    assert cast[0].dtype == torch.float32 and cast[1][0] is index and cast[1][1] is single
    assert isinstance(cast, list) and isinstance(cast[1], tuple)


def test_amp_names_and_a_wrong_one():
    assert (amp_dtype("bf16"), amp_dtype("fp16"), amp_dtype(False)) == \
        (torch.bfloat16, torch.float16, None)
    with pytest.raises(ConfigError, match="amp 'fp8'"):
        amp_dtype("fp8")


def test_the_loss_keeps_float32_under_autocast():
    """The DVE loss of float32 descriptors, computed the way the trainer does under bf16
    autocast (autocast switched off around it), equals the float32 loss to 1e-3 (here:
    exactly), while the forward pass itself runs in bfloat16."""
    torch.manual_seed(0)
    network = SmallNet(num_output_channels=8).eval()
    batch = pair_batch()
    loss_fn = LOSSES.get("dense_correlation_loss_dve")
    precision = MixedPrecision("bf16", torch.device("cpu"))
    with torch.no_grad():
        reference = loss_fn(network(batch["data"]), batch["meta"])
        with precision.autocast():
            low = network(batch["data"])
            with precision.full_precision():
                kept = loss_fn(float32_outputs(network(batch["data"]).copy()), batch["meta"])
        features32 = network(batch["data"])
        with precision.autocast(), precision.full_precision():
            same_inputs = loss_fn(features32, batch["meta"])
    assert low[0].dtype == torch.bfloat16
    assert abs(same_inputs.item() - reference.item()) <= 1e-3 * abs(reference.item())
    assert same_inputs.item() == reference.item()
    # the whole step in bf16 (descriptors rounded to 8 bits of mantissa) stays close
    assert abs(kept.item() - reference.item()) < 2e-2 * abs(reference.item())


def logged_losses(caplog):
    return [float(m.group(1)) for r in caplog.records
            for m in [re.match(r"\s+loss\s+: (\S+)", r.getMessage())] if m]


def train_tiny(tmp_path, tiny_config, caplog, *settings, epochs=2):
    caplog.clear()
    folder = tmp_path / "_".join(s.replace("=", "-").replace('"', "") for s in settings or ["fp32"])
    config = tiny_config(folder, epochs=epochs)
    overrides = [arg for s in settings for arg in ("--set", s)]
    assert train.main(["--config", str(config), *CPU_ARGS, *overrides]) == 0
    (run,) = (folder / "saved" / "models" / "tiny-smallnet").iterdir()
    return logged_losses(caplog), run


def test_bf16_and_channels_last_train_like_float32(tmp_path, tiny_config, caplog):
    caplog.set_level("INFO")
    reference, _ = train_tiny(tmp_path, tiny_config, caplog)
    bf16, _ = train_tiny(tmp_path, tiny_config, caplog, 'amp="bf16"')
    channels_last, _ = train_tiny(tmp_path, tiny_config, caplog, "channels_last=true")
    assert len(reference) == len(bf16) == 2
    assert bf16 != reference  # it did run in reduced precision
    assert bf16 == pytest.approx(reference, rel=0.03)
    assert channels_last == pytest.approx(reference, rel=1e-4)


def test_fp16_checkpoints_its_gradient_scaler_and_resumes(tmp_path, tiny_config, caplog):
    caplog.set_level("INFO")
    losses, run = train_tiny(tmp_path, tiny_config, caplog, 'amp="fp16"', epochs=1)
    assert all(torch.isfinite(torch.tensor(losses)))
    state = torch.load(run / "checkpoint-epoch1.pth", weights_only=False)
    scale = state["grad_scaler"]["scale"]
    assert scale > 0 and state["config"]["amp"] == "fp16"
    assert train.main(["--resume", str(run / "checkpoint-epoch1.pth"), *CPU_ARGS,
                       "--set", "trainer.epochs=2"]) == 0
    resumed = torch.load(run / "checkpoint-epoch2.pth", weights_only=False)
    assert "grad_scaler" in resumed and resumed["grad_scaler"]["scale"] > 0
