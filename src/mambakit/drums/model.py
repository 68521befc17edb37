"""The MambaKit denoiser (seed sections 3.2-3.3): full-rate CNN path + LogCascade of Mamba2.

Data flow for one denoising call (shapes for batch B, clip length T)::

    [x_noisy, sine anchor, eq.-3 envelope]            [B, 3, T]
      |-- full-rate CNN (dilated convs, FiLM) ----------------------------.   gate 0
      |-- LogBands.split -> band k at its own rate      [B, 3, T_k]        |
      |     -> tokens: conv, SiLU, low-pass decimation  [B, C, T_k/patch_k]|   gate k+1
      |     -> Mamba2 blocks, state size from the band (4 ... 160), FiLM   |
      |     -> interpolated tokens x carrier conv of the band [B, C, T_k]  |
      |   LogBands.merge (keeps each output in its own band) --------------+--> sum
      |-- global Mamba2 "parser" over the sum at T/64 tokens (residual, ---'
      |   low-pass decimation and Gaussian interpolation)
      `-> head -> x0_hat, eps_hat                      [B, 1, T] each
    x0_hat += gain(cond) * sine + filter(cond, tag) * noise, all x requested ADSR

Choices where the seed leaves room (see also docs):

- The bands are the exact octave split of :class:`mambakit.dsp.LogBands` (22050 Hz ... 43 Hz
  plus the residual). The seed runs each band "at its own downsampled rate"; we go one step
  further and group samples of the decimated band into tokens, so every band's Mamba2 sees at
  most ``token_rate_hz`` tokens per second. That is what makes a 1 s, 44.1 kHz one-shot cheap
  on a CPU: the high bands carry their detail in the token channels.
- SkipGates: ``sigmoid(Linear(cond))`` weighs each path in [0, 1] (initialised open). In eval
  mode a path whose gate is below 0.5 for every item of the batch is not run at all.
- ``full_res`` (ablation): every band is brought back to the full sample rate before its path,
  so each path sees ``T / patch_0`` tokens at the full rate, which is the seed's "no band
  downsampling" baseline: same model, ~10x the sequence work.
- The band paths are causal Mamba2 stacks; the whole clip is denoised at once, and causality
  keeps a streaming path open.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mambakit.drums.config import DrumConfig
from mambakit.pretrained import PretrainedMixin
from mambakit.ssm import Mamba2


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of float timesteps ``t [B]`` -> ``[B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    ang = t.float()[:, None] * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


class ParamEmbedding(nn.Module):
    """Channel-wise parameter conditioning: ADSR [B, 5] + pitch class + octave + tag
    (index ``n_tags`` is the null tag of classifier-free guidance) + timestep -> [B, cond]."""

    def __init__(self, cfg: DrumConfig):
        super().__init__()
        d = cfg.cond_dim
        self.adsr = nn.Linear(5, d)
        self.pitch_class = nn.Embedding(12, d)
        self.octave = nn.Embedding(11, d)
        self.tag = nn.Embedding(len(cfg.tags) + 1, d)
        self.time = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(d, d))
        self.dim = d

    def forward(
        self, t: Tensor, adsr: Tensor, pitch_class: Tensor, octave: Tensor, tag: Tensor
    ) -> Tensor:
        # Times enter as log-seconds so 2 ms and 200 ms are equally far apart in the input.
        adsr = adsr.float()
        adsr_feat = torch.cat([torch.log(adsr[:, [0, 1, 3, 4]] + 1e-3), adsr[:, 2:3]], dim=1)
        e = self.time(timestep_embedding(t, self.dim)) + self.adsr(adsr_feat)
        e = e + self.pitch_class(pitch_class) + self.octave(octave.clamp(0, 10)) + self.tag(tag)
        return self.out(e)


def filtered_noise(noise: Tensor, gains: Tensor, sr: int, f_min: float = 43.0) -> Tensor:
    """Shape ``noise [B, 1, T]`` by a spectral envelope: ``|gains| [B, K]`` are amplitudes
    at ``K`` log-spaced frequencies from ``f_min`` to ``sr / 2``, interpolated linearly in
    log-frequency (held flat beyond both ends) and applied in the rFFT domain.

    The magnitudes are interpolated, not the signed gains: the sign of a noise filter is
    inaudible and no loss pins it, so trained gains drift to alternating signs, and a
    linear interpolation between neighbours of opposite sign puts a notch between every
    pair (measured: a notch every ~700 Hz from 1 to 4 kHz after 150 steps, +2.5 dB on the
    comb measure)."""
    n_time, k = noise.shape[-1], gains.shape[-1]
    freqs = torch.fft.rfftfreq(n_time, 1.0 / sr, device=noise.device)
    centres = torch.linspace(math.log(f_min), math.log(sr / 2), k, device=noise.device)
    pos = (freqs.clamp(f_min, sr / 2).log() - centres[0]) / (centres[1] - centres[0])
    lo = pos.floor().long().clamp(0, k - 2)
    frac = (pos - lo).clamp(0.0, 1.0).to(gains.dtype)
    magnitude = gains.abs()
    curve = magnitude[:, lo] * (1 - frac) + magnitude[:, lo + 1] * frac  # [B, n_freq]
    spectrum = torch.fft.rfft(noise.float(), dim=-1) * curve[:, None, :].float()
    return torch.fft.irfft(spectrum, n=n_time, dim=-1).to(noise.dtype)


def _gaussian_weights(
    factor: int, width: float, device: torch.device, dtype: torch.dtype
) -> tuple[int, Tensor]:
    """``(reach, weights)`` of the Gaussian resampling kernel: ``weights[q, r]`` ``[2R + 1,
    factor]`` is the weight of token ``m + q - R`` at sample ``r`` of patch ``m``, whose
    distance from the token's centre is ``(R - q) * factor + r - (factor - 1) / 2`` samples;
    ``R = reach`` tokens on each side contribute (3 standard deviations)."""
    sigma = width * factor
    reach = _gaussian_reach(factor, width)
    q = torch.arange(2 * reach + 1, device=device, dtype=dtype)[:, None]
    r = torch.arange(factor, device=device, dtype=dtype)[None, :]
    dist = (reach - q) * factor + r - (factor - 1) / 2
    return reach, torch.exp(-0.5 * (dist / sigma) ** 2)


def _gaussian_reach(factor: int, width: float) -> int:
    """Tokens on each side that :func:`_gaussian_weights` covers (3 standard deviations)."""
    return int(math.ceil(3 * width * factor / factor)) + 1


def _spread(tokens: Tensor, weights: Tensor, reach: int) -> Tensor:
    """Tokens ``[..., N]`` -> ``[..., N * factor]``: every sample the weighted sum of the
    ``2R + 1`` tokens around it (no normalisation)."""
    span = 2 * reach + 1
    windows = F.pad(tokens, (reach, reach)).unfold(-1, span, 1)  # [..., N, 2R + 1]
    # one [M * N, 2R + 1] @ [2R + 1, factor] matmul: a batched matmul on the overlapping
    # windows view broadcasts the weights instead, several times slower
    return (windows.reshape(-1, span) @ weights).view(*tokens.shape[:-1], -1)


def _zero_pad(x: Tensor, left: int, right: int) -> Tensor:
    """``F.pad(x, (left, right))`` for long rows: only the margins are zeroed (F.pad fills
    the whole output before copying, a second pass over a full-rate tensor)."""
    n = x.shape[-1]
    out = x.new_empty(*x.shape[:-1], left + n + right)
    out[..., :left].zero_()
    out[..., left + n :].zero_()
    out[..., left : left + n].copy_(x)
    return out


def _pool(x: Tensor, weights: Tensor, reach: int, n_tok: int, edges: tuple | None = None) -> Tensor:
    """Samples ``[..., n]`` -> ``[..., n_tok]``, ``n <= n_tok * factor``: the adjoint of
    :func:`_spread` (each token the weighted sum of the samples its weights reach).
    ``edges = (scale [1, n], head, tail)``: ``x`` times ``scale`` first, which is 1 except
    on ``[:head]`` and ``[tail:]``."""
    factor, span = weights.shape[1], 2 * reach + 1
    n = x.shape[-1]
    left = reach * factor
    padded = _zero_pad(x, left, reach * factor + n_tok * factor - n)
    if edges is not None:
        scale, head, tail = edges
        padded[..., left : left + head] *= scale[..., :head]
        padded[..., left + tail : left + n] *= scale[..., tail:]
    # The padded signal's blocks of `factor` samples times the taps of each of the 2R + 1
    # blocks a token reads (token i reads block i + q with taps weights[2R - q]), then the
    # sum along the diagonals of [n_tok + 2R, 2R + 1]: one strided view, element
    # [i + q, q] at offset i * span + q * (span + 1). Several times faster than conv1d.
    blocks = padded.unflatten(-1, (n_tok + 2 * reach, factor))
    partial = (blocks @ weights.flip(0).t()).contiguous()  # [..., n_tok + 2R, 2R + 1]
    lead = partial.shape[:-2]
    strides = partial.stride()[:-2] + (span, span + 1)
    return partial.as_strided((*lead, n_tok, span), strides).sum(-1)


class _GaussianResample(torch.autograd.Function):
    """:func:`smooth_upsample` (``up``) and :func:`smooth_downsample`, each with the other's
    kernel as its backward: the upsampling is ``spread(tokens) / total`` and its adjoint is
    ``pool(grad / total)``; the downsampling ``pool(x) / total`` has the adjoint
    ``spread(grad / total)`` (``total``: the summed weights, the same kernel both ways).
    Half the passes over the full-rate tensors of autograd through the ops.

    Upsampling divides by the per-sample ``total`` without a pass of its own: away from the
    clip's first and last ``reach`` patches every token is inside the clip, so ``total``
    depends only on the sample's place ``r`` in its patch and divides the weights instead;
    only the samples near the ends are rescaled (``edges``)."""

    @staticmethod
    def forward(ctx, x: Tensor, factor: int, n_out: int, width: float, up: bool) -> Tensor:
        reach, weights = _gaussian_weights(factor, width, x.device, x.dtype)
        n_in = x.shape[-1]
        if _fused_resampling(x, factor, reach):  # the C pair of mambakit.drums.fused
            return _GaussianResample.fused_forward(ctx, x, weights, reach, n_out, up)
        ctx.fused = False
        if up:
            per_place = weights.sum(0)  # [factor]: the total inside the clip
            weights = weights / per_place
            total = _spread(x.new_ones(1, n_in), weights, reach)[..., :n_out]
            scale = 1.0 / total  # [1, n_out], 1 but near the ends
            head = min(n_out, reach * factor)
            tail = max(head, min(n_out, (n_in - reach) * factor))
            out = _spread(x, weights, reach)[..., :n_out]
            out[..., :head] *= scale[..., :head]
            out[..., tail:] *= scale[..., tail:]
            ctx.save_for_backward(weights, scale)
            ctx.conf = (reach, n_in, (head, tail))
            return out
        total = _pool(x.new_ones(1, n_in), weights, reach, n_out)
        ctx.save_for_backward(weights, total)
        ctx.conf = (reach, n_in, None)
        return _pool(x, weights, reach, n_out) / total

    @staticmethod
    def fused_forward(ctx, x: Tensor, weights: Tensor, reach: int, n_out: int, up: bool):
        """The forward by the C pool / spread (rows of ``x`` as ``[R, n]``); the per-sample
        normalisation of the upsampling is one row ``scale`` over the whole clip."""
        from mambakit.drums import fused

        factor, n_in = weights.shape[1], x.shape[-1]
        n_tok, n = (n_in, n_out) if up else (n_out, n_in)
        per_block = fused.patches_per_block(factor)
        n_blocked = -(-n_tok // per_block) * per_block
        rows = x.reshape(-1, n_in)
        ctx.fused, ctx.conf = True, (reach, n_tok, n, n_blocked, up, x.shape[:-1])
        if up:
            weights = weights / weights.sum(0)
            total = _spread(x.new_ones(1, n_tok), weights, reach)[0]  # [N * factor]
            scale = F.pad(1.0 / total, (0, (n_blocked - n_tok) * factor), value=1.0)
            padded = F.pad(rows, (reach, reach + n_blocked - n_tok))
            ctx.save_for_backward(weights, scale)
            out = fused.gaussian_spread(padded, scale, weights, n_tok, n)
        else:
            total = _pool(x.new_ones(1, n_in), weights, reach, n_tok)[0]  # [N]
            ctx.save_for_backward(weights, total)
            out = fused.gaussian_pool(rows, None, weights, n_tok) / total
        return out.view(*x.shape[:-1], n_out)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, None, None, None]:
        weights, normaliser = ctx.saved_tensors
        if ctx.fused:
            from mambakit.drums import fused

            reach, n_tok, n, n_blocked, up, lead = ctx.conf
            if up:  # the adjoint of spread-then-scale: pool of the scaled gradient
                rows = fused.gaussian_pool(grad.reshape(-1, n), normaliser, weights, n_tok)
                return rows.view(*lead, n_tok), None, None, None, None
            padded = F.pad(grad.reshape(-1, n_tok) / normaliser, (reach, reach + n_blocked - n_tok))
            rows = fused.gaussian_spread(padded, None, weights, n_tok, n)
            return rows.view(*lead, n), None, None, None, None
        reach, n_in, edges = ctx.conf
        if edges is not None:  # upsampling: normaliser is the scale at the ends
            grad_in = _pool(grad, weights, reach, n_in, (normaliser, *edges))
        else:
            grad_in = _spread(grad / normaliser, weights, reach)[..., :n_in]
        return grad_in, None, None, None, None


def _fused_resampling(x: Tensor, factor: int, reach: int) -> bool:
    """Whether :class:`_GaussianResample` runs the C kernels on ``x`` (float32 CPU, a patch
    and Gaussian the kernels take, the kernels built)."""
    from mambakit.drums import fused

    return fused.supports_shape(factor, 0, 2 * reach + 1) and fused.supports(x)


def smooth_upsample(tokens: Tensor, factor: int, n: int, width: float = 1.0) -> Tensor:
    """Tokens ``[B, C, N]`` (token i summarising samples ``[i * factor, (i + 1) * factor)``)
    -> a smooth per-sample curve ``[B, C, n]``, ``n <= N * factor``.

    Gaussian interpolation: each token is spread over the samples by a Gaussian of
    standard deviation ``width * factor`` samples centred on its patch, normalised by the
    summed weights (constant tokens give exactly a constant curve, at the clip edges too).
    With ``width = 1`` the Gaussian's images at multiples of the token rate are below
    -150 dB, and the sum of squared weights ripples by ~1e-4 across a patch, so the curve
    carries no trace of the patch grid, neither in its mean nor in its variance (linear
    interpolation leaves a patch-periodic variance, which any nonlinearity downstream turns
    into lines at multiples of the token rate). ``factor == 1`` returns the tokens.
    """
    if factor == 1:
        return tokens[..., :n]
    return _GaussianResample.apply(tokens, factor, n, width, True)


def smooth_downsample(x: Tensor, factor: int, width: float = 1.0) -> Tensor:
    """Per-sample features ``[B, C, n]`` -> tokens ``[B, C, ceil(n / factor)]``: the
    Gaussian-weighted mean around each patch centre, the adjoint of :func:`smooth_upsample`
    (same kernel, normalised by the weights inside the clip).

    An anti-aliasing low-pass before the decimation (-43 dB at half the token rate, below
    -150 dB from the token rate up): a strided convolution would fold a tone at f onto
    ``f - k * token_rate``, and the decoder's product with the carrier at f would then put
    a line at exactly ``k * token_rate``. ``factor == 1`` returns ``x``.
    """
    if factor == 1:
        return x
    return _GaussianResample.apply(x, factor, -(-x.shape[-1] // factor), width, False)


def smooth_upsample_ref(tokens: Tensor, factor: int, n: int, width: float = 1.0) -> Tensor:
    """:func:`smooth_upsample` as plain differentiable ops (its reference twin)."""
    if factor == 1:
        return tokens[..., :n]
    reach, weights = _gaussian_weights(factor, width, tokens.device, tokens.dtype)
    total = _spread(torch.ones_like(tokens[:1, :1]), weights, reach)[..., :n]
    return _spread(tokens, weights, reach)[..., :n] / total


def smooth_downsample_ref(x: Tensor, factor: int, width: float = 1.0) -> Tensor:
    """:func:`smooth_downsample` as plain differentiable ops (its reference twin)."""
    if factor == 1:
        return x
    reach, weights = _gaussian_weights(factor, width, x.device, x.dtype)
    n_tok = -(-x.shape[-1] // factor)
    total = _pool(torch.ones_like(x[:1, :1]), weights, reach, n_tok)
    return _pool(x, weights, reach, n_tok) / total


class _Conv1d(torch.autograd.Function):
    """``F.conv1d`` (stride 1, zero padding) for the few channels (3-16) at the full sample
    rate of this model, each pass by the fastest of the equivalent forms measured here:

    - forward: from the input's tap windows ``[B, C_in * K + 1, n]`` (:func:`conv_taps`,
      shared by the convolutions of one input) as one batched matmul; a 1x1 convolution as a
      batched matmul; else oneDNN's forward (fast for 8 -> 8 channels, several times slower
      than the matmul for 3 -> 16 and for 1x1);
    - input gradient: the forward convolution of the output gradient with the transposed,
      flipped kernel (oneDNN's own input gradient took 7x as long); 1x1: a batched matmul;
    - weight and bias gradients: oneDNN's (faster than any matmul form); 1x1: a matmul.
    """

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        taps: Tensor | None,
        weight: Tensor,
        bias: Tensor | None,
        padding: int,
        dilation: int,
    ) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.conf = (padding, dilation, bias is not None)
        kernel = weight.shape[-1]
        if taps is None and (kernel > 1 or padding > 0):
            return F.conv1d(x, weight, bias, padding=padding, dilation=dilation)
        flat = weight.reshape(weight.shape[0], -1)
        if taps is not None:  # the bias times the windows' row of ones: no pass of its own
            flat = torch.cat([flat, flat.new_zeros(flat.shape[0], 1) if bias is None else
                              bias[:, None]], 1)  # fmt: skip
            return flat.expand(x.shape[0], -1, -1) @ taps
        flat = flat.expand(x.shape[0], -1, -1)
        return flat @ x if bias is None else torch.baddbmm(bias[:, None], flat, x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        padding, dilation, has_bias = ctx.conf
        kernel = weight.shape[-1]
        need_x, need_w, need_b = (ctx.needs_input_grad[i] for i in (0, 2, 3))
        need_b = need_b and has_bias
        grad_x = grad_w = grad_b = None
        if kernel == 1 and padding == 0:
            if need_x:
                grad_x = weight[..., 0].t().expand(x.shape[0], -1, -1) @ grad
            if need_w:
                grad_w = (grad @ x.transpose(1, 2)).sum(0)[..., None]
            if need_b:
                grad_b = grad.sum((0, 2))
            return grad_x, None, grad_w, grad_b, None, None
        if need_x:  # the adjoint: correlate with the flipped kernel, the other padding
            flipped = weight.transpose(0, 1).flip(-1)
            span = dilation * (kernel - 1)
            grad_x = F.conv1d(grad, flipped, padding=span - padding, dilation=dilation)
        if need_w or need_b:
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad, x, weight, [weight.shape[0]], [1], [padding], [dilation], False, [0], 1,
                [False, need_w, need_b],
            )  # fmt: skip
        return grad_x, None, grad_w, grad_b, None, None


def conv_taps(x: Tensor, kernel_size: int, padding: int, dilation: int = 1) -> Tensor:
    """``x [B, C, n]`` -> the windows ``[B, C * K + 1, n_out]`` a stride-1 convolution reads
    (row ``c * K + j``: channel c shifted by tap j; the last row ones, for the bias), shared
    by the convolutions of one input."""
    span = dilation * (kernel_size - 1)
    padded = F.pad(x, (padding, padding))
    n_out = padded.shape[-1] - span
    channels = x.shape[1] * kernel_size
    windows = x.new_empty(x.shape[0], channels + 1, n_out)
    taps = windows[:, :channels].unflatten(1, (x.shape[1], kernel_size))  # [B, C, K, n_out]
    for j in range(kernel_size):
        taps[:, :, j] = padded[..., j * dilation : j * dilation + n_out]
    windows[:, channels].fill_(1.0)
    return windows


def conv1d(conv: nn.Conv1d, x: Tensor, taps: Tensor | None = None) -> Tensor:
    """``conv(x)`` for a stride-1, zero-padded ``nn.Conv1d`` (padding at most the kernel's
    span) by :class:`_Conv1d`, from ``taps = conv_taps(x, ...)`` when given. Same values
    as ``conv(x)``, its own reference."""
    (padding,), (dilation,) = conv.padding, conv.dilation
    if dilation * (conv.kernel_size[0] - 1) < padding:
        return conv(x)
    return _Conv1d.apply(x, taps, conv.weight, conv.bias, padding, dilation)


def cnn_block(y: Tensor, conv: nn.Conv1d, film: FiLM, cond: Tensor) -> Tensor:
    """One residual block of the full-rate CNN, ``y + conv(silu(film(y, cond)))`` (``y [B, C,
    n]``, ``conv`` a 'same'-padded 3-tap convolution), by the C kernel of
    :mod:`mambakit.drums.fused` for float32 CPU tensors, else by :func:`cnn_block_ref`."""
    from mambakit.drums import fused

    (kernel,), (padding,), (dilation,) = conv.kernel_size, conv.padding, conv.dilation
    if (
        kernel != 3
        or padding != dilation
        or conv.bias is None
        or not fused.supports(y, conv.weight, cond)
    ):
        return cnn_block_ref(y, conv, film, cond)
    g, b = film.proj(cond).chunk(2, dim=1)  # [B, C] each
    return fused.cnn_block(y, 1 + g, b, conv.weight, conv.bias, dilation)


def cnn_block_ref(y: Tensor, conv: nn.Conv1d, film: FiLM, cond: Tensor) -> Tensor:
    """:func:`cnn_block` by PyTorch ops (its reference twin)."""
    return y + conv1d(conv, F.silu(film(y, cond)))


def gated_mix(h: Tensor, y: Tensor, gate: Tensor) -> Tensor:
    """``h + gate * (y - h)`` for ``h, y [B, C, n]``, ``gate [B]``: the C kernel of
    :mod:`mambakit.drums.fused` for float32 CPU tensors, else :func:`gated_mix_ref`."""
    from mambakit.drums import fused

    if not fused.supports(h, y, gate) or h.shape != y.shape:
        return gated_mix_ref(h, y, gate)
    return fused.gated_mix(h, y, gate)


def gated_mix_ref(h: Tensor, y: Tensor, gate: Tensor) -> Tensor:
    """:func:`gated_mix` by ``torch.lerp`` (its reference twin)."""
    return torch.lerp(h, y, gate[:, None, None])


def head(layers: nn.Sequential, x: Tensor) -> Tensor:
    """The model's head ``(conv 3 taps, SiLU, conv 1x1)`` on ``x [B, C, n]`` -> ``[B, 2,
    n]``, by the C kernel of :mod:`mambakit.drums.fused` for float32 CPU tensors, else by
    :func:`head_ref`."""
    from mambakit.drums import fused

    conv, _, out = layers
    if (
        conv.kernel_size != (3,)
        or conv.padding != (1,)
        or conv.dilation != (1,)
        or not fused.supports(x, conv.weight, out.weight)
    ):
        return head_ref(layers, x)
    return fused.head(x, conv.weight, conv.bias, out.weight[:, :, 0], out.bias)


def head_ref(layers: nn.Sequential, x: Tensor) -> Tensor:
    """:func:`head` by PyTorch ops (its reference twin)."""
    conv, act, out = layers
    return conv1d(out, act(conv1d(conv, x)))


class FiLM(nn.Module):
    """Channel-wise scale and shift from the parameter embedding: ``h * (1 + g) + b``
    (zero-initialised, so conditioning starts as the identity)."""

    def __init__(self, cond_dim: int, channels: int):
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        g, b = self.proj(c).unsqueeze(-1).chunk(2, dim=1)
        return torch.addcmul(b, h, 1 + g)


class BandPath(nn.Module):
    """One log band: samples ``[B, 3, T_k]`` -> tokens -> Mamba2 blocks -> ``[B, C_out, T_k]``.

    Neither end has a patch grid. The old decoder, a transposed convolution of stride
    ``patch``, wrote the same kernel into every patch, so slowly varying tokens printed
    lines at multiples of the token rate (``sample_rate / 64`` = 689 Hz for every band: the
    comb of issue 14), and its strided-convolution encoder folded tones onto the grid too.
    Here the encoder is a short convolution of the band at its own rate, a SiLU (which
    brings the band's energy down to baseband) and the low-pass decimation of
    :func:`smooth_downsample`; the decoder brings the tokens back up with
    :func:`smooth_upsample` and multiplies per-sample features of the band's own input, a
    short convolution of ``[x_noisy, sine, envelope]`` at the band's rate (the carrier)::

        tokens = smooth_downsample(silu(analysis(band)))        # [B, C, T_k / patch]
        y = decode(carrier(band) * smooth_upsample(mamba(tokens)))   # [B, C_out, T_k]

    Constant tokens therefore give a time-invariant filter of the band: nothing periodic.
    """

    def __init__(
        self,
        patch: int,
        channels: int,
        out_channels: int,
        d_state: int,
        n_blocks: int,
        cond: int,
        carrier_kernel: int = 5,
    ):
        super().__init__()
        self.patch = patch
        self.analysis = nn.Conv1d(3, channels, carrier_kernel, padding=carrier_kernel // 2)
        self.blocks = nn.ModuleList(
            Mamba2(channels, d_state=d_state, headdim=channels, expand=2, chunk_size=64)
            for _ in range(n_blocks)
        )
        self.films = nn.ModuleList(FiLM(cond, channels) for _ in range(n_blocks))
        self.carrier = nn.Conv1d(3, channels, carrier_kernel, padding=carrier_kernel // 2)
        self.decode = nn.Conv1d(channels, out_channels, 1)

    def forward(self, band: Tensor, cond: Tensor, gate: Tensor | None = None) -> Tensor:
        """``band [B, 3, n]``, ``cond [B, cond]`` -> ``[B, C_out, n]``, times ``gate [B, 1,
        1]`` when given (folded into the decoder's weights: no pass of its own)."""
        taps = None
        if not _fused_ends(self, band):  # the tap windows shared by both convolutions
            (kernel,), (pad,) = self.analysis.kernel_size, self.analysis.padding
            taps = None if band.requires_grad else conv_taps(band, kernel, pad)
        h = band_encode(self, band, taps)  # [B, C, n / patch]
        for block, film in zip(self.blocks, self.films):
            h = h + block(film(h, cond).transpose(1, 2)).transpose(1, 2)
        return band_decode(self, band, h, gate, taps)  # [B, C_out, n]


def _fused_ends(path: BandPath, band: Tensor) -> bool:
    """Whether :func:`band_encode` / :func:`band_decode` run the C kernels of
    :mod:`mambakit.drums.fused` on ``band``: 'same'-padded convolutions, a patch and
    sizes they take, no gradient for the band itself, float32 CPU tensors, the kernels built."""
    from mambakit.drums import fused

    conv = path.analysis
    same = all(
        c.padding[0] * 2 == c.kernel_size[0] - 1 and c.dilation == (1,) and c.bias is not None
        for c in (path.analysis, path.carrier)
    )
    reach = _gaussian_reach(path.patch, 1.0)
    return (
        same
        and fused.supports_shape(path.patch, 3 * conv.kernel_size[0], 2 * reach + 1)
        and not band.requires_grad
        and fused.supports(band, conv.weight, path.carrier.weight, path.decode.weight)
    )


def _kernel_layout(path: BandPath, band: Tensor) -> tuple[Tensor, int, int]:
    """``(xp, N, NB)`` for the kernels: ``band`` zero-padded (``pad`` in front, up to ``NB *
    patch + pad`` behind), the number of tokens and that number rounded up to whole blocks."""
    from mambakit.drums.fused import patches_per_block

    n, pad = band.shape[-1], path.analysis.padding[0]
    n_tok = -(-n // path.patch)
    per_block = patches_per_block(path.patch)
    n_blocked = -(-n_tok // per_block) * per_block
    return F.pad(band, (pad, pad + n_blocked * path.patch - n)), n_tok, n_blocked


def band_encode(path: BandPath, band: Tensor, taps: Tensor | None = None) -> Tensor:
    """The encoder of ``path``: ``smooth_downsample(silu(analysis(band)), patch)``, ``band [B,
    3, n]`` -> tokens ``[B, C, ceil(n / patch)]``; by the C kernel when :func:`_fused_ends`
    allows, else by :func:`band_encode_ref` (``taps``: the band's tap windows for it)."""
    if not _fused_ends(path, band):
        return band_encode_ref(path, band, taps)
    from mambakit.drums import fused

    xp, n_tok, _ = _kernel_layout(path, band)
    reach, weights = _gaussian_weights(path.patch, 1.0, band.device, band.dtype)
    total = _pool(band.new_ones(1, band.shape[-1]), weights, reach, n_tok)  # [1, N]
    conv = path.analysis
    return fused.encode(xp, conv.weight, conv.bias, weights, n_tok, band.shape[-1]) / total


def band_encode_ref(path: BandPath, band: Tensor, taps: Tensor | None = None) -> Tensor:
    """:func:`band_encode` by PyTorch ops (its reference twin)."""
    return smooth_downsample(F.silu(conv1d(path.analysis, band, taps)), path.patch)


def band_decode(
    path: BandPath, band: Tensor, tokens: Tensor, gate: Tensor | None, taps: Tensor | None = None
) -> Tensor:
    """The decoder of ``path``: ``decode(carrier(band) * smooth_upsample(tokens, patch, n))``
    times ``gate [B, 1, 1]`` when given -> ``[B, C_out, n]``; by the C kernel when
    :func:`_fused_ends` allows, else by :func:`band_decode_ref`."""
    if not _fused_ends(path, band):
        return band_decode_ref(path, band, tokens, gate, taps)
    from mambakit.drums import fused

    n = band.shape[-1]
    xp, n_tok, n_blocked = _kernel_layout(path, band)
    reach, weights = _gaussian_weights(path.patch, 1.0, band.device, band.dtype)
    weights = weights / weights.sum(0)  # as smooth_upsample: normalised inside the clip
    total = _spread(band.new_ones(1, n_tok), weights, reach)  # [1, N * patch]
    scale = F.pad(1.0 / total[0], (0, (n_blocked - n_tok) * path.patch), value=1.0)
    tokens = F.pad(tokens, (reach, reach + n_blocked - n_tok))  # [B, C, NB + 2R]
    gate = band.new_ones(band.shape[0]) if gate is None else gate.reshape(band.shape[0])
    return fused.decode(
        xp, path.carrier.weight, path.carrier.bias, tokens, weights, scale,
        path.decode.weight[:, :, 0], path.decode.bias, gate, n,
    )  # fmt: skip


def band_decode_ref(
    path: BandPath, band: Tensor, tokens: Tensor, gate: Tensor | None, taps: Tensor | None = None
) -> Tensor:
    """:func:`band_decode` by PyTorch ops (its reference twin)."""
    modulation = smooth_upsample(tokens, path.patch, band.shape[-1])  # [B, C, n]
    carrier = conv1d(path.carrier, band, taps)
    if gate is None:
        return conv1d(path.decode, carrier * modulation)  # [B, C_out, n]
    weight = gate * path.decode.weight[None, :, :, 0]  # [B, C_out, C]: gate x decoder
    return torch.baddbmm(gate * path.decode.bias[:, None], weight, carrier * modulation)


class DrumDiffusionModel(nn.Module, PretrainedMixin):
    """Denoiser of the structured diffusion: ``forward(x_noisy, sine, envelope, t, adsr,
    pitch_class, octave, tag) -> (x0_hat, eps_hat)``; the audio inputs and both outputs are
    ``[B, 1, T]`` at ``config.sample_rate``; ``t`` is ``[B]`` in ``[0, train_timesteps]``."""

    config_class: ClassVar[type] = DrumConfig
    model_type: ClassVar[str] = "drums"

    def __init__(self, config: DrumConfig):
        super().__init__()
        self.config = cfg = config
        self.log_bands = cfg.log_bands()
        c_full, c_band = cfg.full_rate_channels, cfg.band_channels
        self.embed = ParamEmbedding(cfg)
        self.inp = nn.Conv1d(3, c_full, 1)
        self.cnn = nn.ModuleList(
            nn.Conv1d(c_full, c_full, 3, padding=2**i, dilation=2**i) for i in range(4)
        )
        self.cnn_film = nn.ModuleList(FiLM(cfg.cond_dim, c_full) for _ in self.cnn)
        self.bands = nn.ModuleList(
            BandPath(patch, c_band, c_full, d_state, cfg.n_blocks_per_band, cfg.cond_dim)
            for patch, d_state in zip(self.band_patches(), cfg.band_state_sizes())
        )
        self.gates = nn.Linear(cfg.cond_dim, 1 + len(self.bands))  # [cnn, band_0, ...]
        nn.init.zeros_(self.gates.weight)
        nn.init.constant_(self.gates.bias, 2.0)  # all paths open at the start of training
        self.parser = Mamba2(c_full, d_state=cfg.parser_d_state, headdim=c_full, chunk_size=64)
        # Learned per-condition gain of the sine anchor in the clean signal (see forward).
        self.anchor_gain = nn.Linear(cfg.cond_dim, 1)
        nn.init.zeros_(self.anchor_gain.weight)
        nn.init.zeros_(self.anchor_gain.bias)
        # Filtered-noise excitation (see forward): a spectral envelope over log-spaced
        # frequencies, a function of the whole condition plus a direct per-tag table, so a
        # tag's spectrum is learned from its own clips in a few hundred steps (through
        # ``cond`` alone it is entangled with note and envelope, and a CPU-sized run learns
        # an average cymbal).
        n = cfg.noise_bins
        self.noise_gain = nn.Linear(cfg.cond_dim, n)
        self.noise_gain_tag = nn.Embedding(len(cfg.tags) + 1, n)
        for p in (self.noise_gain.weight, self.noise_gain.bias, self.noise_gain_tag.weight):
            nn.init.zeros_(p)
        self.head = nn.Sequential(
            nn.Conv1d(c_full, c_full, 3, padding=1), nn.SiLU(), nn.Conv1d(c_full, 2, 1)
        )

    def band_patches(self) -> list[int]:
        """Samples per token for each band: the power of two that brings the band's rate
        down to at most ``token_rate_hz`` (``full_res``: the top band's patch everywhere)."""
        rates = [b.rate for b in self.log_bands.bands]
        if self.config.full_res:
            rates = [float(self.config.sample_rate)] * len(rates)
        ratio = [max(1.0, r / self.config.token_rate_hz) for r in rates]
        return [2 ** math.ceil(math.log2(x) - 1e-9) for x in ratio]

    def path_gates(self, cond: Tensor) -> Tensor:
        """SkipGates: ``[B, n_bands + 1]`` weights in [0, 1]; index 0 is the full-rate CNN."""
        return torch.sigmoid(self.gates(cond))

    def _active(self, gate: Tensor) -> bool:
        return self.training or bool((gate >= 0.5).any())

    def forward(
        self,
        x_noisy: Tensor,
        sine: Tensor,
        envelope: Tensor,
        t: Tensor,
        adsr: Tensor,
        pitch_class: Tensor,
        octave: Tensor,
        tag: Tensor,
        gate: Tensor | None = None,
        excitation: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``gate`` ``[B, 1, T]``: the requested ADSR curve multiplying the clean-signal
        head when ``config.envelope_gate`` (ignored otherwise, and under ``no_adsr``).
        ``excitation`` ``[B, 1, T]``: white noise, shaped by a learned spectral envelope into the
        clean signal when ``config.filtered_noise`` (none is added when it is ``None``)."""
        cfg = self.config
        if cfg.no_sine:
            sine = torch.zeros_like(sine)
        if cfg.no_adsr:
            envelope = torch.ones_like(envelope)
            adsr = torch.zeros_like(adsr)
        cond = self.embed(t, adsr, pitch_class, octave, tag)
        gates = self.path_gates(cond)
        inputs = torch.cat([x_noisy, sine, envelope], dim=1)  # [B, 3, T]
        T = inputs.shape[-1]
        h = conv1d(self.inp, inputs)  # [B, C, T]
        out = h
        if self._active(gates[:, 0]):
            y = h
            for conv, film in zip(self.cnn, self.cnn_film):
                y = cnn_block(y, conv, film, cond)
            out = gated_mix(h, y, gates[:, 0])  # h + gate * (y - h)

        parts = self.log_bands.split(inputs)  # band k: [B, 3, T_k]
        outs = []
        for k, (band, part) in enumerate(zip(self.bands, parts)):
            g = gates[:, k + 1, None, None]
            if not self._active(g):
                outs.append(h.new_zeros(h.shape[0], h.shape[1], part.shape[-1]))
                continue
            if cfg.full_res:
                y = band(F.interpolate(part, size=T, mode="linear"), cond)
                y = g * F.interpolate(y, size=part.shape[-1], mode="linear")
            else:
                y = band(part, cond, g)
            outs.append(y)
        out = out + self.log_bands.merge(outs)

        # Global parser across bands: one Mamba2 over T / parser_decimation tokens.
        d = cfg.parser_decimation
        coarse = smooth_downsample(out, d)  # [B, C, ceil(T / d)], anti-aliased
        parsed = self.parser(coarse.transpose(1, 2)).transpose(1, 2)
        out = out + smooth_upsample(parsed, d, T)
        x0, eps = head(self.head, out).chunk(2, dim=1)
        # Scaffold in the output (DESIGN principle 1): the clean signal is the sine anchor
        # times a learned gain plus a learned residual (click, noise, overtones), all
        # under the requested amplitude envelope.
        x0 = x0 + self.anchor_gain(cond)[:, :, None] * sine
        if cfg.filtered_noise and excitation is not None:
            gains = self.noise_gain(cond) + self.noise_gain_tag(tag)  # [B, noise_bins]
            x0 = x0 + filtered_noise(excitation, gains, cfg.sample_rate, cfg.f_min_hz)
        if cfg.envelope_gate and not cfg.no_adsr and gate is not None:
            x0 = x0 * gate
        return x0, eps
