"""Weight layout for fast recurrent decoding on CPU."""

from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DECODE_BACKENDS",
    "DECODE_WEIGHTS",
    "decode_layout_",
    "decode_weights_",
    "quantize_rows",
    "step_linear",
]


def decode_layout_(module: nn.Module) -> nn.Module:
    """Store every ``nn.Linear`` weight in ``module`` column-major, in place; returns ``module``.

    The weight keeps its shape ``[out, in]``, its values and its ``state_dict`` entry; only
    its strides change, to ``(1, out)`` (the memory of a contiguous ``[in, out]`` matrix).
    Why: one ``step()`` at batch 1 is a matrix-vector product per ``nn.Linear``, bound by
    streaming the weights. With a row-major ``[out, in]`` weight, torch's CPU BLAS streams
    it at about half the bandwidth it reaches on a column-major one, where ``x @ W^T``
    becomes a product with a contiguous ``[in, out]`` matrix (``mambakit bench ssm`` times
    the decode step; its figures are in ``docs/RESULTS.md``).
    Training GEMMs are unaffected (the BLAS takes either transpose; measured equal), the
    layout survives ``.to()``, ``load_state_dict`` and optimizers (they preserve strides),
    and ``save_pretrained`` writes contiguous copies, so checkpoints are unchanged.
    """
    for linear in module.modules():
        if isinstance(linear, nn.Linear) and linear.weight.is_contiguous():
            weight = linear.weight
            linear.weight = nn.Parameter(
                weight.detach().t().contiguous().t(), requires_grad=weight.requires_grad
            )
    return module


DECODE_WEIGHTS = ("fp32", "bf16", "int8")
DECODE_BACKENDS = ("auto", "torch", "c")
_COPY_ATTR = "_decode_copy"
FUSED_ATTR = "_fused_decoder"
# torch's CPU int8 weight-only kernel reads the input dimension in blocks of 16 (other
# widths crash it, torch 2.13); narrower projections (Mamba-1's dt_proj) stay fp32.
_INT8_K_MULTIPLE = 16
_said_fallback: set[str] = set()
logger = logging.getLogger(__name__)


@functools.cache
def _int8_supported() -> bool:
    """Whether this build and CPU run torch's int8 weight-only matmul (bf16 activations)."""
    try:
        w = torch.ones(8, 32, dtype=torch.int8)
        x, scales = torch.ones(1, 32, dtype=torch.bfloat16), torch.ones(8, dtype=torch.bfloat16)
        torch._weight_int8pack_mm(x, w, scales)
    except (RuntimeError, AttributeError, NotImplementedError):
        return False
    return True


