"""The dense correlation losses against the original per-pair formulation (SPEC section 3)."""
import math

import pytest
import torch

from torch.utils._python_dispatch import TorchDispatchMode

import model
from model import dense_correlation as kernels
from misc.reference_loss import reference_dense_correlation_loss
from model.dense_correlation import DenseCorrelationDVEFunction, DenseCorrelationFunction
from model.loss import dense_correlation_loss, dense_correlation_loss_dve
from model.registry import LOSSES
from utils.tps import unnormalize_grid

LOSS_FNS = {"plain": (dense_correlation_loss, False), "dve": (dense_correlation_loss_dve, True)}


def smooth_grid(batch, height, width, seed=0, dtype=torch.float64):
    """(B, H, W, 2) normalized warp: small rotation, scale, shift and a sine bend."""
    gen = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height, dtype=dtype),
                            torch.linspace(-1, 1, width, dtype=dtype), indexing="ij")
    grids = []
    for _ in range(batch):
        angle = 0.15 * torch.randn((), generator=gen)
        scale = 1 + 0.1 * torch.randn((), generator=gen)
        shift = 0.1 * torch.randn(2, generator=gen)
        gx = scale * (torch.cos(angle) * xs - torch.sin(angle) * ys) + shift[0]
        gy = scale * (torch.sin(angle) * xs + torch.cos(angle) * ys) + shift[1]
        grids.append(torch.stack([gx + 0.05 * torch.sin(3 * ys), gy], dim=-1))
    return torch.stack(grids).to(dtype)


def set_chunk_rows(monkeypatch, rows, batch, num_cells, element_size=8):
    """Make the default chunk of the losses `rows` query rows (CPU)."""
    monkeypatch.setattr(kernels, "CPU_CHUNK_BYTES", rows * batch * num_cells * element_size)
    assert kernels.default_chunk_rows(batch, num_cells, element_size) == rows


CASES = {  # name: (pairs B, C, H, W, grid Hin, grid Win)
    "B1-square": (1, 5, 6, 6, 12, 12),
    "B3-square": (3, 5, 6, 6, 12, 12),
    "B3-nonsquare": (3, 5, 4, 6, 8, 12),
}


@pytest.mark.parametrize("chunk_rows", [5, None], ids=["chunk5", "chunk-default"])
@pytest.mark.parametrize("normalize_vectors", [True, False], ids=["norm", "raw"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kind", sorted(LOSS_FNS))
def test_loss_and_gradient_match_original_formulation(kind, case, normalize_vectors,
                                                      chunk_rows, monkeypatch):
    batch, channels, height, width, height_in, width_in = CASES[case]
    if chunk_rows is not None:  # 5 does not divide H*W: exercises a short last chunk
        set_chunk_rows(monkeypatch, chunk_rows, batch, height * width)
    loss_fn, dve = LOSS_FNS[kind]
    gen = torch.Generator().manual_seed(1)
    # raw descriptors are kept small so that the softmaxes are not saturated
    scale = 1.0 if normalize_vectors else 0.7
    feats = (scale * torch.randn(2 * batch, channels, height, width, generator=gen,
                                 dtype=torch.float64)).requires_grad_()
    meta = {"grid": smooth_grid(batch, height_in, width_in)}

    ours = loss_fn([feats], meta, pow=0.5, fold_corr=False, normalize_vectors=normalize_vectors)
    (grad_ours,) = torch.autograd.grad(ours, feats)
    ref = reference_dense_correlation_loss([feats], meta, pow=0.5,
                                           normalize_vectors=normalize_vectors, dve=dve)
    (grad_ref,) = torch.autograd.grad(ref, feats)

    assert ours.dtype == torch.float64 and ours.dim() == 0
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=0)
    torch.testing.assert_close(grad_ours, grad_ref, rtol=1e-10,
                               atol=1e-10 * grad_ref.abs().max().item())


@pytest.mark.parametrize("kind", sorted(LOSS_FNS))
def test_other_pow_and_fold_corr(kind):
    loss_fn, dve = LOSS_FNS[kind]
    feats = torch.randn(4, 3, 5, 5, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(2))
    meta = {"grid": smooth_grid(2, 10, 10)}
    for pow in (1.0, 2.0, 0.3):
        ours = loss_fn([feats], meta, pow=pow, fold_corr=True)
        ref = reference_dense_correlation_loss([feats], meta, pow=pow, dve=dve)
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=0)


def _function_inputs(batch=2, channels=3, height=3, width=4):
    gen = torch.Generator().manual_seed(3)
    feats = [torch.randn(batch, channels, height, width, generator=gen, dtype=torch.float64)
             .requires_grad_() for _ in range(3)]
    grid_px = 8 * torch.rand(batch, height, width, 2, generator=gen, dtype=torch.float64)
    return feats, grid_px


