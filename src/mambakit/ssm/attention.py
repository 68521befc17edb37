"""Causal multi-head self-attention with rotary positions and a KV cache."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layout import decode_layout_
from .mixer import RecurrentMixer

__all__ = ["CausalSelfAttention", "AttentionCache", "apply_rotary"]


@dataclass
class AttentionCache:
    """KV cache of one :class:`CausalSelfAttention` layer.

    Attributes:
        k, v: ``[B, n_heads, capacity, head_dim]``; positions ``< pos`` are filled.
        pos: number of tokens seen so far (the position of the next token).
    """

    k: Tensor
    v: Tensor
    pos: int = 0


def apply_rotary(x: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    """Rotary position embedding (Su et al., 2021, RoFormer eq. 34), "rotate-half" layout.

    ``x`` ``[B, H, L, D]`` (D even), ``positions`` ``[L]`` integer positions. Channel pairs
    ``(i, i + D/2)`` are rotated by the angle ``pos * base^(-2i/D)``.
    """
    d = x.shape[-1]
    inv_freq = base ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angles = positions.to(torch.float32)[:, None] * inv_freq  # [L, D/2]
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    return out.to(x.dtype)


class CausalSelfAttention(RecurrentMixer):
    """Causal multi-head self-attention (PyTorch SDPA), optional rotary positions, KV cache.

    Args:
        d_model: model width; must be divisible by ``n_heads``.
        n_heads: number of heads.
        rotary: apply rotary embeddings to queries and keys (no learned positions needed).
        rotary_base: rotary frequency base.
        bias: use biases in the projections.
        dropout: attention dropout (training only).

    Shapes: ``[B, L, d_model] -> [B, L, d_model]``; ``step``: ``[B, d_model] -> [B, d_model]``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        rotary: bool = True,
        rotary_base: float = 10000.0,
        bias: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        if rotary and self.head_dim % 2:
            raise ValueError(f"rotary needs an even head_dim, got {self.head_dim}")
        self.rotary, self.rotary_base, self.dropout = rotary, rotary_base, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        decode_layout_(self)

    def _new_cache(self, batch_size: int, max_seqlen: int | None, device, dtype) -> AttentionCache:
        """Empty KV cache; preallocated to ``max_seqlen`` tokens if given, else grown on demand."""
        shape = (batch_size, self.n_heads, max_seqlen or 0, self.head_dim)
        return AttentionCache(
            k=torch.zeros(shape, device=device, dtype=dtype),
            v=torch.zeros(shape, device=device, dtype=dtype),
        )

    def forward(self, x: Tensor, cache: AttentionCache | None = None) -> Tensor:
        """``x`` ``[B, L, d_model]`` -> ``[B, L, d_model]``. With ``cache``, ``x`` continues the
        cached tokens (its first position is ``cache.pos``) and its keys/values are appended."""
        b, length, _ = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.n_heads, self.head_dim).unbind(dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, nh, L, hs)
        start = cache.pos if cache is not None else 0
        if self.rotary:
            positions = torch.arange(start, start + length, device=x.device)
            q = apply_rotary(q, positions, self.rotary_base)
            k = apply_rotary(k, positions, self.rotary_base)
        if cache is not None:
            k, v = self._append(cache, k, v)
        dropout = self.dropout if self.training else 0.0
        if start == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        elif length == 1:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        else:
            # Query i sits at position start + i and may see keys 0 .. start + i.
            key_pos = torch.arange(start + length, device=x.device)
            query_pos = torch.arange(start, start + length, device=x.device)
            mask = key_pos[None, :] <= query_pos[:, None]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.out_proj(y.transpose(1, 2).reshape(b, length, self.d_model))

    @staticmethod
    def _append(cache: AttentionCache, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write ``k, v`` ``[B, H, L, hs]`` at ``cache.pos``; return all keys/values so far."""
        start, stop = cache.pos, cache.pos + k.shape[2]
        if stop > cache.k.shape[2]:
            # Grow geometrically so that token-by-token decoding stays amortised O(1).
            capacity = max(stop, 2 * cache.k.shape[2], 16)
            grow = capacity - cache.k.shape[2]
            cache.k = F.pad(cache.k, (0, 0, 0, grow))
            cache.v = F.pad(cache.v, (0, 0, 0, grow))
        cache.k[:, :, start:stop] = k
        cache.v[:, :, start:stop] = v
        cache.pos = stop
        return cache.k[:, :, :stop], cache.v[:, :, :stop]

    def step(self, x_t: Tensor, cache: AttentionCache) -> tuple[Tensor, AttentionCache]:
        """One token: ``x_t`` ``[B, d_model]`` -> ``[B, d_model]``; appends to the KV cache."""
        return self.forward(x_t[:, None], cache=cache)[:, 0], cache