def quantize_rows(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric int8 per output channel: ``weight [out, in] ~ scale[:, None] * q``.

    Returns ``(q [out, in] int8, scale [out] float32)``, ``scale_o = max_i |w_oi| / 127``.
    """
    w = weight.detach().float()
    scales = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    q = torch.round(w / scales[:, None]).clamp_(-127, 127).to(torch.int8).contiguous()
    return q, scales


def decode_weights_(module: nn.Module, weights: str = "int8", backend: str = "auto") -> nn.Module:
    """Give ``step()`` in ``module`` weight copies in ``weights`` format; returns ``module``.

    ``"int8"``: each weight row is quantised symmetrically to int8 with one scale per output
    channel (:func:`quantize_rows`); ``"bf16"``: weights rounded to bf16. A batch-1 step
    streams every weight once, so two or four times fewer weight bytes than fp32 (a 12-layer
    d_model 512 backbone's int8 weights, ~20 MB, then fit in the last-level cache) is what
    makes decoding faster. ``"fp32"`` removes every copy (the exact PyTorch step again).
    ``forward()`` and training always use the fp32 weights; the copies are a snapshot, so
    call this again after loading or training.

    ``backend``: ``"c"`` gives every Mamba-2 :class:`~mambakit.ssm.Backbone` in ``module``
    a fused C step in that format (:mod:`~mambakit.ssm.cpu_decode`: one call per token,
    fp32 activations; ``"fp32"`` then keeps fp32 weights in it); an error where it cannot
    be built or the backbone is another kind. ``"auto"`` (default) does so for ``bf16`` and
    ``int8`` where it can, and otherwise says why once (logging, INFO) and uses ``"torch"``:
    each ``nn.Linear`` keeps a copy that :func:`step_linear` multiplies with (int8:
    ``torch._weight_int8pack_mm`` on bf16 activations, for layers whose input width is a
    multiple of 16; bf16: a bf16 matmul). The torch copies are kept beside a fused step too,
    for the calls it does not take (see :meth:`~mambakit.ssm.cpu_decode.FusedDecoder.accepts`).
    Outputs differ from fp32 by the rounding of the weights (``tests/ssm`` bounds it).

    Raises ``RuntimeError`` for ``"int8"`` where this torch build or CPU lacks the int8
    kernel (unless ``backend="c"``: the fused step quantises on its own, and the calls it
    does not take then use the fp32 weights), and for ``backend="c"`` where the fused step
    is unavailable.
    """
    if weights not in DECODE_WEIGHTS:
        raise ValueError(f"decode weights must be one of {DECODE_WEIGHTS}, got {weights!r}")
    if backend not in DECODE_BACKENDS:
        raise ValueError(f"decode backend must be one of {DECODE_BACKENDS}, got {backend!r}")
    if weights == "int8" and backend != "c" and not _int8_supported():
        raise RuntimeError(
            "decode_weights_('int8') needs torch._weight_int8pack_mm on this CPU (or "
            "backend='c', the fused step's own int8); use 'bf16' or 'fp32'"
        )
    for linear in module.modules():
        if isinstance(linear, nn.Linear):
            linear.__dict__.pop(_COPY_ATTR, None)
            copy = _weight_copy(linear, weights)
            if copy is not None:
                linear.__dict__[_COPY_ATTR] = copy
    _attach_fused_(module, weights, backend)
    return module


def _weight_copy(linear: nn.Linear, weights: str) -> tuple[Tensor, Tensor | None] | None:
    """``(weight copy, int8 scales or None)`` for :func:`step_linear`, ``None``: use fp32."""
    if weights == "bf16":
        return linear.weight.detach().to(torch.bfloat16), None
    if weights == "int8" and linear.in_features % _INT8_K_MULTIPLE == 0 and _int8_supported():
        q, scales = quantize_rows(linear.weight)
        return q, scales.to(torch.bfloat16)
    return None


def _attach_fused_(module: nn.Module, weights: str, backend: str) -> None:
    """Set (or clear) the fused C step of every Backbone in ``module``."""
    from . import cpu_decode
    from .backbone import Backbone

    for backbone in module.modules():
        if not isinstance(backbone, Backbone):
            continue
        backbone.__dict__.pop(FUSED_ATTR, None)
        if backend == "torch" or (backend == "auto" and weights == "fp32"):
            continue
        reason = cpu_decode.unsupported_reason(backbone) or cpu_decode.available()
        if reason is None:
            backbone.__dict__[FUSED_ATTR] = cpu_decode.FusedDecoder(backbone, weights)
        elif backend == "c":
            raise RuntimeError(f"decode_weights_(backend='c'): {reason}")
        elif reason not in _said_fallback:
            _said_fallback.add(reason)
            logger.info("decode_weights_: %s; step() uses the PyTorch path", reason)


def step_linear(linear: nn.Linear, x: Tensor) -> Tensor:
    """``linear(x)`` for ``step()``: with the weight copy of :func:`decode_weights_` when set.

    ``x``: ``[B, in_features]`` -> ``[B, out_features]`` in the dtype of ``x``.
    """
    packed = linear.__dict__.get(_COPY_ATTR)
    if packed is None:
        return linear(x)
    weight, scales = packed
    if scales is None:  # bf16
        y = F.linear(x.to(torch.bfloat16), weight).to(x.dtype)
    else:
        y = torch._weight_int8pack_mm(x.to(torch.bfloat16), weight, scales).to(x.dtype)
    return y if linear.bias is None else y + linear.bias
