"""Differentiable STFT, log-mel spectrogram and the spectral losses built on them."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "stft", "mel_filterbank", "mel_spectrogram", "mfcc_statistics", "MultiResolutionSTFTLoss",
    "MelLoss",
]  # fmt: skip


def _flatten_audio(x: torch.Tensor) -> torch.Tensor:
    """[B, T] or [B, 1, T] (or [T]) -> [B, T]."""
    if x.ndim == 3:
        if x.shape[1] != 1:
            raise ValueError(f"expected [B, 1, T], got {tuple(x.shape)}; mix to mono first")
        return x[:, 0]
    if x.ndim == 1:
        return x[None]
    return x


def stft(
    x: torch.Tensor,
    n_fft: int,
    hop_length: int,
    win_length: int | None = None,
    window: str = "hann",
) -> torch.Tensor:
    """Complex STFT of [B, T] / [B, 1, T] audio -> [B, n_fft // 2 + 1, frames] (centered)."""
    x = _flatten_audio(x)
    win_length = win_length or n_fft
    windows = {"hann": torch.hann_window, "hamming": torch.hamming_window}
    if window not in windows:
        raise ValueError(f"unknown window {window!r}; choose from {sorted(windows)}")
    w = windows[window](win_length, device=x.device, dtype=x.dtype)
    return torch.stft(x, n_fft, hop_length, win_length, window=w, center=True, return_complex=True)


def _hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    # HTK formula: m = 2595 log10(1 + f / 700)
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def _mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(
    sr: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """Triangular HTK-mel filterbank [n_mels, n_fft // 2 + 1], Slaney area normalisation
    (each triangle scaled by 2 / bandwidth so that filters have equal area)."""
    f_max = sr / 2 if f_max is None else f_max
    freqs = torch.linspace(0, sr / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_pts = torch.linspace(
        _hz_to_mel(torch.tensor(f_min, dtype=torch.float64)).item(),
        _hz_to_mel(torch.tensor(f_max, dtype=torch.float64)).item(),
        n_mels + 2,
        dtype=torch.float64,
    )
    hz = _mel_to_hz(mel_pts)
    lo, mid, hi = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    fb = torch.clamp(torch.minimum(up, down), min=0.0) * (2.0 / (hi - lo))
    return fb.float()


def mel_spectrogram(
    audio: torch.Tensor,
    sr: int,
    n_fft: int = 1024,
    hop_length: int = 256,
    n_mels: int = 80,
    f_min: float = 0.0,
    f_max: float | None = None,
    log: bool = True,
) -> torch.Tensor:
    """Mel magnitude spectrogram [B, n_mels, frames]; natural log of (mel + 1e-5) if ``log``."""
    mag = stft(audio, n_fft, hop_length).abs()
    fb = mel_filterbank(sr, n_fft, n_mels, f_min, f_max).to(mag.device, mag.dtype)
    mel = torch.einsum("mf,bft->bmt", fb, mag)
    return torch.log(mel + 1e-5) if log else mel


def mfcc_statistics(audio: torch.Tensor, sr: int, n_mfcc: int = 20) -> torch.Tensor:
    """MFCCs c1..c(n_mfcc - 1) (DCT-II of the 64-band log-mel spectrogram, orthonormal,
    1024-point frames every 256 samples) -> ``cat(mean, std)`` over time per clip:
    ``[B, 2 (n_mfcc - 1)]`` for audio ``[B, T]`` / ``[B, 1, T]``. Differentiable.

    c0 is dropped: with the orthonormal DCT a gain change moves c0 alone (up to the log
    floor of near-empty mel bins), so the rest describe the envelope's shape whatever the
    level."""
    mel = mel_spectrogram(audio, sr, n_fft=1024, hop_length=256, n_mels=64)  # [B, 64, frames]
    n = mel.shape[1]
    k = torch.arange(n_mfcc, dtype=mel.dtype, device=mel.device)[:, None]
    m = torch.arange(n, dtype=mel.dtype, device=mel.device)[None]
    dct = torch.cos(torch.pi / n * (m + 0.5) * k) * (2.0 / n) ** 0.5  # [n_mfcc, 64]
    dct[0] /= 2.0**0.5
    mfcc = torch.einsum("km,bmt->bkt", dct, mel)[:, 1:]  # [B, n_mfcc - 1, frames]
    return torch.cat([mfcc.mean(dim=-1), mfcc.std(dim=-1)], dim=-1)


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1, averaged over resolutions
    (Yamamoto et al., Parallel WaveGAN, eqs. 3-5):

    L_sc = ||S_y| - |S_x||_F / ||S_y||_F,  L_mag = mean |log|S_y| - log|S_x||.
    """

    def __init__(
        self,
        fft_sizes: Sequence[int] = (512, 1024, 2048),
        hop_sizes: Sequence[int] | None = None,
        win_lengths: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.fft_sizes = list(fft_sizes)
        self.hop_sizes = list(hop_sizes) if hop_sizes else [n // 4 for n in self.fft_sizes]
        self.win_lengths = list(win_lengths) if win_lengths else list(self.fft_sizes)
        if not len(self.fft_sizes) == len(self.hop_sizes) == len(self.win_lengths):
            raise ValueError("fft_sizes, hop_sizes and win_lengths must have equal lengths")

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """pred, target: [B, T] or [B, 1, T] -> scalar loss."""
        total = pred.new_zeros(())
        for n, h, w in zip(self.fft_sizes, self.hop_sizes, self.win_lengths):
            # sqrt(|.|^2 + eps) keeps the gradient finite at exactly zero magnitude
            p = (stft(pred, n, h, w).abs().pow(2) + 1e-7).sqrt()
            t = (stft(target, n, h, w).abs().pow(2) + 1e-7).sqrt()
            sc = torch.linalg.norm(t - p) / torch.linalg.norm(t)
            mag = (torch.log(t) - torch.log(p)).abs().mean()
            total = total + sc + mag
        return total / len(self.fft_sizes)


class MelLoss(nn.Module):
    """L1 distance between log-mel spectrograms (HiFi-GAN's mel loss, differentiable).

    ``options``: those of :func:`mel_spectrogram` (``n_fft``, ``hop_length``, ``n_mels``,
    ``f_min``, ``f_max``; its defaults); the log-mel is always used.
    """

    def __init__(self, sr: int, **options: Any) -> None:
        super().__init__()
        if "log" in options:
            raise TypeError("MelLoss always compares log-mel spectrograms (no 'log' option)")
        inspect.signature(mel_spectrogram).bind(None, sr, **options)  # a bad name fails here
        self.kwargs = {"sr": sr, **options}

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (
            (mel_spectrogram(pred, **self.kwargs) - mel_spectrogram(target, **self.kwargs))
            .abs()
            .mean()
        )
