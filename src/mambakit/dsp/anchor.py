"""Sine anchors: equation 1 of the MambaKit seed, with phase accumulation."""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["sine_anchor", "pitch_env_curve", "resample_curve"]


def sine_anchor(
    note: int | torch.Tensor,
    octave: int | torch.Tensor,
    pitch_env: torch.Tensor | np.ndarray | None,
    sr: int,
    n_samples: int | None = None,
    phase0: float = 0.0,
) -> torch.Tensor:
    """sin(phi(t)) with f(t) = 440 * 2^((p(t) + 12*octave + note - 69) / 12) (eq. 1) and
    phi(t) = phase0 + 2*pi * sum_{i<=t} f(i) / fs, accumulated in float64.

    Args:
        note, octave: ints or tensors [B] (note = pitch class 0..11; C4 = 60).
        pitch_env: semitones [T] or [B, T]; None for a flat pitch (then n_samples required).
    Returns:
        float32 [T] for scalar note/octave and 1-D env, else [B, T].
    """
    if pitch_env is None:
        if n_samples is None:
            raise ValueError("sine_anchor: n_samples is required when pitch_env is None")
        p = torch.zeros(n_samples, dtype=torch.float64)
    else:
        p = torch.as_tensor(pitch_env).to(torch.float64)
        if n_samples is not None and p.shape[-1] != n_samples:
            raise ValueError(f"pitch_env has {p.shape[-1]} samples, n_samples={n_samples}")
    midi = torch.as_tensor(note, dtype=torch.float64) + 12 * torch.as_tensor(
        octave, dtype=torch.float64
    )
    if midi.ndim == 1:
        midi = midi[:, None]  # [B, 1] broadcasts against [T] or [B, T]
    freq = 440.0 * torch.pow(2.0, (p + midi - 69.0) / 12.0)
    phase = phase0 + 2 * math.pi * torch.cumsum(freq, dim=-1) / sr
    return torch.sin(phase).float()


def pitch_env_curve(drop_semitones: float, decay_s: float, n_samples: int, sr: int) -> torch.Tensor:
    """p(t) = drop_semitones * exp(-t / decay_s): a kick-style sweep into the root. [n_samples]"""
    t = torch.arange(n_samples, dtype=torch.float64) / sr
    if decay_s <= 0:
        return torch.zeros(n_samples)
    return (drop_semitones * torch.exp(-t / decay_s)).float()


def resample_curve(
    curve: np.ndarray | torch.Tensor, rate_in: float, n_samples: int, sr: int
) -> torch.Tensor:
    """Linear interpolation of a control curve at ``rate_in`` Hz to ``n_samples`` at ``sr``;
    held at its last value beyond its end (0 for an empty curve). float32 [n_samples]."""
    c = np.asarray(curve.detach().cpu() if isinstance(curve, torch.Tensor) else curve, float)
    if c.size == 0:
        return torch.zeros(n_samples)
    t_out = np.arange(n_samples) / sr
    t_in = np.arange(c.size) / rate_in
    return torch.from_numpy(np.interp(t_out, t_in, c)).float()
