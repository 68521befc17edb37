"""Fused C kernels for the elementwise stages of the Mamba-2 layer on CPU, forward and backward.

Two stages of :func:`~mambakit.ssm.mamba2._mamba2_forward` between the projections and the
scan were each several PyTorch passes over ``[B, L, C]`` tensors (and, under autograd,
several more saved tensors and backward nodes):

* :func:`causal_conv1d_silu`: ``silu(causal_conv1d(x, weight, bias))``, the depthwise causal
  conv of ``(x, B, C)`` and its activation in one pass that reads the slice of ``in_proj``'s
  output in place (no copy of the strided slice), its backward in one more (the
  pre-activation is recomputed, not saved);
* :func:`gated_rms_norm`: ``RMSNorm(y * silu(z)) * weight`` per group (the Mamba-2 output
  norm, :class:`~mambakit.ssm.mamba2.GatedRMSNorm`), ``z`` read in place from ``in_proj``'s
  output, statistics recomputed in the backward.

Both keep their PyTorch twins as the reference (``causal_conv1d_ref`` + ``F.silu``, and
``GatedRMSNorm``'s torch path); tests/ssm check values and every gradient against them.
The source (``cpu_fused.c``) is built once by :func:`~mambakit.ssm.cbuild.load_library`;
:func:`available` says whether that worked, and the layer falls back to the PyTorch path
when it did not. The conv splits channels between threads, the norm splits rows, on the
thread pool of :mod:`~mambakit.ssm.cpu_kernel` (ctypes calls release the GIL).
"""

from __future__ import annotations

import ctypes
import logging
import math
import threading
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .cbuild import KernelBuildError, load_library
from .cpu_kernel import _run_ranges

__all__ = [
    "available",
    "causal_conv1d_silu",
    "gated_rms_norm",
    "in_projection",
    "mamba2_body",
    "supports",
    "unavailable_reason",
]

logger = logging.getLogger(__name__)

_SOURCE_PATH = Path(__file__).with_name("cpu_fused.c")
_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-shared", "-fPIC"]
_library: ctypes.CDLL | None = None
_build_failed: str | None = None
# Elements (batch x length x channels) below which a kernel runs on one thread.
_MIN_PARALLEL_ELEMENTS = 2**16
# Largest buffer :func:`_scratch` keeps per name and thread (the three of a d_model 64
# layer at L = 44,100 take 90 MB).
_MAX_SCRATCH_BYTES = 2**28
_scratch_buffers = threading.local()

_P, _L, _F = ctypes.c_void_p, ctypes.c_long, ctypes.c_float
_SIGNATURES = {
    "conv_silu_fwd": [_P, _L, _P, _P, _P] + [_L] * 6,
    "conv_silu_bwd": [_P, _L, _P, _P, _P, _L, _P, _L, _P, _P] + [_L] * 6,
    "gated_rmsnorm_fwd": [_P, _L, _P, _L, _P, _P, _L, _L, _F, _L, _L],
    "gated_rmsnorm_bwd": [_P, _L, _P, _L, _P, _P, _P, _P, _L, _P, _L, _L, _F, _L, _L],
}


def _load() -> ctypes.CDLL | None:
    global _library, _build_failed
    if _library is not None or _build_failed is not None:
        return _library
    try:
        try:
            source = _SOURCE_PATH.read_text()
        except OSError as e:  # an install without the package data
            raise KernelBuildError(f"cpu_fused: cannot read {_SOURCE_PATH}: {e}") from e
        lib = load_library("mamba2_fused", source, _FLAGS)
    except KernelBuildError as e:
        _build_failed = str(e)
        logger.info("%s", _build_failed)
        return None
    for name, argtypes in _SIGNATURES.items():
        getattr(lib, name).restype = None
        getattr(lib, name).argtypes = argtypes
    _library = lib
    return lib


def available() -> bool:
    """Whether the kernels are built (building them now if needed) and loadable."""
    return _load() is not None


def unavailable_reason() -> str | None:
    """Why :func:`available` is false (``None`` when it is true or was not tried)."""
    return _build_failed


def supports(*tensors: Tensor) -> bool:
    """Whether the fused kernels can run on ``tensors``: float32 CPU tensors, no tracing."""
    return (
        not torch.compiler.is_compiling()
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and available()
    )


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
    _run_ranges(lambda _, c0, c1: lib.conv_silu_fwd(*args, *sizes, c0, c1),
                _ranges(channels, b * length * channels, 16))  # fmt: skip
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
    _run_ranges(lambda _, c0, c1: lib.conv_silu_bwd(*args, *sizes, c0, c1),
                _ranges(channels, b * length * channels, 16))  # fmt: skip
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
    _run_ranges(lambda _, r0, r1: lib.gated_rmsnorm_fwd(*args, dim, group, eps, r0, r1),
                _ranges(rows, rows * dim, 8))  # fmt: skip
    return out


