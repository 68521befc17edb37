"""Mamba-2 mixer (Dao & Gu, 2024, "Transformers are SSMs", section 7 / figure 6)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ops import ssd_scan

__all__ = ["Mamba2", "Mamba2Cache", "GatedRMSNorm", "causal_conv1d", "causal_conv1d_step"]


@dataclass
class Mamba2Cache:
    """Recurrent state of one :class:`Mamba2` layer.

    Attributes:
        conv_state: ``[B, conv_dim, d_conv - 1]`` the last pre-convolution inputs.
        ssm_state: ``[B, n_heads, headdim, d_state]`` the SSD state (float32).
    """

    conv_state: Tensor
    ssm_state: Tensor


def causal_conv1d(x: Tensor, weight: Tensor, bias: Tensor | None, conv_state: Tensor) -> Tensor:
    """Depthwise causal conv of ``x`` ``[B, C, L]`` preceded by ``conv_state`` ``[B, C, K-1]``.

    ``weight`` is ``[C, 1, K]``. With a zero ``conv_state`` this is the usual left zero-padded
    causal conv; with a carried state, segments convolve exactly as one long sequence.
    """
    x = torch.cat([conv_state.to(x.dtype), x], dim=-1)
    return F.conv1d(x, weight, bias, groups=weight.shape[0])


def causal_conv1d_step(
    x_t: Tensor, weight: Tensor, bias: Tensor | None, conv_state: Tensor
) -> Tensor:
    """One step of :func:`causal_conv1d`: ``x_t`` ``[B, C]`` -> ``[B, C]``; updates the state."""
    window = torch.cat([conv_state, x_t[..., None].to(conv_state.dtype)], dim=-1)  # [B, C, K]
    out = torch.einsum("bck,ck->bc", window, weight[:, 0].to(window.dtype))
    if bias is not None:
        out = out + bias
    conv_state.copy_(window[..., 1:])
    return out


def _update_conv_state(conv_state: Tensor, x: Tensor) -> None:
    """Keep the last ``K-1`` inputs of ``cat(conv_state, x)`` (``x``: ``[B, C, L]``)."""
    k1 = conv_state.shape[-1]
    if k1 == 0:
        return
    conv_state.copy_(torch.cat([conv_state, x.to(conv_state.dtype)], dim=-1)[..., -k1:])


class GatedRMSNorm(nn.Module):
    """``RMSNorm(y * silu(z))`` with a learned scale (the Mamba-2 output norm), per group.

    Normalising per group of ``d / ngroups`` channels keeps the layer equivalent under
    tensor-parallel splits, as in the Mamba-2 reference; ``ngroups = 1`` is a plain RMSNorm.
    """

    def __init__(self, dim: int, eps: float = 1e-5, group_size: int | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps
        self.group_size = group_size or dim

    def forward(self, y: Tensor, z: Tensor) -> Tensor:
        y = y * F.silu(z)
        shape = y.shape
        y = y.reshape(*shape[:-1], -1, self.group_size).float()
        y = y * torch.rsqrt(y.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return y.reshape(shape).to(z.dtype) * self.weight


class Mamba2(nn.Module):
    """Mamba-2 mixer: in_proj -> causal conv + SiLU -> SSD scan -> gated RMSNorm -> out_proj.

    ``in_proj`` produces ``[z, x, B, C, dt]``; the convolution runs over ``(x, B, C)``. Each of
    the ``n_heads = d_inner / headdim`` heads has a scalar decay ``A_h = -exp(A_log_h)``,
    a step ``dt = softplus(dt_raw + dt_bias_h)`` and a skip ``D_h``; ``B`` and ``C`` are shared by
    the heads of each of the ``ngroups`` groups.

    Args:
        d_model: model width; ``d_inner = expand * d_model``.
        d_state: SSM state size N per head.
        headdim: channels P per head; ``d_inner`` must be divisible by it (e.g. d_model 64,
            expand 2 -> d_inner 128 -> 2 heads of 64, or 4 heads of 32).
        ngroups: groups sharing B and C (``n_heads`` must be divisible by it).
        d_conv: causal conv kernel size.
        chunk_size: SSD chunk length Q. 64 was the fastest of {32, 64, 128, 256} measured on CPU
            for d_model 64 and L = 44,100.
        dt_min, dt_max: range of the log-uniform initial step sizes.
        A_init_range: range of the uniform initial ``-A``.
        backend: ``"auto" | "torch" | "mamba_ssm"`` for the scan (see :func:`ssd_scan`).

    Shapes: ``forward`` ``[B, L, d_model] -> [B, L, d_model]``;
    ``step`` ``[B, d_model] -> [B, d_model]``.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        headdim: int = 64,
        ngroups: int = 1,
        expand: int = 2,
        d_conv: int = 4,
        chunk_size: int = 64,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        A_init_range: tuple[float, float] = (1.0, 16.0),
        bias: bool = False,
        conv_bias: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_inner = expand * d_model
        if self.d_inner % headdim != 0:
            raise ValueError(
                f"Mamba2: d_inner = expand * d_model = {self.d_inner} is not divisible by "
                f"headdim = {headdim}; choose a headdim that divides {self.d_inner}"
            )
        self.n_heads = self.d_inner // headdim
        if self.n_heads % ngroups != 0:
            raise ValueError(
                f"Mamba2: n_heads = {self.n_heads} is not divisible by ngroups = {ngroups}"
            )
        self.d_state, self.headdim, self.ngroups = d_state, headdim, ngroups
        self.d_conv, self.chunk_size, self.backend = d_conv, chunk_size, backend
        self.conv_dim = self.d_inner + 2 * ngroups * d_state

        self.in_proj = nn.Linear(
            d_model, 2 * self.d_inner + 2 * ngroups * d_state + self.n_heads, bias=bias
        )
        self.conv1d = nn.Conv1d(
            self.conv_dim, self.conv_dim, d_conv, groups=self.conv_dim, bias=conv_bias
        )
        # dt initialised log-uniform in [dt_min, dt_max]; dt_bias = softplus^{-1}(dt).
        dt = torch.exp(
            torch.rand(self.n_heads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        )
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.empty(self.n_heads).uniform_(*A_init_range)))
        self.D = nn.Parameter(torch.ones(self.n_heads))
        self.norm = GatedRMSNorm(self.d_inner, group_size=self.d_inner // ngroups)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def allocate_cache(
        self,
        batch_size: int,
        max_seqlen: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Mamba2Cache:
        """Zero state for ``batch_size`` sequences (``max_seqlen`` is unused: the state is O(1))."""
        device = device if device is not None else self.in_proj.weight.device
        dtype = dtype or self.in_proj.weight.dtype
        return Mamba2Cache(
            conv_state=torch.zeros(
                batch_size, self.conv_dim, self.d_conv - 1, device=device, dtype=dtype
            ),
            ssm_state=torch.zeros(
                batch_size,
                self.n_heads,
                self.headdim,
                self.d_state,
                device=device,
                dtype=torch.float32,
            ),
        )

    def _split(self, zxbcdt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return torch.split(zxbcdt, [self.d_inner, self.conv_dim, self.n_heads], dim=-1)

    def forward(
        self,
        x: Tensor,
        cache: Mamba2Cache | None = None,
        initial_state: Tensor | None = None,
        return_final_state: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """``x`` ``[B, L, d_model]`` -> ``y`` ``[B, L, d_model]`` (and the final SSM state).

        With ``cache``, the sequence continues from the cache's state and the state after
        ``x`` is written back (prefill). ``initial_state`` ``[B, n_heads, headdim, d_state]``
        starts the SSM from a given state (the conv starts from zeros unless a cache is
        given); ``return_final_state=True`` returns ``(y, final_state)``.
        """
        b, length, _ = x.shape
        z, xbc, dt = self._split(self.in_proj(x))
        xbc = xbc.transpose(1, 2)  # [B, conv_dim, L]
        if cache is not None:
            conv_state = cache.conv_state
            if initial_state is None:
                initial_state = cache.ssm_state
        else:
            conv_state = xbc.new_zeros(b, self.conv_dim, self.d_conv - 1)
        conv_out = causal_conv1d(xbc, self.conv1d.weight, self.conv1d.bias, conv_state)
        if cache is not None:
            _update_conv_state(cache.conv_state, xbc)
        xbc = F.silu(conv_out).transpose(1, 2)  # [B, L, conv_dim]
        gs = self.ngroups * self.d_state
        xs, B, C = torch.split(xbc, [self.d_inner, gs, gs], dim=-1)
        y, final_state = ssd_scan(
            xs.reshape(b, length, self.n_heads, self.headdim),
            F.softplus(dt.float() + self.dt_bias.float()),
            -torch.exp(self.A_log.float()),
            B.reshape(b, length, self.ngroups, self.d_state),
            C.reshape(b, length, self.ngroups, self.d_state),
            D=self.D,
            chunk_size=self.chunk_size,
            initial_state=initial_state,
            return_final_state=True,
            backend=self.backend,
        )
        if cache is not None:
            cache.ssm_state.copy_(final_state)
        y = self.out_proj(self.norm(y.reshape(b, length, self.d_inner), z))
        return (y, final_state) if return_final_state else y

    def step(self, x_t: Tensor, cache: Mamba2Cache) -> tuple[Tensor, Mamba2Cache]:
        """One step: ``x_t`` ``[B, d_model]`` -> ``[B, d_model]``; updates ``cache`` in place."""
        b = x_t.shape[0]
        z, xbc, dt = self._split(self.in_proj(x_t))
        xbc = F.silu(
            causal_conv1d_step(xbc, self.conv1d.weight, self.conv1d.bias, cache.conv_state)
        )
        gs = self.ngroups * self.d_state
        xs, B, C = torch.split(xbc, [self.d_inner, gs, gs], dim=-1)
        xs = xs.reshape(b, self.n_heads, self.headdim).float()
        rep = self.n_heads // self.ngroups
        B = B.reshape(b, self.ngroups, 1, self.d_state).float()
        C = C.reshape(b, self.ngroups, 1, self.d_state).float()
        dt = F.softplus(dt.float() + self.dt_bias.float())  # [B, H]
        decay = torch.exp(dt * -torch.exp(self.A_log.float()))  # [B, H]
        # h = decay * h + dt * x B^T, viewed per group: [B, G, rep, P, N]
        state = cache.ssm_state.view(b, self.ngroups, rep, self.headdim, self.d_state)
        dx = (dt[..., None] * xs).view(b, self.ngroups, rep, self.headdim, 1)
        state.mul_(decay.view(b, self.ngroups, rep, 1, 1)).add_(dx * B[:, :, :, None])
        y = (state @ C.transpose(-1, -2)[:, :, None]).reshape(b, self.n_heads, self.headdim)
        y = y + self.D.float()[:, None] * xs
        y = self.out_proj(self.norm(y.reshape(b, self.d_inner).to(x_t.dtype), z))
        return y, cache
