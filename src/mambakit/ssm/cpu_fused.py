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
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .cbuild import KernelBuildError, load_library
from .cpu_kernel import _run_ranges

__all__ = ["available", "causal_conv1d_silu", "gated_rms_norm", "supports", "unavailable_reason"]

logger = logging.getLogger(__name__)

_SOURCE_PATH = Path(__file__).with_name("cpu_fused.c")
_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-shared", "-fPIC"]
_library: ctypes.CDLL | None = None
_build_failed: str | None = None
# Elements (batch x length x channels) below which a kernel runs on one thread.
_MIN_PARALLEL_ELEMENTS = 2**16

_P, _L, _F = ctypes.c_void_p, ctypes.c_long, ctypes.c_float
_SIGNATURES = {
    "conv_silu_fwd": [_P, _L, _P, _P, _P] + [_L] * 6,
    "conv_silu_bwd": [_P, _L, _P, _P, _P, _P, _P, _P] + [_L] * 6,
    "gated_rmsnorm_fwd": [_P, _L, _P, _L, _P, _P, _L, _L, _F, _L, _L],
    "gated_rmsnorm_bwd": [_P, _L, _P, _L, _P, _P, _P, _P, _P, _L, _L, _F, _L, _L],
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


class _ConvSiLU(torch.autograd.Function):
    """``silu(bias + sum_k taps[k] x_{t-K+1+k})`` on time-major ``[B, L, C]``, one C pass
    each way; the backward recomputes the pre-activation from ``x``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, taps: Tensor, bias: Tensor | None) -> Tensor:
        b, length, channels = x.shape
        xr, stride = _rows(x)
        taps_c = taps.detach().contiguous()
        bias_c = None if bias is None else bias.detach().contiguous()
        out = torch.empty(b, length, channels, dtype=torch.float32)
        lib = _load()
        args = (xr.data_ptr(), stride, taps_c.data_ptr(), _ptr(bias_c), out.data_ptr())
        sizes = (b, length, channels, taps.shape[0])

        def run(_: int, c0: int, c1: int) -> None:
            lib.conv_silu_fwd(*args, *sizes, c0, c1)

        _run_ranges(run, _ranges(channels, b * length * channels, 16))
        ctx.save_for_backward(xr, taps_c, bias_c)
        ctx.stride = stride
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        xr, taps, bias = ctx.saved_tensors
        b, length, channels = grad.shape
        grad = grad.contiguous()
        grad_x = torch.empty(b, length, channels, dtype=torch.float32)
        grad_taps = torch.zeros_like(taps)
        grad_bias = None if bias is None else torch.zeros_like(bias)
        lib = _load()
        args = (xr.data_ptr(), ctx.stride, taps.data_ptr(), _ptr(bias), grad.data_ptr(),
                grad_x.data_ptr(), grad_taps.data_ptr(), _ptr(grad_bias))  # fmt: skip
        sizes = (b, length, channels, taps.shape[0])

        def run(_: int, c0: int, c1: int) -> None:
            lib.conv_silu_bwd(*args, *sizes, c0, c1)

        _run_ranges(run, _ranges(channels, b * length * channels, 16))
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


class _GatedNorm(torch.autograd.Function):
    """``RMSNorm(y * silu(z)) * weight`` per group of ``group`` channels, one C pass each way."""

    @staticmethod
    def forward(ctx: Any, y: Tensor, z: Tensor, weight: Tensor, eps: float, group: int) -> Tensor:
        shape = y.shape
        dim = shape[-1]
        yr, y_stride = _rows(y.reshape(-1, shape[-2], dim) if y.ndim > 2 else y)
        zr, z_stride = _rows(z.reshape(-1, shape[-2], dim) if z.ndim > 2 else z)
        w = weight.detach().contiguous()
        rows = y.numel() // dim
        out = torch.empty(shape, dtype=torch.float32)
        lib = _load()
        args = (yr.data_ptr(), y_stride, zr.data_ptr(), z_stride, w.data_ptr(), out.data_ptr())

        def run(_: int, r0: int, r1: int) -> None:
            lib.gated_rmsnorm_fwd(*args, dim, group, eps, r0, r1)

        _run_ranges(run, _ranges(rows, rows * dim, 8))
        ctx.save_for_backward(yr, zr, w)
        ctx.layout = (y_stride, z_stride, eps, group, shape)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor, None, None]:
        yr, zr, w = ctx.saved_tensors
        y_stride, z_stride, eps, group, shape = ctx.layout
        dim = shape[-1]
        rows = grad.numel() // dim
        grad = grad.contiguous()
        grad_y = torch.empty(shape, dtype=torch.float32)
        grad_z = torch.empty(shape, dtype=torch.float32)
        ranges = _ranges(rows, rows * dim, 8)
        grad_w = torch.zeros(len(ranges), dim, dtype=torch.float32)  # one partial per range
        lib = _load()
        args = (yr.data_ptr(), y_stride, zr.data_ptr(), z_stride, w.data_ptr(),
                grad.data_ptr(), grad_y.data_ptr(), grad_z.data_ptr())  # fmt: skip

        def run(i: int, r0: int, r1: int) -> None:
            lib.gated_rmsnorm_bwd(*args, grad_w[i].data_ptr(), dim, group, eps, r0, r1)

        _run_ranges(run, ranges)
        return grad_y, grad_z, grad_w.sum(0), None, None


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
