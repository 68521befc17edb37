"""Weight layout for fast recurrent decoding on CPU."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["DECODE_WEIGHTS", "decode_layout_", "decode_weights_", "step_linear"]


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


DECODE_WEIGHTS = ("fp32", "int8")
_INT8_ATTR = "_decode_int8"
# torch's CPU int8 weight-only kernel reads the input dimension in blocks of 16 (other
# widths crash it, torch 2.13); narrower projections (Mamba-1's dt_proj) stay fp32.
_INT8_K_MULTIPLE = 16


def _int8_supported() -> bool:
    """Whether this build and CPU run torch's int8 weight-only matmul (bf16 activations)."""
    try:
        w = torch.ones(8, 32, dtype=torch.int8)
        x, scales = torch.ones(1, 32, dtype=torch.bfloat16), torch.ones(8, dtype=torch.bfloat16)
        torch._weight_int8pack_mm(x, w, scales)
    except (RuntimeError, AttributeError, NotImplementedError):
        return False
    return True


def decode_weights_(module: nn.Module, weights: str = "int8") -> nn.Module:
    """Give every ``nn.Linear`` in ``module`` a weight copy for ``step()``; returns ``module``.

    ``"int8"``: each weight row is quantised symmetrically to int8 with one scale per output
    channel (``w ~ scale_o * q_oi``, ``scale_o = max_i |w_oi| / 127``), and a step's
    matrix-vector products run ``torch._weight_int8pack_mm`` on bf16 activations (accumulated
    in fp32; result cast back to the input dtype). A batch-1 step streams every weight once,
    so four times fewer weight bytes than fp32 (and a 12-layer d_model 512 backbone's
    weights, ~20 MB, then fitting in the last-level cache) is what makes decoding faster.
    Layers whose input width is not a multiple of 16 keep fp32 (the kernel's block size).
    Outputs differ from fp32 by the quantisation (``tests/ssm`` bounds it). ``"fp32"``
    removes the copies. ``forward()`` and training always use the fp32 weights; quantise
    after loading or training (the copies do not follow later weight updates).

    Raises ``RuntimeError`` where this torch build or CPU lacks the int8 kernel.
    """
    if weights not in DECODE_WEIGHTS:
        raise ValueError(f"decode weights must be one of {DECODE_WEIGHTS}, got {weights!r}")
    if weights == "int8" and not _int8_supported():
        raise RuntimeError(
            "decode_weights_('int8') needs torch._weight_int8pack_mm on this CPU; use 'fp32'"
        )
    for linear in module.modules():
        if not isinstance(linear, nn.Linear):
            continue
        linear.__dict__.pop(_INT8_ATTR, None)
        if weights == "fp32" or linear.in_features % _INT8_K_MULTIPLE:
            continue
        w = linear.weight.detach().float()
        scales = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0
        q = torch.round(w / scales[:, None]).clamp_(-127, 127).to(torch.int8).contiguous()
        linear.__dict__[_INT8_ATTR] = (q, scales.to(torch.bfloat16))
    return module


def step_linear(linear: nn.Linear, x: Tensor) -> Tensor:
    """``linear(x)`` for ``step()``: with the int8 copy of :func:`decode_weights_` when set.

    ``x``: ``[B, in_features]`` -> ``[B, out_features]`` in the dtype of ``x``.
    """
    packed = linear.__dict__.get(_INT8_ATTR)
    if packed is None:
        return linear(x)
    q, scales = packed
    y = torch._weight_int8pack_mm(x.to(torch.bfloat16), q, scales).to(x.dtype)
    return y if linear.bias is None else y + linear.bias
