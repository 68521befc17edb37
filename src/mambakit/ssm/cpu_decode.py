"""A Mamba-2 ``Backbone.step`` fused into one C call per token, on packed decode weights.

At batch 1 a ``step()`` of a 12-layer d_model 512 Mamba-2 backbone is about 20 small
PyTorch ops per layer; their dispatch costs as much as streaming the weights. The C kernel
(``cpu_decode.c``, built once by :mod:`~mambakit.ssm.cbuild`) runs the whole step, for every
block::

    u = RMSNorm(x)                       zxbcdt = W_in u          (z, xBC, dt split)
    xBC = silu(conv_step(xBC, conv_state))                        (depthwise, K taps)
    dt = softplus(dt + dt_bias)          h = exp(dt A) h + dt x B^T,  y = h C + D x
    x = x + W_out RMSNorm_g(y * silu(z))                          (Mamba-2 eqs., sec. 7)
    x = x + W_2 act(W_1 RMSNorm(x))                               (when the block has an MLP)

and the final RMSNorm, writing the caller's ``Mamba2Cache`` states in place, with scratch
preallocated once per batch size. Activations and states are float32; the matrix weights
are copies packed by output block (:data:`OUTPUT_BLOCK` outputs x all inputs, contiguous)
in one of :data:`FORMATS`: ``fp32`` (same values; sums in another order), ``bf16`` (weights
rounded to bf16) or ``int8`` (symmetric, one scale per output channel). ``mambakit bench
ssm`` reports each against the fp32 ``step()`` and ``tests/ssm/test_cpu_decode.py`` bounds
the difference. AVX-512 builds use intrinsics; elsewhere the same C loops are portable.

:class:`FusedDecoder` is built by :func:`~mambakit.ssm.layout.decode_weights_` and used by
``Backbone.step`` when :meth:`FusedDecoder.accepts` the call (CPU float32 input, no input
needing gradients, caches laid out as ``allocate_cache`` makes them); every other call
takes the PyTorch path. The weights are a snapshot: call ``decode_weights_`` again after
changing the model.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cbuild import KernelBuildError, load_library

__all__ = ["FORMATS", "OUTPUT_BLOCK", "FusedDecoder", "available", "unsupported_reason"]

FORMATS = {"fp32": 0, "bf16": 1, "int8": 2}  # the C enum FMT_*
OUTPUT_BLOCK = 64  # OB in the C source
_SOURCE_PATH = Path(__file__).with_name("cpu_decode.c")


class _Linear(ctypes.Structure):
    _fields_ = [("w", ctypes.c_void_p), ("scale", ctypes.c_void_p), ("bias", ctypes.c_void_p),
                ("in_features", ctypes.c_long), ("out_padded", ctypes.c_long),
                ("fmt", ctypes.c_long)]  # fmt: skip


class _Layer(ctypes.Structure):
    _fields_ = [("norm_w", ctypes.c_void_p), ("in_proj", _Linear), ("conv_w", ctypes.c_void_p),
                ("conv_b", ctypes.c_void_p), ("dt_bias", ctypes.c_void_p),
                ("A", ctypes.c_void_p), ("D", ctypes.c_void_p), ("gate_w", ctypes.c_void_p),
                ("out_proj", _Linear), ("mlp_norm_w", ctypes.c_void_p), ("fc_in", _Linear),
                ("fc_out", _Linear)]  # fmt: skip


class _Model(ctypes.Structure):
    _fields_ = [*((name, ctypes.c_long) for name in (
                    "n_layers", "d_model", "d_inner", "d_state", "n_heads", "headdim",
                    "ngroups", "d_conv", "mlp_hidden", "swiglu")),
                ("norm_eps", ctypes.c_float), ("gate_eps", ctypes.c_float),
                ("norm_f_w", ctypes.c_void_p), ("layers", ctypes.POINTER(_Layer))]  # fmt: skip


def _library(flags: tuple[str, ...] | None = None) -> ctypes.CDLL:
    """The built kernel (raises :class:`~mambakit.ssm.cbuild.KernelBuildError`)."""
    kwargs = {} if flags is None else {"flags": flags}
    try:
        source = _SOURCE_PATH.read_text()
    except OSError as e:  # an install without the package data
        raise KernelBuildError(f"mamba2_decode: cannot read {_SOURCE_PATH}: {e}") from e
    lib = load_library("mamba2_decode", source, **kwargs)
    lib.mamba2_step_scratch.restype = ctypes.c_long
    lib.mamba2_step_scratch.argtypes = [ctypes.POINTER(_Model)]
    lib.mamba2_backbone_step.restype = None
    lib.mamba2_backbone_step.argtypes = [ctypes.POINTER(_Model), *[ctypes.c_void_p] * 5,
                                         ctypes.c_long]  # fmt: skip
    return lib


def available() -> str | None:
    """``None`` when the kernel builds and loads here (building it now if needed), else why not."""
    try:
        _library()
    except KernelBuildError as e:
        return str(e)
    return None


def unsupported_reason(backbone: nn.Module) -> str | None:
    """Why the fused step cannot run ``backbone`` (``None`` when it can)."""
    from .mamba2 import Mamba2

    if getattr(backbone, "kind", None) != "mamba2":
        return f"the fused step runs Mamba-2 backbones only, not {backbone.kind!r}"
    params = list(backbone.parameters())
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in params):
        return "the fused step needs float32 CPU weights"
    if not all(isinstance(blk.mixer, Mamba2) for blk in backbone.layers):
        return "the fused step runs Mamba2 mixers only"
    norms = [backbone.norm_f, *(m for blk in backbone.layers for m in (blk.norm, blk.mlp_norm))]
    if len({_eps(norm) for norm in norms if norm is not None}) != 1:
        return "the fused step needs one RMSNorm eps for every block norm and the final norm"
    return None


def _pack_linear(linear: nn.Linear, fmt: str, keep: list[Tensor]) -> _Linear:
    """``linear``'s weight packed ``[out_padded / OB, in, OB]`` in ``fmt`` (see module doc)."""
    from .layout import quantize_rows

    out_features, in_features = linear.weight.shape
    out_padded = -(-out_features // OUTPUT_BLOCK) * OUTPUT_BLOCK
    weight = linear.weight.detach().float()
    scale = torch.ones(out_padded, dtype=torch.float32)  # the C side reads float*
    if fmt == "int8":
        weight, row_scale = quantize_rows(weight)
        scale[:out_features] = row_scale
    elif fmt == "bf16":
        weight = weight.to(torch.bfloat16).view(torch.int16)
    weight = F.pad(weight, (0, 0, 0, out_padded - out_features))  # [out_padded, in]
    packed = weight.view(-1, OUTPUT_BLOCK, in_features).transpose(1, 2).contiguous()
    bias = torch.zeros(out_padded, dtype=torch.float32)
    if linear.bias is not None:
        bias[:out_features] = linear.bias.detach().float()
    keep += [packed, scale, bias]
    return _Linear(packed.data_ptr(), scale.data_ptr(), bias.data_ptr(), in_features,
                   out_padded, FORMATS[fmt])  # fmt: skip


class FusedDecoder:
    """Packed copies of a Mamba-2 :class:`~mambakit.ssm.Backbone`'s weights, and its fused step.

    ``weights``: one of :data:`FORMATS`. ``flags`` overrides the C compiler flags (the tests
    build the portable, non-AVX-512 variant with it). Raises
    :class:`~mambakit.ssm.cbuild.KernelBuildError` when the kernel cannot be built, and
    ``ValueError`` for a backbone :func:`unsupported_reason` refuses.
    """

    def __init__(
        self, backbone: nn.Module, weights: str = "int8", flags: tuple[str, ...] | None = None
    ) -> None:
        if weights not in FORMATS:
            raise ValueError(f"fused decode weights must be one of {tuple(FORMATS)}: {weights!r}")
        reason = unsupported_reason(backbone)
        if reason is not None:
            raise ValueError(reason)
        self.weights, self.flags = weights, flags
        self._lib = _library(flags)
        first = backbone.layers[0].mixer
        self.shape = {
            "d_model": backbone.d_model,
            "conv_dim": first.conv_dim,
            "d_conv": first.d_conv,
            "state": (first.n_heads, first.headdim, first.d_state),
        }
        self._keep: list[Tensor] = []  # every tensor the C structs point into
        self._layers = (_Layer * len(backbone.layers))(
            *(self._pack_block(blk, weights) for blk in backbone.layers)
        )
        mlp = backbone.layers[0].mlp
        hidden = 0 if mlp is None else mlp.fc_out.in_features
        norm_f = self._f32(backbone.norm_f.weight)
        self._model = _Model(
            len(backbone.layers), backbone.d_model, first.d_inner, first.d_state,
            first.n_heads, first.headdim, first.ngroups, first.d_conv, hidden,
            int(mlp is not None and mlp.activation == "swiglu"),
            _eps(backbone.norm_f), first.norm.eps, norm_f.data_ptr(), self._layers,
        )  # fmt: skip
        self._row_floats = self._lib.mamba2_step_scratch(ctypes.byref(self._model))
        self._local = threading.local()  # scratch per thread: the C call releases the GIL

    def _f32(self, t: Tensor) -> Tensor:
        t = t.detach().float().contiguous().clone()
        self._keep.append(t)
        return t

    def _pack_block(self, blk: nn.Module, weights: str) -> _Layer:
        mixer = blk.mixer
        conv_b = mixer.conv1d.bias
        conv_b = conv_b if conv_b is not None else torch.zeros(mixer.conv_dim)
        mlp = blk.mlp
        return _Layer(
            self._f32(blk.norm.weight).data_ptr(),
            _pack_linear(mixer.in_proj, weights, self._keep),
            self._f32(mixer.conv1d.weight[:, 0]).data_ptr(),  # [conv_dim, d_conv]
            self._f32(conv_b).data_ptr(),
            self._f32(mixer.dt_bias).data_ptr(),
            self._f32(-torch.exp(mixer.A_log.float())).data_ptr(),
            self._f32(mixer.D).data_ptr(),
            self._f32(mixer.norm.weight).data_ptr(),
            _pack_linear(mixer.out_proj, weights, self._keep),
            None if mlp is None else self._f32(blk.mlp_norm.weight).data_ptr(),
            _Linear() if mlp is None else _pack_linear(mlp.fc_in, weights, self._keep),
            _Linear() if mlp is None else _pack_linear(mlp.fc_out, weights, self._keep),
        )

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        # Raw pointers cannot travel: a copied or unpickled model has no fused decoder (its
        # step() takes the PyTorch path, on the same-format copies) until decode_weights_.
        return _dropped, ()

    def accepts(self, x_t: Tensor, layer_caches: list[Any]) -> bool:
        """Whether :meth:`step` can run this call: ``x_t`` a float32 CPU ``[B, d_model]``
        tensor that needs no gradient, every cache's states contiguous float32 CPU tensors
        of ``allocate_cache``'s shapes for that batch."""
        if x_t.device.type != "cpu" or x_t.dtype != torch.float32 or x_t.dim() != 2:
            return False
        if x_t.shape[1] != self.shape["d_model"] or (x_t.requires_grad and torch.is_grad_enabled()):
            return False
        b = x_t.shape[0]
        conv_shape = (b, self.shape["conv_dim"], self.shape["d_conv"] - 1)
        state_shape = (b, *self.shape["state"])
        for cache in layer_caches:
            conv, ssm = getattr(cache, "conv_state", None), getattr(cache, "ssm_state", None)
            for t, shape in ((conv, conv_shape), (ssm, state_shape)):
                if not (
                    isinstance(t, Tensor) and t.shape == shape and t.dtype == torch.float32
                    and t.device.type == "cpu" and t.is_contiguous()
                ):  # fmt: skip
                    return False
        return len(layer_caches) == self._model.n_layers

    def step(self, x_t: Tensor, layer_caches: list[Any]) -> Tensor:
        """One token ``x_t`` ``[B, d_model]`` -> the backbone's output ``[B, d_model]``;
        advances every ``Mamba2Cache`` in ``layer_caches`` in place. Check :meth:`accepts`
        first (this method trusts its arguments)."""
        b = x_t.shape[0]
        scratch = getattr(self._local, "scratch", None)
        if scratch is None or scratch.numel() < b * self._row_floats:
            scratch = self._local.scratch = torch.empty(b * self._row_floats, dtype=torch.float32)
        x_t = x_t.detach().contiguous()
        out = torch.empty_like(x_t)
        n = len(layer_caches)
        conv = (ctypes.c_void_p * n)(*(c.conv_state.data_ptr() for c in layer_caches))
        ssm = (ctypes.c_void_p * n)(*(c.ssm_state.data_ptr() for c in layer_caches))
        self._lib.mamba2_backbone_step(
            ctypes.byref(self._model), x_t.data_ptr(), out.data_ptr(), conv, ssm,
            scratch.data_ptr(), b,
        )  # fmt: skip
        return out


def _dropped() -> None:
    return None


def _eps(norm: nn.RMSNorm) -> float:
    return norm.eps if norm.eps is not None else torch.finfo(torch.float32).eps
