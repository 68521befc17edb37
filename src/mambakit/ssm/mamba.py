"""Mamba-1 mixer (Gu & Dao, 2023, "Mamba: Linear-Time Sequence Modeling with Selective SSMs")."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layout import decode_layout_, step_linear
from .mixer import RecurrentMixer, conv_ssm_cache, dt_bias_init
from .ops import _update_conv_state, causal_conv1d, causal_conv1d_step, selective_scan

__all__ = ["Mamba", "MambaCache"]


@dataclass
class MambaCache:
    """Recurrent state of one :class:`Mamba` layer.

    Attributes:
        conv_state: ``[B, d_inner, d_conv - 1]`` the last pre-convolution inputs.
        ssm_state: ``[B, d_inner, d_state]`` (float32).
    """

    conv_state: Tensor
    ssm_state: Tensor


class Mamba(RecurrentMixer):
    """Mamba-1 block: in_proj -> causal conv + SiLU -> selective scan -> ``* silu(z)`` -> out_proj.

    The selective SSM (Algorithm 2 of the paper): ``x_proj`` maps each step to
    ``(dt_low_rank, B, C)``, ``dt = softplus(dt_proj(dt_low_rank))``, ``A = -exp(A_log)`` is a
    per-channel diagonal ``[d_inner, d_state]`` matrix (S4D-real init ``A[:, n] = -(n+1)``).

    Args:
        d_model: model width; ``d_inner = expand * d_model``.
        d_state: state size N per channel.
        d_conv: causal conv kernel size.
        expand: inner expansion factor.
        dt_rank: rank of the dt projection; ``"auto"`` = ``ceil(d_model / 16)``.
        chunk_size: chunk length of the CPU scan (shrunk automatically for large decays).
        backend: ``"auto" | "torch" | "mamba_ssm"`` (see :func:`selective_scan`).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        chunk_size: int = 32,
        bias: bool = False,
        conv_bias: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.chunk_size, self.backend = chunk_size, backend

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, d_conv, groups=self.d_inner, bias=conv_bias
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt_bias_init(self.d_inner, dt_min, dt_max))
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))  # [d_inner, d_state]
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        decode_layout_(self)

    def _new_cache(self, batch_size: int, max_seqlen: int | None, device, dtype) -> MambaCache:
        """Zero state for ``batch_size`` sequences (``max_seqlen`` is unused: the state is O(1))."""
        shape = (self.d_inner, self.d_state)
        return conv_ssm_cache(
            MambaCache, batch_size, self.d_inner, self.d_conv, shape, device, dtype
        )

    def _ssm_params(
        self, xs: Tensor, linear: Callable[[nn.Linear, Tensor], Tensor] = nn.Linear.__call__
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``xs`` ``[..., d_inner]`` -> ``dt`` ``[..., d_inner]`` (fp32), ``B, C`` ``[..., N]``.

        ``linear(layer, x)`` applies ``x_proj`` and ``dt_proj`` (``step_linear`` in steps)."""
        dt_low, B, C = torch.split(
            linear(self.x_proj, xs), [self.dt_rank, self.d_state, self.d_state], dim=-1
        )
        dt = F.softplus(linear(self.dt_proj, dt_low).float())
        return dt, B, C

    def forward(
        self,
        x: Tensor,
        cache: MambaCache | None = None,
        initial_state: Tensor | None = None,
        return_final_state: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """``x`` ``[B, L, d_model]`` -> ``[B, L, d_model]``; with ``cache``: continue from it and
        leave the state after ``x`` in it. ``initial_state``/``return_final_state`` as in Mamba2
        (state ``[B, d_inner, d_state]``)."""
        xs, z = self.in_proj(x).chunk(2, dim=-1)  # [B, L, d_inner] each
        conv_state = None
        if cache is not None:
            conv_state = cache.conv_state
            if initial_state is None:
                initial_state = cache.ssm_state
        conv_out = causal_conv1d(xs, self.conv1d.weight, self.conv1d.bias, conv_state)
        if cache is not None:
            _update_conv_state(cache.conv_state, xs)
        xs = F.silu(conv_out)
        dt, B, C = self._ssm_params(xs)
        y, final_state = selective_scan(
            xs,
            dt,
            -torch.exp(self.A_log.float()),
            B,
            C,
            D=self.D,
            initial_state=initial_state,
            return_final_state=True,
            chunk_size=self.chunk_size,
            backend=self.backend,
        )
        if cache is not None:
            cache.ssm_state.copy_(final_state)
        y = self.out_proj(y * F.silu(z))
        return (y, final_state) if return_final_state else y

    def step(self, x_t: Tensor, cache: MambaCache) -> tuple[Tensor, MambaCache]:
        """One step: ``x_t`` ``[B, d_model]`` -> ``[B, d_model]``; updates ``cache`` in place."""
        xs, z = step_linear(self.in_proj, x_t).chunk(2, dim=-1)
        xs = F.silu(causal_conv1d_step(xs, self.conv1d.weight, self.conv1d.bias, cache.conv_state))
        dt, B, C = self._ssm_params(xs, step_linear)
        decay = torch.exp(dt[..., None] * -torch.exp(self.A_log.float()))  # [B, d_inner, N]
        dBu = (dt * xs.float())[..., None] * B.float()[:, None, :]
        cache.ssm_state.mul_(decay).add_(dBu)
        y = (cache.ssm_state @ C.float()[..., None])[..., 0] + self.D.float() * xs.float()
        y = step_linear(self.out_proj, y.to(x_t.dtype) * F.silu(z))
        return y, cache