def _norm_backward(yr: Tensor, y_stride: int, zr: Tensor, z_stride: int, w: Tensor,
                   eps: float, group: int, grad: Tensor, grad_z: Tensor,
                   ) -> tuple[Tensor, Tensor]:  # fmt: skip
    """``gated_rmsnorm_bwd``: writes ``grad_z`` (rows of any stride), returns the gradients
    of ``y`` (contiguous) and of the weight."""
    dim = grad.shape[-1]
    rows = grad.numel() // dim
    grad_y = torch.empty(grad.shape, dtype=torch.float32)
    ranges = _ranges(rows, rows * dim, 8)
    grad_w = torch.zeros(len(ranges), dim, dtype=torch.float32)  # one partial per range
    lib = _load()
    args = (yr.data_ptr(), y_stride, zr.data_ptr(), z_stride, w.data_ptr(), grad.data_ptr(),
            grad_y.data_ptr(), grad_z.data_ptr(), grad_z.stride(-2))  # fmt: skip

    def run(i: int, r0: int, r1: int) -> None:
        lib.gated_rmsnorm_bwd(*args, grad_w[i].data_ptr(), dim, group, eps, r0, r1)

    _run_ranges(run, ranges)
    return grad_y, grad_w.sum(0)


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


class _Mamba2Body(torch.autograd.Function):
    """The Mamba-2 layer between its two projections as one autograd node.

    ``zxbcdt`` ``[B, L, F]`` (``in_proj``'s output: ``z``, ``xBC``, ``dt`` side by side) ->
    ``gated_norm(ssd_scan(silu(conv(xBC)), softplus(dt + dt_bias)), z)`` ``[B, L, d_inner]``
    and the final SSM state. Every stage reads its slice of ``zxbcdt`` in place, and the
    backward writes the gradients of ``z``, ``xBC`` and ``dt`` straight into their slices
    of one ``[B, L, F]`` buffer (no split copies, no concatenation), from the C backwards
    of the norm, the scan (:mod:`~mambakit.ssm.cpu_kernel`) and the conv.
    """

    @staticmethod
    def forward(ctx: Any, zxbcdt: Tensor, conv_w: Tensor, conv_b: Tensor | None,
                dt_bias: Tensor, A_log: Tensor, D: Tensor, norm_w: Tensor,
                initial_state: Tensor | None, dims: tuple, keep: bool,
                ) -> tuple[Tensor, Tensor]:  # fmt: skip
        from . import cpu_kernel

        d_inner, heads, headdim, groups, d_state, eps, group_size = dims
        b, length, _ = zxbcdt.shape
        conv_dim = d_inner + 2 * groups * d_state
        zxbcdt = zxbcdt.detach().contiguous()
        z = zxbcdt[..., :d_inner]
        xbc = zxbcdt[..., d_inner : d_inner + conv_dim]
        dt_raw = zxbcdt[..., d_inner + conv_dim :]
        taps = conv_w.detach()[:, 0].t().contiguous()  # [K, conv_dim]
        bias = None if conv_b is None else conv_b.detach().contiguous()
        # without a backward, the conv and scan outputs are the body's own intermediates:
        # per-thread buffers reused call after call (no page faults on fresh memory)
        scratch = (lambda name, *shape: None) if keep else _scratch
        act = _conv_forward(xbc, zxbcdt.stride(1), taps, bias,
                            scratch("act", b, length, conv_dim))  # [B, L, conv_dim] fmt: skip
        gs = groups * d_state
        x = act[..., :d_inner].unflatten(-1, (heads, headdim))  # views, rows conv_dim apart
        B = act[..., d_inner : d_inner + gs].unflatten(-1, (groups, d_state))
        C = act[..., d_inner + gs :].unflatten(-1, (groups, d_state))
        dt_pre = dt_raw + dt_bias.detach()  # [B, L, H]
        dt = torch.nn.functional.softplus(dt_pre)
        A = -torch.exp(A_log.detach().float())
        inputs = (x, dt, A, B, C, D.detach(), initial_state)
        y_buffer = scratch("y", b, length, heads, headdim)
        y, state, chk, saved = cpu_kernel._scan_forward("ssd_scan", inputs, keep, y_buffer)
        y = y.view(b, length, d_inner)
        w = norm_w.detach().contiguous()
        out = _norm_forward(y, d_inner, z, zxbcdt.stride(1), w, eps, group_size, y.shape,
                            scratch("normed", b, length, d_inner))  # fmt: skip
        if keep:
            ctx.save_for_backward(zxbcdt, taps, bias, dt_pre, y, w, chk, *saved)
            ctx.dims = dims
        return out, state

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_state: Tensor | None) -> tuple:
        from . import cpu_kernel

        zxbcdt, taps, bias, dt_pre, y, w, chk, *saved = ctx.saved_tensors
        d_inner, heads, headdim, groups, d_state, eps, group_size = ctx.dims
        b, length, width = zxbcdt.shape
        gs = groups * d_state
        conv_dim = d_inner + 2 * gs
        grad = torch.empty(b, length, width, dtype=torch.float32)  # of zxbcdt
        if grad_out is None:
            grad_out = torch.zeros(y.shape)
        grad_y, grad_norm_w = _norm_backward(
            y, d_inner, zxbcdt[..., :d_inner], width, w, eps, group_size,
            grad_out.contiguous(), grad[..., :d_inner],
        )  # fmt: skip
        # the gradient of the conv's output goes where the conv's input gradient will be,
        # and the conv backward turns one into the other in place
        grad_xbc = grad[..., d_inner : d_inner + conv_dim]
        grad_x = grad_xbc[..., :d_inner].unflatten(-1, (heads, headdim))
        grads = cpu_kernel._scan_backward(
            "ssd_scan", tuple(saved), chk, grad_y.view(b, length, heads, headdim), grad_state,
            grad_x=grad_x,
        )  # fmt: skip
        _, grad_dt, grad_A, grad_B, grad_C, grad_D, grad_h0 = grads
        grad_xbc[..., d_inner : d_inner + gs] = grad_B.view(b, length, gs)
        grad_xbc[..., d_inner + gs :] = grad_C.view(b, length, gs)
        grad_taps, grad_bias = _conv_backward(
            zxbcdt[..., d_inner:], width, taps, bias, grad_xbc, grad_xbc
        )
        grad_dt_raw = grad[..., d_inner + conv_dim :]
        torch.mul(grad_dt, torch.sigmoid(dt_pre), out=grad_dt_raw)  # softplus' = sigmoid
        A = saved[2]
        needs = ctx.needs_input_grad
        return (
            grad,
            grad_taps.t().unsqueeze(1) if needs[1] else None,  # [conv_dim, 1, K]
            grad_bias if needs[2] else None,
            grad_dt_raw.sum(dim=(0, 1)) if needs[3] else None,
            grad_A * A if needs[4] else None,  # A = -exp(A_log)
            grad_D if needs[5] else None,
            grad_norm_w if needs[6] else None,
            grad_h0 if needs[7] else None,
            None,
            None,
        )


