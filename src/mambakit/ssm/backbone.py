"""Residual backbones of sequence mixers, and a bidirectional (non-causal) wrapper."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import CausalSelfAttention
from .layout import FUSED_ATTR, decode_layout_, step_linear
from .mamba import Mamba
from .mamba2 import Mamba2
from .mixer import RecurrentMixer

__all__ = ["Backbone", "BackboneCache", "Bidirectional", "MLP", "count_parameters", "KINDS"]

KINDS = ("transformer", "mamba", "mamba2", "hybrid")


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of (trainable, if asked) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class MLP(nn.Module):
    """Position-wise feed-forward block, SwiGLU (Shazeer, 2020) or GELU.

    The hidden width is ``mlp_ratio * d_model`` for GELU and ``2/3`` of it (rounded up to a
    multiple of 8) for SwiGLU, so that both have about the same number of parameters.
    """

    def __init__(self, d_model: int, mlp_ratio: float = 4.0, activation: str = "swiglu") -> None:
        super().__init__()
        if activation not in ("swiglu", "gelu"):
            raise ValueError(f"MLP activation must be 'swiglu' or 'gelu', got {activation!r}")
        self.activation = activation
        hidden = int(mlp_ratio * d_model)
        if activation == "swiglu":
            hidden = -(-int(2 * hidden / 3) // 8) * 8
            self.fc_in = nn.Linear(d_model, 2 * hidden, bias=False)
        else:
            self.fc_in = nn.Linear(d_model, hidden, bias=False)
        self.fc_out = nn.Linear(hidden, d_model, bias=False)

    def forward(
        self, x: Tensor, linear: Callable[[nn.Linear, Tensor], Tensor] | None = None
    ) -> Tensor:
        """``x`` ``[..., d_model]`` -> ``[..., d_model]``; ``linear(layer, x)`` applies the two
        projections (``step_linear`` in recurrent steps, see :func:`decode_weights_`)."""
        linear = linear or nn.Linear.__call__
        h = linear(self.fc_in, x)
        if self.activation == "swiglu":
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h)
        return linear(self.fc_out, h)


class _Block(nn.Module):
    """Pre-norm residual block: ``x + mixer(norm(x))`` then ``x + mlp(norm(x))``."""

    def __init__(self, mixer: nn.Module, d_model: int, mlp: MLP | None, eps: float) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(d_model, eps=eps)
        self.mixer = mixer
        self.mlp_norm = nn.RMSNorm(d_model, eps=eps) if mlp is not None else None
        self.mlp = mlp

    def forward(self, x: Tensor, cache: Any = None) -> Tensor:
        if cache is None:
            x = x + self.mixer(self.norm(x))
        else:
            x = x + self.mixer(self.norm(x), cache=cache)
        if self.mlp is not None:
            x = x + self.mlp(self.mlp_norm(x))
        return x

    def step(self, x_t: Tensor, cache: Any) -> Tensor:
        x_t = x_t + self.mixer.step(self.norm(x_t), cache)[0]
        if self.mlp is not None:
            x_t = x_t + self.mlp(self.mlp_norm(x_t), step_linear)
        return x_t


@dataclass
class BackboneCache:
    """Per-layer caches of a :class:`Backbone` (``MambaCache``, ``Mamba2Cache`` or
    ``AttentionCache``, in layer order)."""

    layers: list[Any] = field(default_factory=list)


class Backbone(RecurrentMixer):
    """Stack of pre-norm residual blocks (RMSNorm) with an optional MLP and a final RMSNorm.

    Kinds:
        ``"transformer"``: every mixer is :class:`CausalSelfAttention`.
        ``"mamba"`` / ``"mamba2"``: every mixer is :class:`Mamba` / :class:`Mamba2`.
        ``"hybrid"``: Jamba-style; layer ``i`` is attention when
        ``i % attn_every == attn_every - 1`` (so with ``attn_every=4``: layers 3, 7, 11, ...,
        a 1:3 attention:Mamba ratio as in the seed-001 blog, and the first layer is always an
        SSM), the rest are ``mamba_kind`` layers (Mamba-1 by default, as in Jamba).

    Args:
        kind: one of ``KINDS``.
        n_layers: number of blocks.
        d_model: width.
        attn_every: period of attention layers in the hybrid.
        n_heads: attention heads (default ``max(1, d_model // 64)``).
        mlp_ratio: MLP expansion; ``0`` means no MLP (pure mixer blocks, as in Mamba).
        mlp_activation: ``"swiglu"`` or ``"gelu"``.
        d_state: SSM state size (default 16 for Mamba-1, 64 for Mamba-2).
        headdim: Mamba-2 head size (default ``min(64, 2 * d_model)``... must divide
            ``expand * d_model``).
        mamba_kind: SSM used in the hybrid, ``"mamba"`` or ``"mamba2"``.
        expand, d_conv, chunk_size, ngroups, rotary, backend: passed to the layers.

    Shapes: ``[B, L, d_model] -> [B, L, d_model]``; ``step``: ``[B, d_model] -> [B, d_model]``.
    """

    def __init__(
        self,
        kind: str,
        n_layers: int,
        d_model: int,
        attn_every: int = 4,
        n_heads: int | None = None,
        mlp_ratio: float = 4.0,
        mlp_activation: str = "swiglu",
        d_state: int | None = None,
        headdim: int = 64,
        ngroups: int = 1,
        expand: int = 2,
        d_conv: int = 4,
        chunk_size: int | None = None,
        mamba_kind: str = "mamba",
        rotary: bool = True,
        norm_eps: float = 1e-5,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"Backbone kind must be one of {KINDS}, got {kind!r}")
        if mamba_kind not in ("mamba", "mamba2"):
            raise ValueError(f"mamba_kind must be 'mamba' or 'mamba2', got {mamba_kind!r}")
        if attn_every < 1:
            raise ValueError(f"attn_every must be >= 1, got {attn_every}")
        self.kind, self.n_layers, self.d_model = kind, n_layers, d_model
        n_heads = n_heads or max(1, d_model // 64)

        def make_mixer(layer_kind: str) -> nn.Module:
            if layer_kind == "attention":
                return CausalSelfAttention(d_model, n_heads, rotary=rotary)
            if layer_kind == "mamba":
                return Mamba(
                    d_model,
                    d_state=d_state or 16,
                    d_conv=d_conv,
                    expand=expand,
                    chunk_size=chunk_size or 32,
                    backend=backend,
                )
            return Mamba2(
                d_model,
                d_state=d_state or 64,
                headdim=min(headdim, expand * d_model),
                ngroups=ngroups,
                expand=expand,
                d_conv=d_conv,
                chunk_size=chunk_size or 64,
                backend=backend,
            )

        self.layer_kinds = [
            self._layer_kind(i, kind, attn_every, mamba_kind) for i in range(n_layers)
        ]
        self.layers = nn.ModuleList(
            _Block(
                make_mixer(k),
                d_model,
                MLP(d_model, mlp_ratio, mlp_activation) if mlp_ratio > 0 else None,
                norm_eps,
            )
            for k in self.layer_kinds
        )
        self.norm_f = nn.RMSNorm(d_model, eps=norm_eps)
        decode_layout_(self)

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> Backbone:
        """A backbone whose arguments are read from ``config``'s attributes of the same name
        (``n_layers``, ``d_model``, ``d_state``, ...), so a model config that holds the
        backbone's fields is passed whole; ``overrides`` (at least ``kind`` when ``config``
        has no such attribute) win over the config's values."""
        names = inspect.signature(cls.__init__).parameters.keys() - {"self"}
        kwargs = {name: getattr(config, name) for name in names if hasattr(config, name)}
        return cls(**{**kwargs, **overrides})

    @staticmethod
    def _layer_kind(i: int, kind: str, attn_every: int, mamba_kind: str) -> str:
        if kind == "transformer":
            return "attention"
        if kind == "hybrid":
            return "attention" if i % attn_every == attn_every - 1 else mamba_kind
        return kind

    def _new_cache(self, batch_size: int, max_seqlen: int | None, device, dtype) -> BackboneCache:
        """One cache per layer (see each mixer's ``allocate_cache``)."""
        return BackboneCache(
            [blk.mixer.allocate_cache(batch_size, max_seqlen, device, dtype) for blk in self.layers]
        )

    def forward(self, x: Tensor, cache: BackboneCache | None = None) -> Tensor:
        """``x`` ``[B, L, d_model]`` -> ``[B, L, d_model]``; with ``cache``: prefill (continue
        from the cached state and leave the state after ``x`` in it)."""
        for i, blk in enumerate(self.layers):
            x = blk(x, cache.layers[i] if cache is not None else None)
        return self.norm_f(x)

    def step(self, x_t: Tensor, cache: BackboneCache) -> tuple[Tensor, BackboneCache]:
        """One token ``[B, d_model]`` -> ``[B, d_model]``; updates ``cache`` in place.

        After ``decode_weights_(backbone, ...)`` built a fused C step for this backbone
        (:mod:`~mambakit.ssm.cpu_decode`), the calls it accepts run as one C call.
        """
        fused = self.__dict__.get(FUSED_ATTR)
        if fused is not None and fused.accepts(x_t, cache.layers):
            return fused.step(x_t, cache.layers), cache
        for blk, layer_cache in zip(self.layers, cache.layers, strict=True):
            x_t = blk.step(x_t, layer_cache)
        return self.norm_f(x_t), cache


class Bidirectional(nn.Module):
    """Non-causal wrapper: one layer reads the sequence forwards, a twin reads it reversed.

    ``y = fwd(x) + flip(bwd(flip(x)))`` (``combine="sum"``, the default: no extra
    parameters, the output keeps the width) or
    ``y = proj(cat(fwd(x), flip(bwd(flip(x)))))`` (``combine="concat"``, a learned
    ``2 d_model -> d_model`` mix). Every output sees the whole input, so there is no
    ``step``/cache: use it in denoisers and encoders, not in autoregressive decoding.

    Args:
        layer_factory: ``() -> nn.Module`` building a ``[B, L, d] -> [B, L, d]`` layer; it is
            called twice, so the two directions have separate weights.
        combine: ``"sum"`` or ``"concat"``.
    """

    def __init__(self, layer_factory: Callable[[], nn.Module], combine: str = "sum") -> None:
        super().__init__()
        if combine not in ("sum", "concat"):
            raise ValueError(f"combine must be 'sum' or 'concat', got {combine!r}")
        self.fwd = layer_factory()
        self.bwd = layer_factory()
        self.combine = combine
        if combine == "concat":
            d_model = getattr(self.fwd, "d_model", None)
            if d_model is None:
                raise ValueError("combine='concat' needs a layer with a `d_model` attribute")
            self.proj = nn.Linear(2 * d_model, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``[B, L, d]`` -> ``[B, L, d]``."""
        forward_out = self.fwd(x)
        backward_out = self.bwd(x.flip(1)).flip(1)
        if self.combine == "sum":
            return forward_out + backward_out
        return self.proj(torch.cat([forward_out, backward_out], dim=-1))

    def allocate_cache(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("Bidirectional is non-causal: it has no recurrent cache/step")

    def step(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("Bidirectional is non-causal: it has no recurrent cache/step")
