"""Chunked dense-correlation kernels behind the equivariance and DVE losses (SPEC section 3).

For a batch of B pairs with N = H*W feature cells each, both losses are

    loss = sum_b sum_u sum_v d(u, v) * softmax_v(<q_u, f2_v>) / (N * B)

with q_u = f1_u (plain loss) or q_u = sum_w softmax_w(<f1_u, fa_w>) fa_w (DVE). The
original code formed the (N, N) correlation of every pair in autograd and, for DVE, a
(C, H, W, h, w) product: O(C * N^2) memory per pair. Here the query rows u are processed
in chunks of ``chunk_rows`` rows for all pairs at once, so no temporary is larger than
(B, chunk_rows, N), and nothing of size (B, N, N) exists at all. A call allocates four
such work buffers (three for the plain loss) and every chunk reuses them through out=
variants, which keeps the CPU allocator (and page faults) out of the loop.

Since a loss is a scalar, its gradient does not depend on anything backward learns
except the incoming scale ``grad_output``. The Functions therefore compute the gradient
w.r.t. their inputs in the same chunk loop as the value (when a gradient is needed), keep
it (O(B * N * C)), and ``backward`` only scales it: the nine matrix products that the
value and gradient need at the least are each done once, nothing is recomputed.
Double backward is not supported.

Accumulation: the loss is kept as per-row sums sum_v d(u, v) softmax_v (products, then a
torch.sum per row: pairwise on CPU) in a (B, N) buffer, summed once in float64 at the end.
One float32 dot product over a whole chunk (~10^6 terms) drifted 3-4e-5 from the float64
value; the row sums stay within ~1e-7. The softmax backward of the distance term reuses
the products and row sums, so the gradient path does no more passes than before.

``misc.reference_loss.reference_dense_correlation_loss`` is the original per-pair
formulation, the independent check of the tests and the benchmark.
"""
from typing import List, Optional, Tuple

import torch
from torch.autograd.function import once_differentiable


# Bytes of one (B, chunk_rows, N) temporary (about six are alive at once in a chunk).
# CPU: 2-8 MiB chunks stay in cache and ran fastest in misc/bench_loss.py (16 MiB ~20%
# slower, one 48 MiB chunk ~2x slower). GPU (not measured): larger chunks, fewer launches.
CPU_CHUNK_BYTES = 4 * 2 ** 20
GPU_CHUNK_BYTES = 32 * 2 ** 20