def test_gradcheck_plain_function():
    (src, _, dst), grid_px = _function_inputs()
    assert torch.autograd.gradcheck(
        lambda a, b: DenseCorrelationFunction.apply(a, b, grid_px, 2, 0.5, 5, True), (src, dst))


def test_gradcheck_dve_function():
    (src, aux, dst), grid_px = _function_inputs()
    assert torch.autograd.gradcheck(
        lambda a, b, c: DenseCorrelationDVEFunction.apply(a, b, c, grid_px, 2, 0.5, 5, True),
        (src, aux, dst))


@pytest.mark.parametrize("kind", sorted(LOSS_FNS))
def test_incoming_gradient_scales_and_no_grad_value(kind):
    loss_fn, _ = LOSS_FNS[kind]
    gen = torch.Generator().manual_seed(6)
    feats = torch.randn(6, 4, 6, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    meta = {"grid": smooth_grid(3, 12, 12)}
    (grad_one,) = torch.autograd.grad(loss_fn([feats], meta), feats)
    (grad_scaled,) = torch.autograd.grad(-2.5 * loss_fn([feats], meta), feats)
    torch.testing.assert_close(grad_scaled, -2.5 * grad_one, rtol=1e-12,
                               atol=1e-12 * grad_one.abs().max().item())
    with torch.no_grad():
        value = loss_fn([feats], meta)
    torch.testing.assert_close(value, loss_fn([feats], meta).detach(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("kind", sorted(LOSS_FNS))
def test_float32_input_gives_float32_loss_and_grad(kind):
    loss_fn, dve = LOSS_FNS[kind]
    gen = torch.Generator().manual_seed(7)
    feats = torch.randn(4, 8, 6, 6, generator=gen, requires_grad=True)
    meta = {"grid": smooth_grid(2, 12, 12, dtype=torch.float32)}
    loss = loss_fn([feats], meta)
    loss.backward()
    assert loss.dtype == torch.float32 and feats.grad.dtype == torch.float32
    ref = reference_dense_correlation_loss([feats.double()], {"grid": meta["grid"].double()},
                                           dve=dve)
    assert math.isclose(loss.item(), ref.item(), rel_tol=1e-5)


def _field(x, y, freqs, phases):
    """A smooth random descriptor field: channel k = sin(fx_k x + fy_k y + phase_k)."""
    return torch.sin(freqs[:, 0, None, None] * x + freqs[:, 1, None, None] * y
                     + phases[:, None, None])  # (C, *x.shape)


@pytest.mark.parametrize("kind", sorted(LOSS_FNS))
def test_descriptors_following_the_warp_score_lower_than_random(kind):
    loss_fn, _ = LOSS_FNS[kind]
    batch, channels, size, stride = 3, 16, 12, 2
    gen = torch.Generator().manual_seed(4)
    freqs = 0.6 * torch.randn(channels, 2, generator=gen, dtype=torch.float64)
    phases = 2 * math.pi * torch.rand(channels, generator=gen, dtype=torch.float64)
    grid = smooth_grid(batch, size * stride, size * stride, seed=5)
    grid_px = unnormalize_grid(grid, grid.shape[2], grid.shape[1])[:, ::stride, ::stride]  # (B, H, W, 2)
    cells = torch.arange(size, dtype=torch.float64) * stride
    ys, xs = torch.meshgrid(cells, cells, indexing="ij")
    feats = []
    for b in range(batch):
        feats.append(_field(grid_px[b, ..., 0], grid_px[b, ..., 1], freqs, phases))  # first
        feats.append(_field(xs, ys, freqs, phases))  # second image: descriptor at pixel s v
    matched = torch.stack(feats)  # (2B, C, H, W)
    random = torch.randn(matched.shape, generator=gen, dtype=torch.float64)
    meta = {"grid": grid}
    loss_matched = loss_fn([matched], meta).item()
    loss_random = loss_fn([random], meta).item()
    assert loss_matched < 0.5 * loss_random, (loss_matched, loss_random)


class _LargestOutput(TorchDispatchMode):
    """Records the largest numel of any tensor an operator returns."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for item in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(item, torch.Tensor):
                self.largest = max(self.largest, item.numel())
        return out


@pytest.mark.parametrize("kind", sorted(LOSS_FNS))
def test_no_tensor_of_correlation_size_is_created(kind, monkeypatch):
    loss_fn, dve = LOSS_FNS[kind]
    batch, channels, size, chunk = 2, 16, 8, 8
    num_cells = size * size
    set_chunk_rows(monkeypatch, chunk, batch, num_cells)
    feats = torch.randn(2 * batch, channels, size, size, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(8), requires_grad=True)
    meta = {"grid": smooth_grid(batch, 2 * size, 2 * size)}

    with _LargestOutput() as ours:
        loss_fn([feats], meta).backward()
    with _LargestOutput() as original:
        reference_dense_correlation_loss([feats], meta, dve=dve).backward()

    feature_numel = feats.numel()  # (2B, C, H, W)
    # largest temporary: (B, chunk, N) or the feature-sized tensors; never (B, N, N)
    assert ours.largest <= max(batch * chunk * num_cells, feature_numel)
    assert ours.largest < batch * num_cells * num_cells
    if dve:  # the original builds (C, H, W, h, w); the check above would catch it
        assert original.largest >= channels * num_cells * num_cells


def test_registered_and_grid_mismatch_is_an_error():
    assert {"dense_correlation_loss", "dense_correlation_loss_dve"} <= set(LOSSES)
    assert LOSSES.get("dense_correlation_loss_dve") is model.loss.dense_correlation_loss_dve
    feats = torch.zeros(4, 3, 6, 6)
    with pytest.raises(ValueError, match="does not match first-image features"):
        dense_correlation_loss([feats], {"grid": smooth_grid(2, 13, 13, dtype=torch.float32)})
    with pytest.raises(ValueError, match="interleaved pair features"):
        dense_correlation_loss([feats[:3]], {"grid": smooth_grid(2, 12, 12)})


def _naive_float64_loss(feats, grid, dve):
    """SPEC section 3 per pair, in float64: sum_u sum_v d(u, v) softmax_v(<q_u, f2_v>) / (N B),
    q_u = f1_u or (DVE) sum_w softmax_w(<f1_u, fa_w>) fa_w with a = first image of pair
    (b + 1) mod B; d(u, v) = ||g2(s u) - s v||^0.5 in pixels (raw descriptors)."""
    feats, grid = feats.double(), grid.double()
    first, second = feats[0::2], feats[1::2]  # (B, C, H, W)
    batch, channels, height, width = first.shape
    height_in, width_in = grid.shape[1:3]
    stride = height_in // height
    match_x = (grid[..., 0] + 1) / 2 * (width_in - 1)  # (B, Hin, Win) pixels
    match_y = (grid[..., 1] + 1) / 2 * (height_in - 1)
    cell_y, cell_x = torch.meshgrid(torch.arange(height, dtype=torch.float64) * stride,
                                    torch.arange(width, dtype=torch.float64) * stride,
                                    indexing="ij")
    total = 0.0
    for b in range(batch):
        gx = match_x[b, ::stride, ::stride].reshape(-1, 1)  # (N, 1): g2(s u)
        gy = match_y[b, ::stride, ::stride].reshape(-1, 1)
        dist = ((gx - cell_x.reshape(1, -1)) ** 2 + (gy - cell_y.reshape(1, -1)) ** 2) ** 0.25
        query = first[b].reshape(channels, -1).t()  # (N, C)
        if dve:
            aux = first[(b + 1) % batch].reshape(channels, -1).t()  # (N, C)
            query = torch.softmax(query @ aux.t(), dim=1) @ aux
        prob = torch.softmax(query @ second[b].reshape(channels, -1), dim=1)  # (N, N)
        total += (dist * prob).sum().item()
    return total / (height * width * batch)


@pytest.mark.parametrize("kind", sorted(LOSS_FNS))
def test_float32_loss_is_within_1e6_of_float64_at_training_size(kind):
    """B=8 pairs, 16 raw channels (normalize_vectors=False, as the CelebA SmallNet configs),
    32x32 features. The default chunk holds ~10^6 terms at any size from about 25x25 on
    (50x50 drifted as much), and one float32 dot product over a chunk drifted 3-4e-5 from
    the float64 value."""
    loss_fn, dve = LOSS_FNS[kind]
    gen = torch.Generator().manual_seed(9)
    feats = torch.randn(16, 16, 32, 32, generator=gen)
    grid = smooth_grid(8, 64, 64, seed=10, dtype=torch.float32)
    loss = loss_fn([feats], {"grid": grid}, normalize_vectors=False)
    expected = _naive_float64_loss(feats, grid, dve)
    assert loss.dtype == torch.float32
    assert abs(loss.item() - expected) <= 1e-6 * expected, (loss.item(), expected)


def test_the_public_softmax_fallback_gives_the_private_ops_values(monkeypatch):
    from model import dense_correlation
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 5, 7, generator=generator, dtype=torch.float64)
    grad = torch.randn(2, 5, 7, generator=generator, dtype=torch.float64)
    prob = torch.softmax(logits, dim=-1)
    # the backward of a last-dim softmax by hand: p * (g - sum_v g p)
    by_hand = prob * (grad - (grad * prob).sum(-1, keepdim=True))
    for private in (True, False):
        monkeypatch.setattr(dense_correlation, "_HAS_PRIVATE_SOFTMAX", private)
        out = torch.empty_like(logits)
        assert torch.allclose(dense_correlation._softmax(logits, out), prob, atol=1e-12)
        out = torch.empty_like(logits)
        assert torch.allclose(dense_correlation._softmax_grad(grad, prob, out), by_hand, atol=1e-12)
