"""Adaptive instance normalisation over time (Huang & Belongie, 2017), for 1-D feature maps.

For a content feature map ``x`` ``[B, C, T_x]`` and a style feature map ``y`` ``[B, C, T_y]``
(the seed's equation in section III-C):

    AdaIN(x, y) = sigma(y) * (x - mu(x)) / sigma(x) + mu(y)

where ``mu`` and ``sigma`` are the per-channel mean and standard deviation **over time**.
The seed's code took the statistics over channels and therefore needed ``T_x == T_y``;
here the two clips may have any lengths, since only ``C`` numbers per clip are compared.
There is no learned affine: the scale and shift come from the style alone.

The strength ``alpha`` blends linearly, ``alpha * AdaIN(x, y) + (1 - alpha) * x``, so
``alpha = 0`` returns ``x`` exactly and ``alpha = 1`` is full AdaIN.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["adain", "time_statistics"]

EPS = 1e-5


def time_statistics(x: Tensor, eps: float = EPS) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation over time.

    Args:
        x: ``[B, C, T]`` feature map.
        eps: added to the variance before the square root (keeps silent channels finite).

    Returns:
        ``(mean, std)``, each ``[B, C, 1]``. ``std`` is the biased (population) estimate.
    """
    if x.ndim != 3:
        raise ValueError(f"time_statistics expects [B, C, T], got shape {tuple(x.shape)}")
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, unbiased=False)
    return mean, (var + eps).sqrt()


def adain(
    content: Tensor,
    style: Tensor | tuple[Tensor, Tensor],
    alpha: float | Tensor = 1.0,
    eps: float = EPS,
    content_stats: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Align the per-channel time statistics of ``content`` to those of ``style``.

    Args:
        content: ``[B, C, T_c]``.
        style: ``[B, C, T_s]`` (any ``T_s``) or precomputed ``(mean, std)`` each ``[B, C, 1]``
            from :func:`time_statistics` (lets a long style clip be analysed once).
        alpha: strength in [0, 1]: a float or a tensor broadcastable to ``[B, 1, 1]``.
        eps: variance floor of :func:`time_statistics`.
        content_stats: ``(mean, std)`` of the content to use instead of its own (e.g. taken
            over the unpadded frames only).

    Returns:
        ``alpha * AdaIN(content, style) + (1 - alpha) * content``, ``[B, C, T_c]``.
    """
    if isinstance(alpha, (int, float)) and alpha == 0:
        return content  # exact identity, and no work
    style_mean, style_std = style if isinstance(style, tuple) else time_statistics(style, eps)
    if style_mean.shape[:2] != content.shape[:2]:
        raise ValueError(
            f"adain: content {tuple(content.shape)} and style statistics "
            f"{tuple(style_mean.shape)} differ in batch or channels"
        )
    content_mean, content_std = content_stats or time_statistics(content, eps)
    stylised = style_std * (content - content_mean) / content_std + style_mean
    if isinstance(alpha, (int, float)) and alpha == 1:
        return stylised
    alpha = torch.as_tensor(alpha, dtype=content.dtype, device=content.device)
    return alpha * stylised + (1 - alpha) * content