def default_chunk_rows(batch: int, num_cells: int, element_size: int,
                       device_type: str = "cpu") -> int:
    """Query rows per chunk so that one (batch, rows, num_cells) temporary is about
    CPU_CHUNK_BYTES on CPU, GPU_CHUNK_BYTES elsewhere."""
    chunk_bytes = CPU_CHUNK_BYTES if device_type == "cpu" else GPU_CHUNK_BYTES
    rows = chunk_bytes // max(1, batch * num_cells * element_size)
    return int(min(num_cells, max(1, rows)))


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32: half-precision inputs are upcast inside the kernels."""
    return torch.promote_types(dtype, torch.float32)


def _distance_chunk(grid_rows: torch.Tensor, stride: int, height: int, width: int,
                    pow: float, out: torch.Tensor) -> torch.Tensor:
    """d(u, v) = ||g2(s u) - s v||^pow for a chunk of rows u and all cells v, into `out`.

    Args:
        grid_rows: (B, rows, 2) the (x, y) pixel position g2(s u) of each row's true match.
        stride: s, pixels per feature cell; targets are at pixels (s vx, s vy).
        out: contiguous (B, rows, height * width), v in row-major (y, x) order.
    """
    batch, rows, _ = grid_rows.shape
    target_x = torch.arange(width, device=grid_rows.device, dtype=grid_rows.dtype) * stride
    target_y = torch.arange(height, device=grid_rows.device, dtype=grid_rows.dtype) * stride
    dist_x = (grid_rows[:, :, 0:1] - target_x).square_()  # (B, rows, W)
    dist_y = (grid_rows[:, :, 1:2] - target_y).square_()  # (B, rows, H)
    dist = torch.add(dist_x[:, :, None, :], dist_y[:, :, :, None],
                     out=out.view(batch, rows, height, width)).view(batch, rows, height * width)
    if pow == 0.5:  # (d^2)^(1/4) as rsqrt(rsqrt(.)): 2x faster than sqrt on CPU, 0 -> 0
        return dist.rsqrt_().rsqrt_()
    if pow == 1:
        return dist.sqrt_()
    if pow == 2:
        return dist
    return dist.pow_(pow / 2)


# The softmax and its backward write into the work buffers through aten's out= variants
# (torch.softmax has none): no allocation inside the chunk loop. These two private ops are
# the only ones used; where a torch build lacks them, the public ops (which allocate)
# give the same values.
_HAS_PRIVATE_SOFTMAX = hasattr(torch, "_softmax") and hasattr(torch, "_softmax_backward_data")


def _softmax(logits: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """softmax over the last dim of `logits` into `out` (a different tensor)."""
    if _HAS_PRIVATE_SOFTMAX:
        return torch._softmax(logits, -1, False, out=out)
    return out.copy_(torch.softmax(logits, dim=-1))


def _softmax_grad(grad: torch.Tensor, prob: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """prob * (grad - rowsum(grad * prob)), the backward of a last-dim softmax, into `out`."""
    if _HAS_PRIVATE_SOFTMAX:
        return torch._softmax_backward_data(grad, prob, -1, prob.dtype, grad_input=out)
    row_sums = (grad * prob).sum(dim=-1, keepdim=True)
    return torch.mul(prob, grad - row_sums, out=out)


def _expected_distance(dist: torch.Tensor, prob: torch.Tensor, work: torch.Tensor,
                       out: torch.Tensor) -> torch.Tensor:
    """Row sums sum_v dist * prob into `out` (B, rows); `work` (B, rows, N) is left holding
    the products dist * prob (for ``_softmax_grad_from_products``)."""
    return torch.sum(torch.mul(dist, prob, out=work), dim=-1, out=out)


def _softmax_grad_from_products(products: torch.Tensor, prob: torch.Tensor,
                                row_sums: torch.Tensor) -> torch.Tensor:
    """``_softmax_grad(dist, prob)`` = dist prob - prob rowsum(dist prob), in place in
    `products` (B, rows, N) = dist * prob, given row_sums (B, rows) = rowsum(dist prob)."""
    return products.addcmul_(prob, row_sums.unsqueeze(-1), value=-1)


class _WorkBuffers:
    """`count` flat buffers of (batch, chunk_rows, cols) elements, reused by every chunk.

    ``views(rows)`` gives contiguous (batch, rows, cols) views, the short last chunk included.
    """

    def __init__(self, count: int, batch: int, chunk_rows: int, cols: int, like: torch.Tensor):
        self.batch, self.cols = batch, cols
        self.flat = [like.new_empty(batch * chunk_rows * cols) for _ in range(count)]

    def views(self, rows: int) -> List[torch.Tensor]:
        size = self.batch * rows * self.cols
        return [buf[:size].view(self.batch, rows, self.cols) for buf in self.flat]


def _prepare(feats: List[torch.Tensor], grid_px: torch.Tensor
             ) -> Tuple[List[torch.Tensor], torch.Tensor, int, int]:
    """(B, C, H, W) features -> contiguous (B, N, C) in the compute dtype; grid -> (B, N, 2)."""
    batch, _, height, width = feats[0].shape
    dtype = _compute_dtype(feats[0].dtype)
    rows = [f.detach().to(dtype).flatten(2).transpose(1, 2).contiguous() for f in feats]
    grid_rows = grid_px.detach().to(dtype).reshape(batch, height * width, 2)
    return rows, grid_rows, height, width


def _check_inputs(feats: List[torch.Tensor], grid_px: torch.Tensor) -> None:
    shape = feats[0].shape
    for f in feats:
        if f.dim() != 4 or f.shape != shape or f.dtype != feats[0].dtype:
            raise ValueError(f"features must all be (B, C, H, W) of one shape and dtype, got "
                             f"{[(tuple(t.shape), t.dtype) for t in feats]}")
    if grid_px.shape != (shape[0], shape[2], shape[3], 2):
        raise ValueError(f"grid must be (B, H, W, 2) = {(shape[0], shape[2], shape[3], 2)} "
                         f"to match features {tuple(shape)}, got {tuple(grid_px.shape)}")


def _to_feature_layout(grad_rows: torch.Tensor, shape: torch.Size,
                       dtype: torch.dtype) -> torch.Tensor:
    """(B, N, C) gradient -> (B, C, H, W) of the input's dtype."""
    return grad_rows.transpose(1, 2).reshape(shape).to(dtype)


def _finish(ctx, row_loss: torch.Tensor, grads: Optional[Tuple[torch.Tensor, ...]],
            feats_src: torch.Tensor) -> torch.Tensor:
    """Sum the (B, N) per-row losses in float64, scale it and the (B, N, C) input gradients
    (None: not computed) by 1 / (N B), keep the gradients for backward, return the loss in
    the features' dtype."""
    batch, _, height, width = feats_src.shape
    scale = 1.0 / (height * width * batch)
    loss = row_loss.sum(dtype=torch.float64)
    ctx.computed_grad = grads is not None
    if grads is not None:
        ctx.save_for_backward(*(g.mul_(scale) for g in grads))
        ctx.input_shape, ctx.input_dtype = feats_src.shape, feats_src.dtype
    return (loss * scale).to(feats_src.dtype)


