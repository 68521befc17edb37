"""Fused C kernels for the Mamba-2 layer on CPU, forward and backward.

:func:`mamba2_layer` runs :func:`~mambakit.ssm.mamba2._mamba2_forward` from ``in_proj`` to
``out_proj`` as one autograd node (:class:`_Mamba2Layer`), of these C kernels:

* ``sgemm``: the two projections and their gradients, register tiles of 6 rows x 64
  columns in the full vector width (``-march=native``); MKL, behind ``torch.mm``, runs its
  AVX2 path on AMD CPUs. Its twin is ``torch.mm``;
* :func:`causal_conv1d_silu`: ``silu(causal_conv1d(x, weight, bias))``, the depthwise causal
  conv of ``(x, B, C)`` and its activation in one pass that reads the slice of ``in_proj``'s
  output in place (no copy of the strided slice), its backward in one more (the
  pre-activation is recomputed, not saved);
* :func:`gated_rms_norm`: ``RMSNorm(y * silu(z)) * weight`` per group (the Mamba-2 output
  norm, :class:`~mambakit.ssm.mamba2.GatedRMSNorm`), ``z`` read in place from ``in_proj``'s
  output, statistics recomputed in the backward;
* the SSD scan of :mod:`~mambakit.ssm.cpu_kernel`, forward and exact backward.

Each keeps its PyTorch twin as the reference (``torch.mm``, ``causal_conv1d_ref`` +
``F.silu``, ``GatedRMSNorm``'s torch path, ``ssd_scan_ref``); tests/ssm check values and
every gradient against them, and the whole layer against its PyTorch stages.
The source (``cpu_fused.c``) is built once by :func:`~mambakit.ssm.cbuild.load_library`;
:func:`available` says whether that worked, and the layer falls back to the PyTorch path
when it did not. The conv splits channels between threads, the norm and the matrix
product split rows (or, for a weight gradient, the time steps summed over), one range
per thread of torch's own OpenMP pool (:data:`~mambakit.ssm.cbuild.PARALLEL_PRELUDE`).

Memory: the layer's intermediates go to per-thread scratch buffers reused call after
call (:func:`_scratch`; at d_model 64 and L = 44,100 about 330 MB held by a thread that
trained the layer, 160 MB by one that only ran it), since on the machines measured a
fresh tensor of tens of MB costs more in page faults than the kernel that fills it;
:func:`release_scratch` frees a thread's buffers.
"""

from __future__ import annotations

import ctypes
import math
import threading
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .cbuild import KernelLibrary, range_bounds

__all__ = [
    "available",
    "causal_conv1d_silu",
    "gated_rms_norm",
    "mamba2_layer",
    "release_scratch",
    "supports",
    "unavailable_reason",
]


_SOURCE_PATH = Path(__file__).with_name("cpu_fused.c")
_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-shared", "-fPIC"]
# Elements (batch x length x channels) below which a kernel runs on one thread.
_MIN_PARALLEL_ELEMENTS = 2**16
# Largest buffer :func:`_scratch` keeps per name and thread (the widest of a d_model 64
# layer at L = 44,100, zxbcdt and its gradient, take 70 MB each).
_MAX_SCRATCH_BYTES = 2**28
_scratch_buffers = threading.local()

_P, _L, _F = ctypes.c_void_p, ctypes.c_long, ctypes.c_float
_SIGNATURES = {  # (rg, n_ranges): the range bounds, cbuild.range_bounds
    "conv_silu_fwd_par": [_P, _L, _P, _P, _P] + [_L] * 4 + [_P, _L],
    "conv_silu_bwd_par": [_P, _L, _P, _P, _P, _L, _P, _L, _P, _P] + [_L] * 4 + [_P, _L],
    "gated_rmsnorm_fwd_par": [_P, _L, _P, _L, _P, _P, _L, _L, _F, _P, _L],
    "gated_rmsnorm_bwd_par": [_P, _L, _P, _L, _P, _P, _P, _P, _L, _P, _P, _L, _L, _F, _P, _L],
    "sgemm_rows_par": [_P, _L, _L, _P, _L, _P, _L, _P, _L, _L, _P, _L, _L, _L],
    "sgemm_terms_par": [_P, _L, _L, _P, _L, _P, _L, _L, _P, _L],
}
_KERNELS = KernelLibrary("mamba2_fused", _SOURCE_PATH, _SIGNATURES, _FLAGS)
# Rows of one register tile of sgemm (GEMM_MR in cpu_fused.c): row ranges are cut at
# multiples of it. Columns of a vector: the in-projection's output rows are padded to it.
_GEMM_ROWS = 6
_VECTOR = 16


