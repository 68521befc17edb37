"""What every sequence mixer shares: the cache allocation of the recurrent interface and
Mamba's ``dt`` initialisation.

Every mixer (:class:`~mambakit.ssm.Mamba`, :class:`~mambakit.ssm.Mamba2`,
:class:`~mambakit.ssm.CausalSelfAttention`) and the :class:`~mambakit.ssm.Backbone` stacking
them is a :class:`RecurrentMixer`: ``allocate_cache`` has one signature and one rule for its
defaults (the device and dtype of the layer's weights); each layer says only what its cache
holds, in ``_new_cache``.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

T = TypeVar("T")


class RecurrentMixer(nn.Module):
    """Base of the layers with ``forward(x, cache=None)``, ``step(x_t, cache)`` and
    ``allocate_cache``; subclasses implement :meth:`_new_cache`."""

    def allocate_cache(
        self,
        batch_size: int,
        max_seqlen: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Any:
        """A fresh cache for ``batch_size`` sequences (``max_seqlen``: the longest they will
        grow to, where the layer can preallocate), on ``device`` with floating state in
        ``dtype``; both default to those of the layer's first weight."""
        weight = next(self.parameters())
        device = device if device is not None else weight.device
        return self._new_cache(batch_size, max_seqlen, device, dtype or weight.dtype)

    def _new_cache(self, batch_size: int, max_seqlen: int | None, device, dtype) -> Any:
        """The layer's cache, ``device`` and ``dtype`` already resolved."""
        raise NotImplementedError


def conv_ssm_cache(
    cache_type: type[T],
    batch_size: int,
    conv_channels: int,
    d_conv: int,
    ssm_shape: tuple[int, ...],
    device: torch.device | str,
    dtype: torch.dtype,
) -> T:
    """Zero state of a causal-conv + SSM layer: ``conv_state`` ``[B, conv_channels, d_conv - 1]``
    in ``dtype`` and ``ssm_state`` ``[B, *ssm_shape]`` in float32 (the scan accumulates in
    fp32 whatever the activations' dtype)."""
    return cache_type(
        conv_state=torch.zeros(batch_size, conv_channels, d_conv - 1, device=device, dtype=dtype),
        ssm_state=torch.zeros(batch_size, *ssm_shape, device=device, dtype=torch.float32),
    )


def dt_bias_init(n: int, dt_min: float, dt_max: float) -> Tensor:
    """``softplus^{-1}(dt)`` ``[n]`` with ``dt`` drawn log-uniform in ``[dt_min, dt_max]``:
    the bias that makes ``softplus(dt_proj(x) + bias)`` start at those step sizes (Mamba's
    initialisation, also Mamba-2's)."""
    dt = torch.exp(torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    return dt + torch.log(-torch.expm1(-dt))