def _precomputed_backward(ctx, grad_output, name: str):
    """The input gradients were computed in forward (the loss is a scalar): scale them."""
    if not ctx.computed_grad:
        raise RuntimeError(f"{name} was applied with compute_grad=False")
    grads = [_to_feature_layout(g * grad_output, ctx.input_shape, ctx.input_dtype)
             for g in ctx.saved_tensors]
    return (*grads, None, None, None, None, None)


class DenseCorrelationFunction(torch.autograd.Function):
    """Plain equivariance loss: sum d(u, v) softmax_v(<f1_u, f2_v>) / (N B).

    apply(feats_src, feats_dst, grid_px, stride, pow, chunk_rows, compute_grad):
        feats_src, feats_dst: (B, C, H, W), already normalized/scaled as the loss wants.
        grid_px: (B, H, W, 2) pixel position g2(s u) in the second image of cell u.
        stride: s (int); pow: exponent of the distance; chunk_rows: query rows per chunk;
        compute_grad: compute the input gradients (needed if backward will be called).
    Returns a 0-dim loss.
    """

    @staticmethod
    def forward(ctx, feats_src, feats_dst, grid_px, stride, pow, chunk_rows, compute_grad):
        with torch.autocast(feats_src.device.type, enabled=False):  # compute dtype >= fp32
            return DenseCorrelationFunction._forward(ctx, feats_src, feats_dst, grid_px, stride,
                                                     pow, chunk_rows, compute_grad)

    @staticmethod
    def _forward(ctx, feats_src, feats_dst, grid_px, stride, pow, chunk_rows, compute_grad):
        _check_inputs([feats_src, feats_dst], grid_px)
        (src, dst), grid_rows, height, width = _prepare([feats_src, feats_dst], grid_px)
        batch, num_cells, _ = src.shape
        dst_t = dst.transpose(1, 2)  # (B, C, N)
        row_loss = src.new_empty(batch, num_cells)  # (B, N) sum_v d(u, v) softmax_v
        if compute_grad:
            grad_src = torch.empty_like(src)  # (B, N, C)
            grad_dst = torch.zeros_like(dst)  # (B, N, C)
        chunk_rows = min(chunk_rows, num_cells)
        square = _WorkBuffers(3, batch, chunk_rows, num_cells, src)  # (B, c, N) each
        for r0 in range(0, num_cells, chunk_rows):
            r1 = min(r0 + chunk_rows, num_cells)
            corr, prob, dist = square.views(r1 - r0)  # (B, c, N) each
            src_rows = src[:, r0:r1]  # (B, c, C)
            torch.bmm(src_rows, dst_t, out=corr)
            _softmax(corr, out=prob)
            _distance_chunk(grid_rows[:, r0:r1], stride, height, width, pow, out=dist)
            row_sums = _expected_distance(dist, prob, work=corr, out=row_loss[:, r0:r1])
            if compute_grad:
                grad_corr = _softmax_grad_from_products(corr, prob, row_sums)  # (B, c, N)
                torch.bmm(grad_corr, dst, out=grad_src[:, r0:r1])
                grad_dst.baddbmm_(grad_corr.transpose(1, 2), src_rows)
        return _finish(ctx, row_loss, (grad_src, grad_dst) if compute_grad else None,
                       feats_src)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        return _precomputed_backward(ctx, grad_output, "DenseCorrelationFunction")


