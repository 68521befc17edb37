"""Deterministic, physically motivated procedural drum one-shots.

Used to build a training/testing corpus without downloads. Each voice is a tiny
physical caricature with randomised parameters drawn from ``rng``:

* kick: sine whose frequency sweeps exponentially ``f(t) = f1 + (f0 - f1) e^{-t/tau}``
  (a membrane relaxing after the beater stretched it) plus a short noise click.
* snare: two membrane modes (ratio ~1.6, Bessel-like) plus band-passed noise (the
  snares) with its own, longer decay.
* closed_hat / open_hat: six inharmonic square oscillators (the classic metal bank)
  mixed with high-passed noise; short vs long exponential decay.
* clap: 3-4 noise bursts 8-15 ms apart followed by a diffuse decaying noise tail.
* tom: pitched membrane with a small downward sweep at a random note.
* rim: very short high click plus a damped resonance near 1.5-2.5 kHz.
* cymbal: long inharmonic square bank plus bright noise.
* perc / fx: a short pitched "block" and a filtered noise sweep.

The phase of a swept oscillator is the running sum of ``2 pi f(t) / sr`` (phase
accumulation, not ``sin(2 pi f(t) t)``, which would be wrong for a time-varying f).
All outputs are peak-normalised to 0.9 and faded out over the last 5 ms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from mambakit.drums.tags import TAGS


def _t(sr: int, seconds: float) -> np.ndarray:
    return np.arange(int(round(sr * seconds))) / sr


def _sweep_sine(f: np.ndarray, sr: int) -> np.ndarray:
    """Sine with instantaneous frequency ``f`` [Hz] via phase accumulation."""
    return np.sin(2 * np.pi * np.cumsum(f) / sr)


def _band(x: np.ndarray, lo: float, hi: float, sr: int) -> np.ndarray:
    hi = min(hi, 0.45 * sr)
    sos = signal.butter(2, [lo, hi], btype="bandpass", fs=sr, output="sos")
    return signal.sosfilt(sos, x)


def _highpass(x: np.ndarray, cutoff: float, sr: int) -> np.ndarray:
    sos = signal.butter(2, min(cutoff, 0.45 * sr), btype="highpass", fs=sr, output="sos")
    return signal.sosfilt(sos, x)


def _metal(t: np.ndarray, base: float) -> np.ndarray:
    """Six square waves at inharmonic ratios (the 808-style hat/cymbal bank)."""
    ratios = (2.0, 3.0, 4.16, 5.43, 6.79, 8.21)
    return sum(np.sign(np.sin(2 * np.pi * base * r * t)) for r in ratios) / len(ratios)


def _kick(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    f0, f1 = rng.uniform(150, 300), rng.uniform(40, 65)
    tau, decay = rng.uniform(0.02, 0.06), rng.uniform(0.15, 0.5)
    body = _sweep_sine(f1 + (f0 - f1) * np.exp(-t / tau), sr) * np.exp(-t / decay)
    click = _highpass(rng.standard_normal(t.size), 2000, sr) * np.exp(-t / 0.003)
    return body + rng.uniform(0.1, 0.3) * click


def _snare(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    f = rng.uniform(160, 240)
    tone_decay, noise_decay = rng.uniform(0.04, 0.1), rng.uniform(0.1, 0.25)
    tone = _sweep_sine(f * (1 + 0.2 * np.exp(-t / 0.01)), sr)
    tone = tone + 0.6 * np.sin(2 * np.pi * 1.59 * f * t)
    noise = _band(rng.standard_normal(t.size), 1500, 9000, sr)
    return 0.6 * tone * np.exp(-t / tone_decay) + noise * np.exp(-t / noise_decay) * 2.0


def _hat(rng: np.random.Generator, t: np.ndarray, sr: int, decay: float) -> np.ndarray:
    metal = _highpass(_metal(t, rng.uniform(300, 450)), 6000, sr)
    noise = _highpass(rng.standard_normal(t.size), 7000, sr)
    return (metal + rng.uniform(0.3, 0.8) * noise) * np.exp(-t / decay)


def _clap(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    noise = _band(rng.standard_normal(t.size), 800, 3500, sr)
    env = np.zeros_like(t)
    start = 0.0
    for _ in range(int(rng.integers(3, 5))):
        env += np.where(t >= start, np.exp(-(t - start) / 0.004), 0.0)
        start += rng.uniform(0.008, 0.015)
    env += 0.5 * np.where(t >= start, np.exp(-(t - start) / rng.uniform(0.08, 0.2)), 0.0)
    return noise * env


def _tom(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    note = rng.integers(40, 56)  # E2..G3
    f = 440.0 * 2 ** ((note - 69) / 12)
    body = _sweep_sine(f * (1 + 0.25 * np.exp(-t / 0.03)), sr) * np.exp(-t / rng.uniform(0.2, 0.5))
    return body + 0.05 * _band(rng.standard_normal(t.size), 500, 4000, sr) * np.exp(-t / 0.02)


def _rim(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    f = rng.uniform(1500, 2500)
    res = np.sin(2 * np.pi * f * t) * np.exp(-t / rng.uniform(0.01, 0.03))
    click = _highpass(rng.standard_normal(t.size), 3000, sr) * np.exp(-t / 0.001)
    return res + 0.5 * click


def _cymbal(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    metal = _highpass(_metal(t, rng.uniform(250, 400)), 3000, sr)
    noise = _highpass(rng.standard_normal(t.size), 4000, sr)
    return (metal + noise) * np.exp(-t / rng.uniform(0.6, 1.5))


def _perc(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    f = rng.uniform(600, 1200)
    return np.sin(2 * np.pi * f * t) * np.exp(-t / rng.uniform(0.02, 0.08))


def _fx(rng: np.random.Generator, t: np.ndarray, sr: int) -> np.ndarray:
    centre = 500 * 2 ** (4 * t / max(t[-1], 1e-3))  # rising sweep
    noise = rng.standard_normal(t.size)
    return noise * np.sin(2 * np.pi * np.cumsum(centre) / sr) * np.exp(-t / 0.4)


_VOICES = {
    "kick": _kick,
    "snare": _snare,
    "clap": _clap,
    "closed_hat": lambda rng, t, sr: _hat(rng, t, sr, rng.uniform(0.02, 0.06)),
    "open_hat": lambda rng, t, sr: _hat(rng, t, sr, rng.uniform(0.25, 0.5)),
    "tom": _tom,
    "rim": _rim,
    "cymbal": _cymbal,
    "perc": _perc,
    "fx": _fx,
}
#: What :func:`write_corpus` writes by default: every voice but the miscellany (perc, fx).
KIT_TAGS: tuple[str, ...] = tuple(tag for tag in _VOICES if tag not in ("perc", "fx"))


def synthesize(
    tag: str, rng: np.random.Generator, sr: int = 44100, seconds: float = 1.0
) -> np.ndarray:
    """One procedural one-shot of class ``tag``: float32 [T], T = round(sr * seconds), peak 0.9."""
    if tag not in _VOICES:
        raise ValueError(f"unknown drum tag {tag!r}; choose from {', '.join(TAGS)}")
    t = _t(sr, seconds)
    x = _VOICES[tag](rng, t, sr)
    fade = min(t.size, int(0.005 * sr))
    if fade:
        x[-fade:] *= np.linspace(1.0, 0.0, fade)
    peak = np.max(np.abs(x))
    return (0.9 * x / peak if peak > 0 else x).astype(np.float32)


def write_corpus(
    directory: str | Path,
    n_per_tag: int = 20,
    seed: int = 0,
    sr: int = 44100,
    tags: tuple[str, ...] = KIT_TAGS,
    seconds: float = 1.0,
) -> list[Path]:
    """Write ``n_per_tag`` 16-bit WAVs per tag as ``directory/<tag>/<tag>_NNN.wav``.

    Deterministic: clip ``i`` of ``tag`` uses ``default_rng([seed, tag index, i])``, so
    the same seed always writes identical files regardless of ``n_per_tag``.
    """
    root = Path(directory)
    paths: list[Path] = []
    for tag in tags:
        (root / tag).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_tag):
            rng = np.random.default_rng([seed, TAGS.index(tag), i])
            path = root / tag / f"{tag}_{i:03d}.wav"
            sf.write(path, synthesize(tag, rng, sr, seconds), sr, subtype="PCM_16")
            paths.append(path)
    return paths