_load = _KERNELS.load
available = _KERNELS.available
supports = _KERNELS.supports
unavailable_reason = _KERNELS.unavailable_reason


def _rows(t: Tensor) -> tuple[Tensor, int]:
    """``t`` ``[B, L, C]`` (or ``[R, C]``) as a tensor whose rows are ``stride`` floats apart,
    channels contiguous and batch rows ``L * stride`` apart (a slice of a contiguous tensor
    qualifies as it is), and that stride; a copy only when ``t`` is not such a tensor."""
    t = t.detach()
    stride = t.stride(-2)
    rows_ok = t.ndim == 2 or t.shape[0] == 1 or t.stride(0) == t.shape[1] * stride
    if t.stride(-1) != 1 or not rows_ok:
        t = t.contiguous()
        stride = t.shape[-1]
    return t, stride


def _ranges(count: int, elements: int, align: int) -> list[tuple[int, int]]:
    """``count`` items split into one range per thread, boundaries multiples of ``align``."""
    threads = max(1, min(torch.get_num_threads(), count // align))
    if elements < _MIN_PARALLEL_ELEMENTS:
        threads = 1
    bounds = [min(count, round(count * i / threads / align) * align) for i in range(threads)]
    bounds.append(count)
    return [(a, z) for a, z in zip(bounds[:-1], bounds[1:], strict=True) if z > a]


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def release_scratch() -> int:
    """Free the calling thread's scratch buffers (the layer's intermediates, kept between
    calls: see the module docstring) and return how many bytes they held. The next call
    of the layer allocates them again; for a long-lived process after a long clip."""
    held = _scratch_buffers.__dict__.pop("by_name", {})
    return sum(t.numel() * t.element_size() for t in held.values())


def _scratch(name: str, *shape: int) -> Tensor:
    """A float32 buffer of ``shape`` kept for this thread under ``name`` and reused by the
    next call asking for it (the latest shape only, buffers of at most
    ``_MAX_SCRATCH_BYTES``; a new tensor beyond that). For intermediates that no caller
    holds: a fresh tensor of tens of MB costs more in page faults, on first touch, than
    the kernel that fills it."""
    numel = math.prod(shape)
    if numel * 4 > _MAX_SCRATCH_BYTES:
        return torch.empty(shape, dtype=torch.float32)
    buffers = _scratch_buffers.__dict__.setdefault("by_name", {})
    held = buffers.get(name)
    if held is None or held.numel() < numel:
        held = buffers[name] = torch.empty(numel, dtype=torch.float32)
    return held[:numel].view(shape)


def _conv_forward(
    xr: Tensor, stride: int, taps: Tensor, bias: Tensor | None, out: Tensor | None = None
) -> Tensor:
    """``conv_silu_fwd`` over every channel range: ``xr`` rows ``stride`` apart -> ``[B, L, C]``
    (into ``out`` when given)."""
    b, length = xr.shape[:2]
    channels = taps.shape[1]
    if out is None:
        out = torch.empty(b, length, channels, dtype=torch.float32)
    lib = _load()
    args = (xr.data_ptr(), stride, taps.data_ptr(), _ptr(bias), out.data_ptr())
    sizes = (b, length, channels, taps.shape[0])
    lib.conv_silu_fwd_par(*args, *sizes, *range_bounds(_ranges(channels, out.numel(), 16)))
    return out


def _conv_backward(
    xr: Tensor, stride: int, taps: Tensor, bias: Tensor | None, grad: Tensor, grad_x: Tensor
) -> tuple[Tensor, Tensor | None]:
    """``conv_silu_bwd``: writes ``grad_x`` from ``grad`` (both ``[B, L, C]``, channels
    contiguous, batch rows ``L`` rows apart, any row stride; ``grad_x`` may be ``grad``,
    in place), returns the gradients of ``taps`` and ``bias``."""
    b, length, channels = grad.shape
    grad_taps = torch.zeros_like(taps)
    grad_bias = None if bias is None else torch.zeros_like(bias)
    lib = _load()
    args = (xr.data_ptr(), stride, taps.data_ptr(), _ptr(bias), grad.data_ptr(), grad.stride(1),
            grad_x.data_ptr(), grad_x.stride(1), grad_taps.data_ptr(), _ptr(grad_bias))  # fmt: skip
    sizes = (b, length, channels, taps.shape[0])
    lib.conv_silu_bwd_par(*args, *sizes, *range_bounds(_ranges(channels, grad.numel(), 16)))
    return grad_taps, grad_bias


def _norm_forward(yr: Tensor, y_stride: int, zr: Tensor, z_stride: int, w: Tensor,
                  eps: float, group: int, shape: torch.Size,
                  out: Tensor | None = None) -> Tensor:  # fmt: skip
    dim = shape[-1]
    rows = shape.numel() // dim
    if out is None:
        out = torch.empty(shape, dtype=torch.float32)
    lib = _load()
    args = (yr.data_ptr(), y_stride, zr.data_ptr(), z_stride, w.data_ptr(), out.data_ptr())
    lib.gated_rmsnorm_fwd_par(*args, dim, group, eps, *range_bounds(_ranges(rows, rows * dim, 8)))
    return out


def _norm_backward(yr: Tensor, y_stride: int, zr: Tensor, z_stride: int, w: Tensor,
                   eps: float, group: int, grad: Tensor, grad_z: Tensor,
                   grad_y: Tensor | None = None, normed: Tensor | None = None,
                   ) -> tuple[Tensor, Tensor]:  # fmt: skip
    """``gated_rmsnorm_bwd``: writes ``grad_z`` (rows of any stride) and, when given,
    ``normed`` (the forward's output again, contiguous), returns the gradients of ``y``
    (contiguous; into ``grad_y`` when given) and of the weight."""
    dim = grad.shape[-1]
    rows = grad.numel() // dim
    if grad_y is None:
        grad_y = torch.empty(grad.shape, dtype=torch.float32)
    ranges = _ranges(rows, rows * dim, 8)
    grad_w = torch.zeros(len(ranges), dim, dtype=torch.float32)  # one partial per range
    lib = _load()
    args = (yr.data_ptr(), y_stride, zr.data_ptr(), z_stride, w.data_ptr(), grad.data_ptr(),
            grad_y.data_ptr(), grad_z.data_ptr(), grad_z.stride(-2), _ptr(normed))  # fmt: skip
    lib.gated_rmsnorm_bwd_par(*args, grad_w.data_ptr(), dim, group, eps, *range_bounds(ranges))
    return grad_y, grad_w.sum(0)


def _gemm(a: Tensor, b: Tensor, out: Tensor, bias: Tensor | None = None) -> Tensor:
    """``out = a @ b (+ bias)`` by ``sgemm``: ``a`` ``[M, K]`` of any strides (a transposed
    view is read as it is), ``b`` ``[K, N]`` and ``out`` ``[M, N]`` with unit column
    stride, ``bias`` ``[N]`` contiguous or ``None``; float32. Rows of ``out`` are split
    between threads, or, for a long reduction (a weight gradient, ``K`` = time steps), the
    terms: one partial product per thread, added up into ``out``."""
    m, k = a.shape
    n = b.shape[1]
    lib = _load()
    fixed = (a.data_ptr(), a.stride(0), a.stride(1), b.data_ptr(), b.stride(0))
    if k > 8 * m:  # split the reduction
        ranges = _ranges(k, m * n * k // 64, 256)
        if len(ranges) > 1:
            partials = torch.empty(len(ranges), m, n, dtype=torch.float32)
            lib.sgemm_terms_par(*fixed, partials.data_ptr(), m, n, *range_bounds(ranges))
            torch.sum(partials, 0, out=out)
            return out if bias is None else out.add_(bias)
    rest = (out.data_ptr(), out.stride(0), _ptr(bias), n, 0)
    lib.sgemm_rows_par(*fixed, *rest, *range_bounds(_ranges(m, m * n * k // 64, _GEMM_ROWS)), 0, k)
    return out


class _ConvSiLU(torch.autograd.Function):
    """``silu(bias + sum_k taps[k] x_{t-K+1+k})`` on time-major ``[B, L, C]``, one C pass
    each way; the backward recomputes the pre-activation from ``x``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, taps: Tensor, bias: Tensor | None) -> Tensor:
        xr, stride = _rows(x)
        taps_c = taps.detach().contiguous()
        bias_c = None if bias is None else bias.detach().contiguous()
        ctx.save_for_backward(xr, taps_c, bias_c)
        ctx.stride = stride
        return _conv_forward(xr, stride, taps_c, bias_c)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        xr, taps, bias = ctx.saved_tensors
        grad_x = torch.empty(grad.shape, dtype=torch.float32)
        grad_taps, grad_bias = _conv_backward(
            xr, ctx.stride, taps, bias, grad.contiguous(), grad_x
        )
        return grad_x, grad_taps, grad_bias


def causal_conv1d_silu(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``silu(causal_conv1d(x, weight, bias))`` from a zero history, fused; differentiable.

    ``x`` ``[B, L, C]`` float32 (a strided slice of a wider tensor is read in place),
    ``weight`` ``[C, 1, K]`` (``nn.Conv1d(groups=C)``), ``bias`` ``[C]`` or ``None`` ->
    ``[B, L, C]`` contiguous. Equals :func:`~mambakit.ssm.ops.causal_conv1d_ref` followed by
    ``F.silu``.
    """
    taps = weight[:, 0].t()  # [K, C]
    return _ConvSiLU.apply(x, taps, bias)


def _norm_rows(y: Tensor, z: Tensor) -> tuple[Tensor, int, Tensor, int]:
    three = (lambda t: t.reshape(-1, *t.shape[-2:])) if y.ndim > 2 else (lambda t: t)
    return (*_rows(three(y)), *_rows(three(z)))


class _GatedNorm(torch.autograd.Function):
    """``RMSNorm(y * silu(z)) * weight`` per group of ``group`` channels, one C pass each way."""

    @staticmethod
    def forward(ctx: Any, y: Tensor, z: Tensor, weight: Tensor, eps: float, group: int) -> Tensor:
        yr, y_stride, zr, z_stride = _norm_rows(y, z)
        w = weight.detach().contiguous()
        ctx.save_for_backward(yr, zr, w)
        ctx.layout = (y_stride, z_stride, eps, group)
        return _norm_forward(yr, y_stride, zr, z_stride, w, eps, group, y.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor, None, None]:
        yr, zr, w = ctx.saved_tensors
        y_stride, z_stride, eps, group = ctx.layout
        grad_z = torch.empty(grad.shape, dtype=torch.float32)
        grad_y, grad_w = _norm_backward(
            yr, y_stride, zr, z_stride, w, eps, group, grad.contiguous(), grad_z
        )
        return grad_y, grad_z, grad_w, None, None


def gated_rms_norm(y: Tensor, z: Tensor, weight: Tensor, eps: float, group_size: int) -> Tensor:
    """``RMSNorm(y * silu(z)) * weight`` over groups of ``group_size`` channels, fused.

    ``y``, ``z`` ``[..., D]`` float32 of one shape (``z`` may be a strided slice of a wider
    tensor: read in place), ``weight`` ``[D]`` -> ``[..., D]`` contiguous; differentiable in
    all three. Equals :class:`~mambakit.ssm.mamba2.GatedRMSNorm`'s PyTorch path.
    """
    if y.shape != z.shape or y.shape[-1] % group_size:
        raise ValueError(
            f"gated_rms_norm: y {tuple(y.shape)} and z {tuple(z.shape)} must match, with the "
            f"last dimension a multiple of group_size {group_size}"
        )
    return _GatedNorm.apply(y, z, weight, float(eps), int(group_size))


class _Mamba2Layer(torch.autograd.Function):
    """The whole Mamba-2 layer, ``in_proj`` to ``out_proj``, as one autograd node.

    ``x`` ``[B, L, d_model]`` -> ``out_proj(gated_norm(ssd_scan(silu(conv(xBC)),
    softplus(dt + dt_bias)), z))`` ``[B, L, d_model]`` and the final SSM state, where
    ``z, xBC, dt`` are ``in_proj(x)`` side by side (``zxbcdt``, rows padded to a whole
    vector). The projections are the C ``sgemm``; every other stage reads its slice of
    ``zxbcdt`` in place. The node keeps only what is expensive to recompute: the scan's
    output ``y`` and its checkpoints (plus ``x``, ``dt`` and the weights). The backward
    computes ``zxbcdt``, the conv's output and the norm's output again, into this thread's
    scratch buffers, as are all its intermediates (the gradient of ``zxbcdt``, of the
    norm's input and output, the scan's per-thread partial sums): a fresh tensor of tens
    of MB costs more in page faults, on first touch, than the kernel that fills it, and
    more than the recomputation. Only the outputs and the gradients returned are new
    tensors.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, in_w: Tensor, in_b: Tensor | None, conv_w: Tensor,
                conv_b: Tensor | None, dt_bias: Tensor, A_log: Tensor, D: Tensor,
                norm_w: Tensor, out_w: Tensor, out_b: Tensor | None,
                initial_state: Tensor | None, dims: tuple, keep: bool,
                ) -> tuple[Tensor, Tensor]:  # fmt: skip
        from . import cpu_kernel

        d_inner, heads, headdim, groups, d_state, eps, group_size = dims
        b, length, d_model = x.shape
        x = x.detach()
        if x.stride(-1) != 1:  # the weight gradient reads rows of x as whole vectors
            x = x.contiguous()
        in_t, in_bias = _in_weights(in_w, in_b)
        zxbcdt = _in_project(x, in_t, in_bias)  # [B, L, width] (scratch)
        taps = conv_w.detach()[:, 0].t().contiguous()  # [K, conv_dim]
        bias = None if conv_b is None else conv_b.detach().contiguous()
        act = _conv_act(zxbcdt, d_inner, taps, bias)  # [B, L, conv_dim] (scratch)
        dt_pre = zxbcdt[..., d_inner + taps.shape[1] : in_w.shape[0]] + dt_bias.detach()
        dt = torch.nn.functional.softplus(dt_pre)  # [B, L, H]
        A = -torch.exp(A_log.detach().float())
        h0 = None if initial_state is None else initial_state.detach()
        x_s, B_s, C_s = _scan_views(act, dims)
        y_buffer = None if keep else _scratch("y", b, length, heads, headdim)
        y, state, chk, saved = cpu_kernel._scan_forward(
            "ssd_scan", (x_s, dt, A, B_s, C_s, D.detach(), h0), keep, y_buffer
        )
        y = y.view(b, length, d_inner)
        w = norm_w.detach().contiguous()
        normed = _norm_forward(y, d_inner, zxbcdt, zxbcdt.stride(1), w, eps, group_size,
                               y.shape, _scratch("normed", b, length, d_inner))  # fmt: skip
        out_t = out_w.detach().t().contiguous()  # [d_inner, d_model]
        out = torch.empty(b, length, d_model, dtype=torch.float32)
        out_b_c = None if out_b is None else out_b.detach().contiguous()
        _gemm(normed.view(-1, d_inner), out_t, out.view(-1, d_model), out_b_c)
        if keep:
            _, dt, _, _, _, D, h0 = saved  # as the scan read them
            in_w, out_w = in_w.detach().contiguous(), out_w.detach().contiguous()
            ctx.save_for_backward(x, in_w, in_t, in_bias, taps, bias, dt_pre, dt, A, D, h0, y,
                                  w, out_w, chk)  # fmt: skip
            ctx.dims = dims
            ctx.widths = (in_w.shape[0], out_b is not None)
        return out, state

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_state: Tensor | None) -> tuple:
        from . import cpu_kernel

        saved_tensors = ctx.saved_tensors
        x, in_w, in_t, in_bias, taps, bias, dt_pre, dt, A, D, h0, y, w, out_w, chk = saved_tensors
        d_inner, heads, headdim, groups, d_state, eps, group_size = ctx.dims
        width, has_out_b = ctx.widths
        b, length, d_model = x.shape
        rows = b * length
        gs = groups * d_state
        conv_dim = d_inner + 2 * gs
        # the forward's intermediates again, into scratch
        zxbcdt = _in_project(x, in_t, in_bias)
        act = _conv_act(zxbcdt, d_inner, taps, bias)
        stride = zxbcdt.stride(1)
        if grad_out is None:
            grad_out = torch.zeros(b, length, d_model)
        g_out = grad_out.reshape(rows, d_model)
        # out_proj: the gradient of the norm's output, and of the weight from that output
        grad_normed = _gemm(g_out, out_w, _scratch("grad_normed", rows, d_inner))
        grad = _scratch("grad", b, length, stride)  # of zxbcdt
        normed = _scratch("normed", rows, d_inner)
        grad_y, grad_norm_w = _norm_backward(
            y, d_inner, zxbcdt, stride, w, eps, group_size, grad_normed,
            grad[..., :d_inner], _scratch("grad_y", b, length, d_inner), normed,
        )  # fmt: skip
        needs = ctx.needs_input_grad
        grad_out_w = _gemm(g_out.t(), normed, torch.empty(d_model, d_inner)) if needs[9] else None
        # the scan backward writes the gradient of x where the conv's input gradient goes,
        # and those of B, C beside it; the conv backward turns them into it in place
        grad_xbc = grad[..., d_inner : d_inner + conv_dim]
        grad_bc = (grad_xbc[..., d_inner : d_inner + gs].unflatten(-1, (groups, d_state)),
                   grad_xbc[..., d_inner + gs :].unflatten(-1, (groups, d_state)))  # fmt: skip
        x_s, B_s, C_s = (cpu_kernel._prep_rows(t) for t in _scan_views(act, ctx.dims))
        saved = (x_s, dt, A, B_s, C_s, D, h0)
        grads = cpu_kernel._scan_backward(
            "ssd_scan", saved, chk, grad_y.view(b, length, heads, headdim), grad_state,
            grad_x=grad_xbc[..., :d_inner].unflatten(-1, (heads, headdim)),
            scratch=_scratch, sums_into=(None, None, *grad_bc, None),
        )  # fmt: skip
        _, grad_dt, grad_A, _, _, grad_D, grad_h0 = grads
        grad_taps, grad_bias = _conv_backward(
            zxbcdt[..., d_inner:], stride, taps, bias, grad_xbc, grad_xbc
        )
        grad_dt_raw = grad[..., d_inner + conv_dim : width]
        torch.mul(grad_dt, torch.sigmoid(dt_pre), out=grad_dt_raw)  # softplus' = sigmoid
        # in_proj: the gradients of x and of the weight
        g_zxbcdt = grad.view(rows, stride)[:, :width]
        grad_x = grad_in_w = None
        if needs[0]:
            grad_x = _gemm(g_zxbcdt, in_w, torch.empty(rows, d_model)).view(b, length, d_model)
        if needs[1]:
            grad_in_w = _gemm(g_zxbcdt.t(), x.reshape(rows, d_model), torch.empty(width, d_model))
        return (
            grad_x,
            grad_in_w,
            g_zxbcdt.sum(0) if needs[2] else None,
            grad_taps.t().unsqueeze(1) if needs[3] else None,  # [conv_dim, 1, K]
            grad_bias if needs[4] else None,
            grad_dt_raw.sum(dim=(0, 1)) if needs[5] else None,
            grad_A * A if needs[6] else None,  # A = -exp(A_log)
            grad_D if needs[7] else None,
            grad_norm_w if needs[8] else None,
            grad_out_w,
            g_out.sum(0) if has_out_b and needs[10] else None,
            grad_h0 if needs[11] else None,
            None,
            None,
        )


def _in_weights(in_w: Tensor, in_b: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """``in_proj``'s weight ``[F, d_model]`` transposed, ``[d_model, F']``, and its bias
    ``[F']``, zero-padded to ``F'`` = ``F`` rounded up to a whole vector, so that every row
    of ``zxbcdt`` is whole vectors."""
    width, d_model = in_w.shape
    padded = -(-width // _VECTOR) * _VECTOR
    in_t = torch.zeros(d_model, padded, dtype=torch.float32)
    in_t[:, :width] = in_w.detach().t()
    if in_b is None:
        return in_t, None
    bias = torch.zeros(padded, dtype=torch.float32)
    bias[:width] = in_b.detach()
    return in_t, bias


def _in_project(x: Tensor, in_t: Tensor, in_bias: Tensor | None) -> Tensor:
    """``zxbcdt = x @ in_t (+ bias)`` ``[B, L, F']`` into this thread's scratch buffer."""
    b, length, d_model = x.shape
    out = _scratch("zxbcdt", b * length, in_t.shape[1])
    _gemm(x.reshape(b * length, d_model), in_t, out, in_bias)
    return out.view(b, length, in_t.shape[1])


def _conv_act(zxbcdt: Tensor, d_inner: int, taps: Tensor, bias: Tensor | None) -> Tensor:
    """``silu(conv(xBC))`` ``[B, L, conv_dim]`` from ``zxbcdt``'s slice, into scratch."""
    b, length, _ = zxbcdt.shape
    conv_dim = taps.shape[1]
    xbc = zxbcdt[..., d_inner : d_inner + conv_dim]
    return _conv_forward(xbc, zxbcdt.stride(1), taps, bias,
                         _scratch("act", b, length, conv_dim))  # fmt: skip


def _scan_views(act: Tensor, dims: tuple) -> tuple[Tensor, Tensor, Tensor]:
    """``x`` ``[B, L, H, P]``, ``B``, ``C`` ``[B, L, G, N]``: views of the conv's output
    (rows ``conv_dim`` apart)."""
    d_inner, heads, headdim, groups, d_state = dims[:5]
    gs = groups * d_state
    return (act[..., :d_inner].unflatten(-1, (heads, headdim)),
            act[..., d_inner : d_inner + gs].unflatten(-1, (groups, d_state)),
            act[..., d_inner + gs :].unflatten(-1, (groups, d_state)))  # fmt: skip


def mamba2_layer(layer: Any, x: Tensor, initial_state: Tensor | None) -> tuple[Tensor, Tensor]:
    """:class:`~mambakit.ssm.Mamba2`'s forward from a zero conv history, fused:
    ``x`` ``[B, L, d_model]`` -> ``(y [B, L, d_model], final state [B, H, P, N])``,
    differentiable in ``x``, every parameter of the layer and ``initial_state``. Equals
    the PyTorch stages of ``_mamba2_forward``."""
    params = (layer.in_proj.weight, layer.in_proj.bias, layer.conv1d.weight,
              layer.conv1d.bias, layer.dt_bias, layer.A_log, layer.D, layer.norm.weight,
              layer.out_proj.weight, layer.out_proj.bias)  # fmt: skip
    tensors = (x, *params, initial_state)
    keep = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    dims = (layer.d_inner, layer.n_heads, layer.headdim, layer.ngroups, layer.d_state,
            float(layer.norm.eps), layer.norm.group_size)  # fmt: skip
    return _Mamba2Layer.apply(*tensors, dims, keep)
