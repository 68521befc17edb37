"""C kernels of the drums model on CPU, forward and backward (``fused.c``): the full-rate
ends of a band path, the residual blocks of the full-rate CNN and the head.

:class:`~mambakit.drums.model.BandPath` turns a band ``[B, 3, n]`` into tokens and back::

    tokens = pool(silu(analysis(band))) / total                  # encoder, [B, C, N]
    y = gate * decode(carrier(band) * spread(tokens) * scale)    # decoder, [B, C_out, n]

each CNN block is ``y + conv_d(silu(y * (1 + g) + b))`` on ``[B, C, n]`` and the head
``w2 silu(conv(x)) + b2``. As PyTorch ops
each step is a pass over a full-rate tensor, saved for the backward or freshly allocated
(on this VM a fresh tens-of-MB tensor costs more in page faults than the op that fills it),
about a dozen per band path and four per CNN block. The kernels compute the per-sample
features one block of samples at a time in a few KB and keep only what leaves the block
(the encoder's raw Gaussian pool, the decoder's or the CNN block's output; in the backward
the input, weight, token, FiLM and gate gradients), recomputing the per-sample features
instead of saving them.

The functions take the tensors as :mod:`mambakit.drums.model` prepares them (zero-padded
input, Gaussian tables, the spread's per-sample normalisation); the model module keeps the
PyTorch twins (``band_encode_ref``, ``band_decode_ref``, ``cnn_block_ref``, ``head_ref``)
and chooses between them. Batch rows are split into one range per thread, and each
kernel runs its ranges as an OpenMP team, which is torch's own intra-op pool (see
:mod:`~mambakit.ssm.cbuild`); sums over the batch go to one double-precision slab per range.
Built once by :func:`~mambakit.ssm.cbuild.load_library`; :func:`available` says whether that
worked.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from mambakit.ssm.cbuild import KernelLibrary, range_bounds

__all__ = [
    "available",
    "cnn_block",
    "decode",
    "encode",
    "gaussian_pool",
    "gaussian_spread",
    "gated_mix",
    "head",
    "supports",
    "unavailable_reason",
]


_SOURCE_PATH = Path(__file__).with_name("fused.c")
# -ffast-math: the vector expf of the SiLU, reductions in vector partial sums; -fopenmp: the
# _par kernels' teams (and the `omp simd` loops)
_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-shared", "-fPIC"]
_P, _L = ctypes.c_void_p, ctypes.c_long
# Each kernel: its pointers, then the bounds of the ranges (a pointer) and their count, then
# its sizes.
_SIGNATURES = {
    f"{name}_par": [_P] * (pointers + 1) + [_L] * (sizes + 1)
    for name, pointers, sizes in [
        ("enc_fwd", 5, 9),
        ("enc_bwd", 7, 9),
        ("dec_fwd", 10, 10),
        ("dec_bwd", 16, 10),
        ("cnn_fwd", 6, 3),
        ("cnn_bwd", 10, 3),
        ("head_fwd", 6, 3),
        ("head_bwd", 10, 3),
        ("gauss_pool", 4, 5),
        ("gauss_spread", 4, 5),
        ("mix_fwd", 4, 1),
        ("mix_bwd", 7, 1),
    ]
}
_KERNELS = KernelLibrary("drums_fused", _SOURCE_PATH, _SIGNATURES, _FLAGS)
# Samples per block of patches (a multiple of 8, the kernels' vector width), and the most
# conv taps (C_in x K) and Gaussian tokens (2R + 1) the kernels keep in vector registers.
BLOCK_SAMPLES = 256
_MAX_TAPS = 32
# Samples (batch x channels x length) below which a kernel runs on one thread.
_MIN_PARALLEL_SAMPLES = 2**16


_load = _KERNELS.load
available = _KERNELS.available
supports = _KERNELS.supports
unavailable_reason = _KERNELS.unavailable_reason


def _ptr(t: Tensor) -> int:
    return t.data_ptr()


def _batch_ranges(batch: int, samples: int) -> list[tuple[int, int]]:
    threads = max(1, min(torch.get_num_threads(), batch))
    if samples < _MIN_PARALLEL_SAMPLES:
        threads = 1
    return [(batch * i // threads, batch * (i + 1) // threads) for i in range(threads)]


def _partials(ranges: list, *shapes: tuple[int, ...]) -> list[Tensor]:
    return [torch.zeros(len(ranges), *shape, dtype=torch.float64) for shape in shapes]


def patches_per_block(patch: int) -> int:
    """Patches in one block of the kernels: the token axis is padded to a multiple of it."""
    return max(1, BLOCK_SAMPLES // patch)


def supports_shape(patch: int, kernel_taps: int, gaussian_taps: int) -> bool:
    """Whether the kernels take a band path of this patch, conv size (``C_in x K``) and
    Gaussian length (``2R + 1``): whole vectors per block, taps within the registers kept."""
    block = patches_per_block(patch) * patch
    transposed = patch < 32  # the short-patch loops run over vectors of patches
    return (
        patch > 1
        and block % 8 == 0
        and (not transposed or patches_per_block(patch) % 8 == 0)
        and kernel_taps <= _MAX_TAPS
        and gaussian_taps <= _MAX_TAPS
    )


def _sizes(xp: Tensor, conv_weight: Tensor, table: Tensor, n_tok: int, n: int) -> tuple:
    """``(C, CI, K, LP, F, R, N, n, P)`` as the kernels take them."""
    channels, c_in, kernel = conv_weight.shape
    span, factor = table.shape
    sizes = (channels, c_in, kernel, xp.shape[-1], factor, (span - 1) // 2, n_tok, n)
    return (*sizes, patches_per_block(factor))


def _resample(kind: str, x: Tensor, scale: Tensor | None, table: Tensor, n_tok: int, n: int,
              out_len: int) -> Tensor:  # fmt: skip
    lib = _load()
    x, table = x.detach().contiguous(), table.detach().contiguous()
    scale = None if scale is None else scale.detach().contiguous()
    out = x.new_empty(x.shape[0], out_len)
    sizes = (table.shape[1], (table.shape[0] - 1) // 2, n_tok, n, patches_per_block(table.shape[1]))
    bounds = range_bounds(_batch_ranges(x.shape[0], x.shape[0] * n))
    scale_ptr = None if scale is None else _ptr(scale)
    getattr(lib, f"{kind}_par")(_ptr(x), scale_ptr, _ptr(table), _ptr(out), *bounds, *sizes)
    return out


def gaussian_pool(x: Tensor, scale: Tensor | None, table: Tensor, n_tok: int) -> Tensor:
    """Rows ``x [R, n]`` (times ``scale [NB F]`` when given) -> ``[R, n_tok]``, the
    Gaussian pool of ``table [2R + 1, F]`` (``model._pool``'s sum). Not differentiable."""
    return _resample("gauss_pool", x, scale, table, n_tok, x.shape[-1], n_tok)


def gaussian_spread(tokens_padded: Tensor, scale: Tensor | None, table: Tensor, n_tok: int,
                    n: int) -> Tensor:  # fmt: skip
    """Padded tokens ``[R, NB + 2R]`` (as for :func:`decode`) -> ``[R, n]``, their Gaussian
    spread by ``table [2R + 1, F]`` (``model._spread``), times ``scale [NB F]`` when given.
    Not differentiable."""
    return _resample("gauss_spread", tokens_padded, scale, table, n_tok, n, n)


class _Encode(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, xp: Tensor, wa: Tensor, ba: Tensor, table: Tensor, n_tok: int,
                n: int) -> Tensor:  # fmt: skip
        lib = _load()
        xp, wa, ba, table = (t.detach().contiguous() for t in (xp, wa, ba, table))
        sizes = _sizes(xp, wa, table, n_tok, n)
        tok = xp.new_empty(xp.shape[0], sizes[0], n_tok)
        bounds = range_bounds(_batch_ranges(xp.shape[0], xp.shape[0] * sizes[0] * n))
        lib.enc_fwd_par(_ptr(xp), _ptr(wa), _ptr(ba), _ptr(table), _ptr(tok), *bounds, *sizes)
        ctx.save_for_backward(xp, wa, ba, table)
        ctx.sizes = sizes
        return tok

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple:
        lib = _load()
        xp, wa, ba, table = ctx.saved_tensors
        sizes = ctx.sizes
        grad = grad.contiguous()
        ranges = _batch_ranges(xp.shape[0], xp.shape[0] * sizes[0] * sizes[7])
        dwa, dba = _partials(ranges, wa.shape, ba.shape)
        lib.enc_bwd_par(_ptr(xp), _ptr(wa), _ptr(ba), _ptr(table), _ptr(grad), _ptr(dwa),
                        _ptr(dba), *range_bounds(ranges), *sizes)  # fmt: skip
        return None, dwa.sum(0).float(), dba.sum(0).float(), None, None, None


def encode(xp: Tensor, weight: Tensor, bias: Tensor, table: Tensor, n_tok: int, n: int) -> Tensor:
    """The encoder's raw Gaussian pool ``[B, C, n_tok]`` of ``silu(conv(x))``: ``xp [B, CI,
    NB F + K - 1]`` the band zero-padded (``pad = (K - 1) / 2`` zeros in front; ``NB``:
    ``n_tok`` rounded up to a multiple of :func:`patches_per_block`), ``weight
    [C, CI, K]``, ``bias [C]``, ``table [2R + 1, F]`` the pool's Gaussian weights, ``n`` the
    band's length. Differentiable in ``weight`` and ``bias`` (not in ``xp``)."""
    return _Encode.apply(xp, weight, bias, table, n_tok, n)


class _Decode(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, xp: Tensor, wc: Tensor, bc: Tensor, tokp: Tensor, table: Tensor,
                scale: Tensor, wd: Tensor, bd: Tensor, gate: Tensor, n: int) -> Tensor:  # fmt: skip
        lib = _load()
        inputs = [t.detach().contiguous() for t in (xp, wc, bc, tokp, table, scale, wd, bd, gate)]
        xp, wc, _, tokp, table, _, wd, _, _ = inputs
        n_tok = -(-n // table.shape[1])
        sizes = (*_sizes(xp, wc, table, n_tok, n), wd.shape[0])
        y = xp.new_empty(xp.shape[0], wd.shape[0], n)
        bounds = range_bounds(_batch_ranges(xp.shape[0], xp.shape[0] * sizes[0] * n))
        lib.dec_fwd_par(*map(_ptr, inputs), _ptr(y), *bounds, *sizes)
        ctx.save_for_backward(*inputs)
        ctx.sizes = sizes
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple:
        lib = _load()
        inputs = ctx.saved_tensors
        xp, wc, bc, tokp, _, _, wd, bd, gate = inputs
        sizes = ctx.sizes
        grad = grad.contiguous()
        ranges = _batch_ranges(xp.shape[0], xp.shape[0] * sizes[0] * sizes[7])
        gtokp = torch.zeros_like(tokp)
        dgate = torch.empty_like(gate)
        dwc, dbc, dwd, dbd = _partials(ranges, wc.shape, bc.shape, wd.shape, bd.shape)
        outs = (gtokp, dgate, dwc, dbc, dwd, dbd)
        lib.dec_bwd_par(*map(_ptr, inputs), _ptr(grad), *map(_ptr, outs), *range_bounds(ranges),
                        *sizes)  # fmt: skip
        need = ctx.needs_input_grad
        return (
            None,
            dwc.sum(0).float(),
            dbc.sum(0).float(),
            gtokp if need[3] else None,
            None,
            None,
            dwd.sum(0).float(),
            dbd.sum(0).float(),
            dgate if need[8] else None,
            None,
        )


def decode(xp: Tensor, weight: Tensor, bias: Tensor, tokens_padded: Tensor, table: Tensor,
           scale: Tensor, decoder_weight: Tensor, decoder_bias: Tensor, gate: Tensor,
           n: int) -> Tensor:  # fmt: skip
    """The decoder ``[B, C_out, n]``: ``gate[b] * (decoder_bias + decoder_weight @ (conv(x) *
    spread(tokens) * scale))``. ``xp`` as for :func:`encode` (``weight [C, CI, K]``, ``bias
    [C]``: the carrier convolution), ``tokens_padded [B, C, NB + 2R]`` the tokens with ``R``
    zeros in front and ``NB - N + R`` behind, ``table [2R + 1, F]`` the spread's weights,
    ``scale [NB F]`` its
    per-sample normalisation, ``decoder_weight [C_out, C]``, ``decoder_bias [C_out]``,
    ``gate [B]``. Differentiable in every argument but ``xp``, ``table`` and ``scale``."""
    return _Decode.apply(xp, weight, bias, tokens_padded, table, scale, decoder_weight,
                         decoder_bias, gate, n)  # fmt: skip


class _CnnBlock(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, y: Tensor, scale: Tensor, shift: Tensor, weight: Tensor, bias: Tensor,
                dilation: int) -> Tensor:  # fmt: skip
        lib = _load()
        inputs = [t.detach().contiguous() for t in (y, scale, shift, weight, bias)]
        y = inputs[0]
        out = torch.empty_like(y)
        sizes = (y.shape[1], y.shape[2], dilation)
        bounds = range_bounds(_batch_ranges(y.shape[0], y.numel()))
        lib.cnn_fwd_par(*map(_ptr, inputs), _ptr(out), *bounds, *sizes)
        ctx.save_for_backward(*inputs[:4])
        ctx.sizes = sizes
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple:
        lib = _load()
        inputs = ctx.saved_tensors
        y, scale, _, weight = inputs
        grad = grad.contiguous()
        ranges = _batch_ranges(y.shape[0], y.numel())
        grad_y = torch.empty_like(y)
        grad_scale, grad_shift = torch.empty_like(scale), torch.empty_like(scale)
        grad_w, grad_b = _partials(ranges, weight.shape, weight.shape[:1])
        outs = (grad_y, grad_scale, grad_shift, grad_w, grad_b)
        lib.cnn_bwd_par(*map(_ptr, inputs), _ptr(grad), *map(_ptr, outs), *range_bounds(ranges),
                        *ctx.sizes)  # fmt: skip
        return grad_y, grad_scale, grad_shift, grad_w.sum(0).float(), grad_b.sum(0).float(), None


def cnn_block(y: Tensor, scale: Tensor, shift: Tensor, weight: Tensor, bias: Tensor,
              dilation: int) -> Tensor:  # fmt: skip
    """One residual block of the full-rate CNN, ``y + conv(silu(y * scale + shift))``: ``y
    [B, C, n]``, the FiLM's ``scale`` (``1 + g``) and ``shift`` ``[B, C]``, the 'same'
    3-tap convolution of ``dilation`` (``weight [C, C, 3]``, ``bias [C]``). Differentiable
    in every tensor."""
    return _CnnBlock.apply(y, scale, shift, weight, bias, dilation)


class _Head(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
        lib = _load()
        inputs = [t.detach().contiguous() for t in (x, w1, b1, w2, b2)]
        x = inputs[0]
        out = x.new_empty(x.shape[0], w2.shape[0], x.shape[2])
        sizes = (x.shape[1], w2.shape[0], x.shape[2])
        bounds = range_bounds(_batch_ranges(x.shape[0], x.numel()))
        lib.head_fwd_par(*map(_ptr, inputs), _ptr(out), *bounds, *sizes)
        ctx.save_for_backward(*inputs[:4])
        ctx.sizes = sizes
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple:
        lib = _load()
        inputs = ctx.saved_tensors
        x, w1, b1, w2 = inputs
        grad = grad.contiguous()
        ranges = _batch_ranges(x.shape[0], x.numel())
        grad_x = torch.empty_like(x)
        partials = _partials(ranges, w1.shape, b1.shape, w2.shape, w2.shape[:1])
        lib.head_bwd_par(*map(_ptr, inputs), _ptr(grad), _ptr(grad_x), *map(_ptr, partials),
                         *range_bounds(ranges), *ctx.sizes)  # fmt: skip
        return (grad_x, *(p.sum(0).float() for p in partials))


def head(x: Tensor, weight: Tensor, bias: Tensor, out_weight: Tensor, out_bias: Tensor) -> Tensor:
    """The model's head, ``out_weight @ silu(conv(x)) + out_bias``: ``x [B, C, n]``, a 'same'
    3-tap convolution (``weight [C, C, 3]``, ``bias [C]``), ``out_weight [C_out, C]``,
    ``out_bias [C_out]`` -> ``[B, C_out, n]``. Differentiable in every tensor."""
    return _Head.apply(x, weight, bias, out_weight, out_bias)


class _Mix(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, h: Tensor, y: Tensor, gate: Tensor) -> Tensor:
        lib = _load()
        h, y, gate = (t.detach().contiguous() for t in (h, y, gate))
        out = torch.empty_like(h)
        bounds = range_bounds(_batch_ranges(h.shape[0], h.numel()))
        lib.mix_fwd_par(_ptr(h), _ptr(y), _ptr(gate), _ptr(out), *bounds, h[0].numel())
        ctx.save_for_backward(h, y, gate)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple:
        lib = _load()
        h, y, gate = ctx.saved_tensors
        grad = grad.contiguous()
        grad_h, grad_y, grad_gate = torch.empty_like(h), torch.empty_like(y), torch.empty_like(gate)
        bounds = range_bounds(_batch_ranges(h.shape[0], h.numel()))
        ptrs = map(_ptr, (h, y, gate, grad, grad_h, grad_y, grad_gate))
        lib.mix_bwd_par(*ptrs, *bounds, h[0].numel())
        return grad_h, grad_y, grad_gate


def gated_mix(h: Tensor, y: Tensor, gate: Tensor) -> Tensor:
    """``torch.lerp(h, y, gate)`` with one weight per batch row: ``h, y [B, ...]``, ``gate
    [B]``; one pass each way (autograd's lerp backward takes five). Differentiable."""
    return _Mix.apply(h, y, gate)
