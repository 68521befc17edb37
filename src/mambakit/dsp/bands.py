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
        """[B, C, T] -> list of [B, C, T_k], T_k = ceil(T / factor_k) (band 0 has T)."""
        n = x.shape[-1]
        spec = torch.fft.rfft(x, dim=-1)  # [B, C, n//2+1]
        w = self._root_weights(n, x.device, x.dtype)
        parts = []
        for band, wk in zip(self.bands, w):
            n_k = -(-n // band.factor)
            m = min(n_k // 2 + 1, spec.shape[-1])
            sub = spec[..., :m] * wk[:m]
            if n_k % 2 == 0 and m == n_k // 2 + 1 and band.factor > 1:
                sub = sub[..., :-1]  # weight is ~0 there anyway; irfft would drop its imag part
            parts.append(torch.fft.irfft(sub, n=n_k, dim=-1) * (n_k / n))
        return parts

    def merge(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`split`: list of [B, C, T_k] -> [B, C, T] (T = len of band 0)."""
        if len(parts) != len(self.bands):
            raise ValueError(f"expected {len(self.bands)} bands, got {len(parts)}")
        n = parts[0].shape[-1]
        n_bins = n // 2 + 1
        w = self._root_weights(n, parts[0].device, parts[0].dtype)
        total = None
        for part, wk in zip(parts, w):
            n_k = part.shape[-1]
            sub = torch.fft.rfft(part, dim=-1) * (n / n_k)
            m = min(sub.shape[-1], n_bins)
            if n_k % 2 == 0 and n_k != n:
                m = min(m, n_k // 2)  # skip the sub-band Nyquist bin (not carried by split)
            full = torch.nn.functional.pad(sub[..., :m] * wk[:m], (0, n_bins - m))
            total = full if total is None else total + full
        return torch.fft.irfft(total, n=n, dim=-1)


def log_bands(sr: int = 44100, f_min: float = 43.0) -> LogBands:
    """The default 9-octave split (22050 Hz ... ~43 Hz plus residual) at ``sr``."""
    return LogBands(sr=sr, f_min=f_min)