class DenseCorrelationDVEFunction(torch.autograd.Function):
    """DVE loss: the query f1_u is replaced by sum_w softmax_w(<f1_u, fa_w>) fa_w first.

    apply(feats_src, feats_aux, feats_dst, grid_px, stride, pow, chunk_rows, compute_grad):
    as DenseCorrelationFunction, with feats_aux (B, C, H, W) the auxiliary features.
    Per chunk of rows (all (B, c, .)): A = f1 fa^T, P = softmax(A), R = P fa (the
    reconstruction, not re-normalized), S = R f2^T, Q = softmax(S), row loss rowsum(D Q);
    then dS = Q (D - rowsum(D Q)), dR = dS f2, df2 += dS^T R, dP = dR fa^T, dfa += P^T dR,
    dA = P (dP - rowsum(dP P)), df1 = dA fa, dfa += dA^T f1.
    """

    @staticmethod
    def forward(ctx, feats_src, feats_aux, feats_dst, grid_px, stride, pow, chunk_rows,
                compute_grad):
        with torch.autocast(feats_src.device.type, enabled=False):  # compute dtype >= fp32
            return DenseCorrelationDVEFunction._forward(ctx, feats_src, feats_aux, feats_dst,
                                                        grid_px, stride, pow, chunk_rows,
                                                        compute_grad)

    @staticmethod
    def _forward(ctx, feats_src, feats_aux, feats_dst, grid_px, stride, pow, chunk_rows,
                 compute_grad):
        _check_inputs([feats_src, feats_aux, feats_dst], grid_px)
        (src, aux, dst), grid_rows, height, width = _prepare(
            [feats_src, feats_aux, feats_dst], grid_px)
        batch, num_cells, _ = src.shape
        aux_t, dst_t = aux.transpose(1, 2), dst.transpose(1, 2)  # (B, C, N)
        row_loss = src.new_empty(batch, num_cells)  # (B, N) sum_v d(u, v) softmax_v
        if compute_grad:
            grad_src = torch.empty_like(src)  # (B, N, C)
            grad_aux = torch.zeros_like(aux)  # (B, N, C)
            grad_dst = torch.zeros_like(dst)  # (B, N, C)
        chunk_rows = min(chunk_rows, num_cells)
        square = _WorkBuffers(4, batch, chunk_rows, num_cells, src)  # (B, c, N) each
        narrow = _WorkBuffers(2, batch, chunk_rows, src.shape[2], src)  # (B, c, C) each
        for r0 in range(0, num_cells, chunk_rows):
            r1 = min(r0 + chunk_rows, num_cells)
            corr, attn, prob, dist = square.views(r1 - r0)  # (B, c, N) each
            recon, grad_recon = narrow.views(r1 - r0)  # (B, c, C) each
            src_rows = src[:, r0:r1]  # (B, c, C)
            torch.bmm(src_rows, aux_t, out=corr)  # A
            _softmax(corr, out=attn)  # P
            torch.bmm(attn, aux, out=recon)  # R = P fa
            torch.bmm(recon, dst_t, out=corr)  # S
            _softmax(corr, out=prob)  # Q
            _distance_chunk(grid_rows[:, r0:r1], stride, height, width, pow, out=dist)  # D
            row_sums = _expected_distance(dist, prob, work=corr, out=row_loss[:, r0:r1])
            if not compute_grad:
                continue
            grad_corr = _softmax_grad_from_products(corr, prob, row_sums)  # dS, corr's buffer
            torch.bmm(grad_corr, dst, out=grad_recon)  # dR
            grad_dst.baddbmm_(grad_corr.transpose(1, 2), recon)
            grad_attn = torch.bmm(grad_recon, aux_t, out=dist)  # dP, in dist's buffer
            grad_aux.baddbmm_(attn.transpose(1, 2), grad_recon)
            grad_logits = _softmax_grad(grad_attn, attn, out=corr)  # dA, in corr's buffer
            torch.bmm(grad_logits, aux, out=grad_src[:, r0:r1])
            grad_aux.baddbmm_(grad_logits.transpose(1, 2), src_rows)
        grads = (grad_src, grad_aux, grad_dst) if compute_grad else None
        return _finish(ctx, row_loss, grads, feats_src)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        return _precomputed_backward(ctx, grad_output, "DenseCorrelationDVEFunction")


def dense_correlation(feats_src: torch.Tensor, feats_dst: torch.Tensor, grid_px: torch.Tensor,
                      stride: int, pow: float = 0.5, feats_aux: Optional[torch.Tensor] = None,
                      chunk_rows: Optional[int] = None) -> torch.Tensor:
    """The plain (feats_aux None) or DVE loss of a batch of pairs, through the chunked kernels.

    Args:
        feats_src: (B, C, H, W) first-image features (normalized as the loss wants).
        feats_dst: (B, C, H, W) second-image features.
        grid_px: (B, H, W, 2) pixel (x, y) in the second image of the match of cell u.
        stride: pixels per feature cell.
        pow: exponent of the match distance.
        feats_aux: (B, C, H, W) auxiliary features for DVE, or None for the plain loss.
        chunk_rows: query rows per chunk (default: ``default_chunk_rows``).
    Returns:
        0-dim loss in the features' dtype.
    """
    inputs = [feats_src, feats_dst] if feats_aux is None else [feats_src, feats_aux, feats_dst]
    batch, _, height, width = feats_src.shape
    if chunk_rows is None:
        element_size = torch.empty((), dtype=_compute_dtype(feats_src.dtype)).element_size()
        chunk_rows = default_chunk_rows(batch, height * width, element_size,
                                        feats_src.device.type)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    compute_grad = torch.is_grad_enabled() and any(f.requires_grad for f in inputs)
    if feats_aux is None:
        return DenseCorrelationFunction.apply(feats_src, feats_dst, grid_px, stride, pow,
                                              chunk_rows, compute_grad)
    return DenseCorrelationDVEFunction.apply(feats_src, feats_aux, feats_dst, grid_px, stride,
                                             pow, chunk_rows, compute_grad)
