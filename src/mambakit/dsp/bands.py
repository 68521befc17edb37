"""Logarithmic (octave) band split with exact reconstruction (the LogCascade front end)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Band", "LogBands", "log_bands"]


@dataclass(frozen=True)
class Band:
    """One band: nominal edges [f_lo, f_hi] Hz; stored at ``rate = sr / factor`` Hz."""

    f_lo: float
    f_hi: float
    factor: int
    rate: float


def _lowpass_weight(freqs: torch.Tensor, edge: float, width_oct: float) -> torch.Tensor:
    """Smooth 1 -> 0 step around ``edge`` over +-width_oct octaves (cos^2 in log-frequency)."""
    lf = torch.log2(freqs.clamp_min(1e-9) / edge)
    u = ((lf + width_oct) / (2 * width_oct)).clamp(0, 1)
    w = torch.cos(0.5 * math.pi * u) ** 2
    return torch.where(freqs <= 0, torch.ones_like(w), w)


class LogBands:
    """Octave bands from sr/2 down to ``f_min`` plus the residual below it.

    Crossovers are complementary in the FFT domain: with lowpass steps L_1 >= ... >= L_n,
    band 0 = 1 - L_1, band k = L_k - L_{k+1}, residual = L_n, which sum to exactly 1.
    ``split`` and ``merge`` each apply the square root of a band's weight, so
    ``merge(split(x)) == x`` up to float error *and* ``merge`` keeps every part inside its own
    band: whatever a model writes into a band's slot outside that band (e.g. a patch-rate
    comb at 689 Hz from the top band's path) is dropped instead of added to the mix.
    Transitions span +-0.25 octave around each edge. A band whose top edge is f_hi is kept
    at rate = 4 * f_hi (power-of-two decimation, leaving room for the transition above
    f_hi); the top band stays at full rate.
    Differentiable (rfft / irfft only).
    """

    def __init__(self, sr: int = 44100, f_min: float = 43.0, width_oct: float = 0.25) -> None:
        self.sr = sr
        self.width_oct = width_oct
        n_oct = max(1, int(round(math.log2((sr / 2) / f_min))))
        edges = [sr / 2 / 2**k for k in range(n_oct + 1)]  # sr/2, sr/4, ..., ~f_min
        bands = []
        for k in range(n_oct):
            factor = 1 if k == 0 else 2 ** (k - 1)
            bands.append(Band(edges[k + 1], edges[k], factor, sr / factor))
        factor = 2 ** (n_oct - 1)
        bands.append(Band(0.0, edges[-1], factor, sr / factor))  # residual
        self.bands = bands
        self.edges = edges[1:]  # crossover frequencies, high to low
        self._root_cache: dict[tuple, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.bands)

    def _weights(self, n_time: int, device, dtype) -> torch.Tensor:
        """[n_bands, n_time // 2 + 1] real weights summing to 1 on every bin."""
        freqs = torch.fft.rfftfreq(n_time, 1 / self.sr, device=device).to(torch.float64)
        lows = [_lowpass_weight(freqs, e, self.width_oct) for e in self.edges]
        w = [1 - lows[0]] + [lows[i] - lows[i + 1] for i in range(len(lows) - 1)] + [lows[-1]]
        return torch.stack(w).to(dtype)

    def _root_weights(self, n_time: int, device, dtype) -> torch.Tensor:
        """``sqrt`` of :meth:`_weights`, what split and merge apply; cached per length,
        device and dtype (computing them costs as much as the FFTs)."""
        key = (n_time, str(device), dtype)
        cache = self._root_cache
        if key not in cache:
            if len(cache) >= 8:
                cache.clear()
            weights = self._weights(n_time, device, torch.float64).clamp_min(0.0)
            cache[key] = weights.sqrt().to(dtype)  # clamp: a weight rounded below 0 would be NaN
        return cache[key]

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[B, C, T] -> list of [B, C, T_k], T_k = ceil(T / factor_k) (band 0 has T).

        Differentiable; the backward pass is :meth:`merge` without its scales (split and
        merge are adjoint up to the per-band scale ``T_k / T``): one FFT per band instead of
        autograd's full-length complex FFT per band."""
        return list(_Split.apply(self, x))

    def merge(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`split`: list of [B, C, T_k] -> [B, C, T] (T = len of band 0).

        Differentiable; the backward pass is :meth:`split` (see there)."""
        if len(parts) != len(self.bands):
            raise ValueError(f"expected {len(self.bands)} bands, got {len(parts)}")
        return _Merge.apply(self, *parts)

    def _bins(self, n: int, n_k: int, factor: int) -> int:
        """Spectrum bins ``[0, m)`` of a length-``n`` signal that band ``k`` (length
        ``n_k``) carries: up to its own Nyquist bin, which is left out when ``n_k`` is even
        and the band is decimated (its weight is ~0 there, and irfft would drop the
        imaginary part)."""
        m = min(n_k // 2 + 1, n // 2 + 1)
        if n_k % 2 == 0 and factor > 1:
            m = min(m, n_k // 2)
        return m

    def _split(self, x: torch.Tensor, scales: list[float] | None = None) -> list[torch.Tensor]:
        """The parts of :meth:`split`, each times ``scales[k]`` (default ``T_k / T``)."""
        n = x.shape[-1]
        spec = torch.fft.rfft(x, dim=-1)  # [B, C, n//2+1]
        w = self._root_weights(n, x.device, x.dtype)
        parts = []
        for k, (band, wk) in enumerate(zip(self.bands, w)):
            n_k = -(-n // band.factor)
            m = self._bins(n, n_k, band.factor)
            scale = n_k / n if scales is None else scales[k]
            parts.append(torch.fft.irfft(spec[..., :m] * (wk[:m] * scale), n=n_k, dim=-1))
        return parts

    def _merge(
        self, parts: list[torch.Tensor | None], n: int, scales: list[float] | None = None
    ) -> torch.Tensor:
        """:meth:`merge` of ``parts`` times ``scales[k]`` (default ``T / T_k``) into a
        length-``n`` signal; a ``None`` part counts as zeros (at least one is given)."""
        given = [p for p in parts if p is not None]
        n_bins = n // 2 + 1
        w = self._root_weights(n, given[0].device, given[0].dtype)
        total = None
        for k, (part, band, wk) in enumerate(zip(parts, self.bands, w)):
            if part is None:
                continue
            n_k = part.shape[-1]
            m = self._bins(n, n_k, band.factor)
            scale = n / n_k if scales is None else scales[k]
            spectrum = torch.fft.rfft(part, dim=-1)
            if total is None and m == n_bins:  # a full-width band starts the sum: no zeros
                total = spectrum.mul_(wk * scale)
                continue
            sub = spectrum[..., :m].mul_(wk[:m] * scale)  # in place: no spectrum per band
            if total is None:
                total = sub.new_zeros(*sub.shape[:-1], n_bins)
            total[..., :m] += sub  # in place: no padded copy per band
        return torch.fft.irfft(total, n=n, dim=-1)


class _Split(torch.autograd.Function):
    """``LogBands.split`` with its adjoint as the backward. Band k is
    ``x -> irfft(rfft(x)[:m_k] w_k, T_k) T_k / T`` and ``merge`` is
    ``parts -> irfft(sum_k pad(rfft(part_k)[:m_k] w_k T / T_k), T)``; the adjoint of the
    first is the second without its scales (the adjoint of irfft_T is rfft / T with the
    interior bins doubled, that of rfft_T is T irfft_T with them halved, so the factors
    cancel on every bin kept: DC and Nyquist are real on both sides), and vice versa."""

    @staticmethod
    def forward(ctx, bands: LogBands, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.bands, ctx.n = bands, x.shape[-1]
        return tuple(bands._split(x))

    @staticmethod
    def backward(ctx, *grads: torch.Tensor | None) -> tuple[None, torch.Tensor | None]:
        bands, n = ctx.bands, ctx.n
        if all(g is None for g in grads):
            return None, None
        return None, bands._merge(list(grads), n, [1.0] * len(bands.bands))


class _Merge(torch.autograd.Function):
    """``LogBands.merge`` with its adjoint as the backward: ``split`` of the output
    gradient without its scales (see :class:`_Split`)."""

    @staticmethod
    def forward(ctx, bands: LogBands, *parts: torch.Tensor) -> torch.Tensor:
        ctx.bands = bands
        return bands._merge(list(parts), parts[0].shape[-1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        bands = ctx.bands
        parts = bands._split(grad, [1.0] * len(bands.bands))
        return (None, *(p if need else None for p, need in zip(parts, ctx.needs_input_grad[1:])))


def log_bands(sr: int = 44100, f_min: float = 43.0) -> LogBands:
    """The default 9-octave split (22050 Hz ... ~43 Hz plus residual) at ``sr``."""
    return LogBands(sr=sr, f_min=f_min)