def in_projection(in_proj: torch.nn.Linear, x: Tensor) -> Tensor:
    """``in_proj(x)`` for :func:`mamba2_body`; without autograd into this thread's scratch
    buffer (the body reads it and holds nothing of it), so that the widest tensor of the
    layer is not fresh memory every call."""
    if torch.is_grad_enabled():
        return in_proj(x)
    rows = x.reshape(-1, x.shape[-1])
    out = _scratch("zxbcdt", rows.shape[0], in_proj.out_features)
    if in_proj.bias is None:
        torch.mm(rows, in_proj.weight.t(), out=out)
    else:
        torch.addmm(in_proj.bias, rows, in_proj.weight.t(), out=out)
    return out.view(*x.shape[:-1], in_proj.out_features)


def mamba2_body(layer: Any, zxbcdt: Tensor, initial_state: Tensor | None) -> tuple[Tensor, Tensor]:
    """:class:`~mambakit.ssm.Mamba2`'s forward between ``in_proj`` and ``out_proj``, fused:
    ``zxbcdt`` ``[B, L, F]`` -> ``(normed y [B, L, d_inner], final state [B, H, P, N])``,
    differentiable in ``zxbcdt``, the layer's parameters and ``initial_state``; the conv
    starts from zeros. Equals the PyTorch stages of ``_mamba2_forward``.

    Without autograd (no input requires a gradient, or grad mode off) the normed output
    is this thread's scratch buffer, overwritten by the next such call: consume it (as
    ``out_proj`` does) before calling again."""
    params = (layer.conv1d.weight, layer.conv1d.bias, layer.dt_bias, layer.A_log, layer.D,
              layer.norm.weight)  # fmt: skip
    tensors = (zxbcdt, *params, initial_state)
    keep = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    dims = (layer.d_inner, layer.n_heads, layer.headdim, layer.ngroups, layer.d_state,
            float(layer.norm.eps), layer.norm.group_size)  # fmt: skip
    return _Mamba2Body.apply(*tensors, dims, keep)
