"""Mamba-2 mixer (Dao & Gu, 2024, "Transformers are SSMs", section 7 / figure 6)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layout import decode_layout_, step_linear
from .mixer import RecurrentMixer, conv_ssm_cache, dt_bias_init
from .ops import (
    _update_conv_state,
    causal_conv1d,
    causal_conv1d_step,
    compiled,
    should_compile,
    ssd_scan,
)

__all__ = ["Mamba2", "Mamba2Cache", "GatedRMSNorm"]

# The scan the fused layer (cpu_fused.mamba2_layer) implements; see _fused_stages.
_SHIPPED_SCAN = ssd_scan


@dataclass
class Mamba2Cache:
    """Recurrent state of one :class:`Mamba2` layer.

    Attributes:
        conv_state: ``[B, conv_dim, d_conv - 1]`` the last pre-convolution inputs.
        ssm_state: ``[B, n_heads, headdim, d_state]`` the SSD state (float32).
    """

    conv_state: Tensor
    ssm_state: Tensor


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
        """``y, z`` ``[..., dim]`` -> ``[..., dim]`` in the dtype of ``z`` (statistics in fp32)."""
        gated = y.float() * F.silu(z.float())
        if self.group_size == gated.shape[-1]:  # one group: torch's fused RMSNorm kernel
            return F.rms_norm(gated, (self.group_size,), self.weight.float(), self.eps).to(z.dtype)
        shape = gated.shape
        gated = gated.reshape(*shape[:-1], -1, self.group_size)
        gated = F.rms_norm(gated, (self.group_size,), None, self.eps)
        return (gated.reshape(shape) * self.weight).to(z.dtype)


class Mamba2(RecurrentMixer):
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
        chunk_size: SSD chunk length Q. 64 was the fastest of {32, 64, 128, 256} on CPU for
            d_model 64 and L = 44,100 (``mambakit bench ssm`` times the layer).
        dt_min, dt_max: range of the log-uniform initial step sizes.
        A_init_range: range of the uniform initial ``-A``.
        backend: ``"auto" | "torch" | "mamba_ssm"`` for the scan (see :func:`ssd_scan`).

    Shapes: ``forward`` ``[B, L, d_model] -> [B, L, d_model]``;
    ``step`` ``[B, d_model] -> [B, d_model]``.

    Speed paths (``mambakit bench ssm`` measures each side by side with ``transformers``'
    ``Mamba2Mixer``): on CPU (float32, ``backend="auto"``) the whole layer is one
    autograd node of C kernels (:func:`~mambakit.ssm.cpu_fused.mamba2_layer`: the two
    projections as a vectorised matrix product, conv + SiLU, the fused SSD recurrence of
    :mod:`~mambakit.ssm.cpu_kernel` with its exact C backward, the gated norm), each stage
    reading ``in_proj``'s output in place; with a conv cache
    to continue from, or where the kernels cannot be built, the same stages run as PyTorch
    ops beside the C scan (a time-major causal conv,
    :func:`~mambakit.ssm.ops.causal_conv1d`); ``backend="torch"`` runs the chunked SSD
    scan (natural-layout chunks, a one-node chunk-state recurrence); with
    :func:`~mambakit.ssm.ops.set_compile` on, the whole forward (and its backward) is one
    ``torch.compile`` graph, the chunk recurrence in segment-sum form.
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
        self.dt_bias = nn.Parameter(dt_bias_init(self.n_heads, dt_min, dt_max))
        self.A_log = nn.Parameter(torch.log(torch.empty(self.n_heads).uniform_(*A_init_range)))
        self.D = nn.Parameter(torch.ones(self.n_heads))
        self.norm = GatedRMSNorm(self.d_inner, group_size=self.d_inner // ngroups)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        decode_layout_(self)

    def _new_cache(self, batch_size: int, max_seqlen: int | None, device, dtype) -> Mamba2Cache:
        """Zero state for ``batch_size`` sequences (``max_seqlen`` is unused: the state is O(1))."""
        shape = (self.n_heads, self.headdim, self.d_state)
        return conv_ssm_cache(
            Mamba2Cache, batch_size, self.conv_dim, self.d_conv, shape, device, dtype
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
        if cache is None and should_compile(x.shape[0] * x.shape[1]):
            y, final_state = compiled(_mamba2_forward)(self, x, None, initial_state)
        else:
            conv_state = None
            if cache is not None:
                conv_state = cache.conv_state
                if initial_state is None:
                    initial_state = cache.ssm_state
            y, final_state = _mamba2_forward(self, x, conv_state, initial_state)
            if cache is not None:
                cache.ssm_state.copy_(final_state)
        return (y, final_state) if return_final_state else y

    def step(self, x_t: Tensor, cache: Mamba2Cache) -> tuple[Tensor, Mamba2Cache]:
        """One step: ``x_t`` ``[B, d_model]`` -> ``[B, d_model]``; updates ``cache`` in place.

        The recurrence ``h = exp(dt A) h + dt x B^T``, ``y = h C + D x`` per head, written as
        a few batched in-place ops on ``[B * G, heads per group * P, N]`` views of the state
        (the heads of a group share ``B`` and ``C``; the per-head decay and step broadcast
        over views, no ``repeat_interleave`` copies), so that a step costs ~15 small ops. At
        batch 1 a step is bound by reading the weights (stored column-major by
        :func:`~mambakit.ssm.layout.decode_layout_`, twice as fast to stream on CPU) plus
        per-op dispatch, not by arithmetic: ``mambakit bench ssm`` reports the step time of a
        12-layer, d_model 512 backbone next to the time of its ``nn.Linear`` layers alone.
        """
        b, g, n = x_t.shape[0], self.ngroups, self.d_state
        h, p = self.n_heads, self.headdim
        z, xbc, dt = self._split(step_linear(self.in_proj, x_t))
        xbc = F.silu(
            causal_conv1d_step(xbc, self.conv1d.weight, self.conv1d.bias, cache.conv_state)
        )
        gs = g * n
        xs, B, C = torch.split(xbc.float(), [self.d_inner, gs, gs], dim=-1)
        dt = F.softplus(dt.float() + self.dt_bias)  # [B, H]
        decay = torch.exp(dt * -torch.exp(self.A_log.float()))  # [B, H]
        cache.ssm_state.view(b, g, h // g, p, n).mul_(decay.view(b, g, h // g, 1, 1))
        state = cache.ssm_state.view(b * g, -1, n)  # [B*G, heads per group * P, N]
        dx = (xs.view(b, h, p) * dt[..., None]).view(b * g, -1, 1)
        state.baddbmm_(dx, B.reshape(b * g, 1, n))  # h += (dt x) B^T
        y = torch.bmm(state, C.reshape(b * g, n, 1)).view(b, h, p)  # y = h C
        y = torch.addcmul(y, self.D.float()[:, None], xs.view(b, h, p))
        y = step_linear(self.out_proj, self.norm(y.view(b, self.d_inner).to(x_t.dtype), z))
        return y, cache


def _mamba2_forward(
    layer: Mamba2, x: Tensor, conv_state: Tensor | None, initial_state: Tensor | None
) -> tuple[Tensor, Tensor]:
    """The body of :meth:`Mamba2.forward`: ``x`` ``[B, L, d_model]`` -> ``(y, final_state)``.

    A plain function of the layer, so that :func:`~mambakit.ssm.ops.compiled` can compile it
    once for every layer of the same configuration. With ``conv_state`` the convolution
    continues from it, and the state is then advanced in place to the end of ``x``.
    """
    b, length, _ = x.shape
    fused = _fused_stages(layer, x, conv_state)
    if fused is not None:  # in_proj .. out_proj as one node of fused C kernels
        return fused.mamba2_layer(layer, x, initial_state)
    zxbcdt = layer.in_proj(x)
    z, xbc, dt = layer._split(zxbcdt)  # xbc: [B, L, conv_dim]
    conv_out = causal_conv1d(xbc, layer.conv1d.weight, layer.conv1d.bias, conv_state)
    if conv_state is not None:
        _update_conv_state(conv_state, xbc)
    xbc = F.silu(conv_out)
    gs = layer.ngroups * layer.d_state
    xs, B, C = torch.split(xbc, [layer.d_inner, gs, gs], dim=-1)
    y, final_state = ssd_scan(
        xs.reshape(b, length, layer.n_heads, layer.headdim),
        F.softplus(dt.float() + layer.dt_bias.float()),
        -torch.exp(layer.A_log.float()),
        B.reshape(b, length, layer.ngroups, layer.d_state),
        C.reshape(b, length, layer.ngroups, layer.d_state),
        D=layer.D,
        chunk_size=layer.chunk_size,
        initial_state=initial_state,
        return_final_state=True,
        backend=layer.backend,
    )
    y = layer.out_proj(layer.norm(y.reshape(b, length, layer.d_inner), z))
    return y, final_state


def _fused_stages(layer: Mamba2, x: Tensor, conv_state: Tensor | None) -> Any:
    """:mod:`~mambakit.ssm.cpu_fused` when the layer (projections, conv + SiLU, softplus,
    scan, gated norm) runs as its fused C kernels (:func:`~mambakit.ssm.cpu_fused.mamba2_layer`):
    backend ``"auto"`` or ``"cpu_kernel"``, float32 CPU tensors, no conv history to continue
    from, not traced, both C libraries built, and this module's ``ssd_scan`` the shipped one;
    ``None`` for the PyTorch stages (the fallback where a build failed, logged once by
    ``cpu_fused`` / ``ops``; and a scan swapped in by name, e.g. a reference loop, is run)."""
    if layer.backend not in ("auto", "cpu_kernel") or conv_state is not None:
        return None
    if ssd_scan is not _SHIPPED_SCAN:  # a scan swapped in (bench ssm's reference loop) runs
        return None
    from . import cpu_fused, cpu_kernel

    params = (layer.in_proj.weight, layer.conv1d.weight, layer.norm.weight, layer.D,
              layer.dt_bias, layer.A_log, layer.out_proj.weight)  # fmt: skip
    if not cpu_fused.supports(x, *params) or not cpu_kernel.available():
        return None
    return cpu_fused
