"""Root-note and pitch-envelope analysis (YIN f0 tracking)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["PitchAnalysis", "analyze_pitch", "yin_track"]


@dataclass(frozen=True)
class PitchAnalysis:
    """Result of :func:`analyze_pitch`.

    ``midi_note = 12 * octave + pitch_class``; ``pitch_env`` is in semitones relative to the
    root, sampled at ``pitch_env_rate`` Hz from the onset (empty for unpitched sounds).
    """

    midi_note: int
    octave: int
    pitch_class: int
    f0_hz: float
    pitch_env: np.ndarray = field(repr=False)
    pitch_env_rate: float
    tonal: bool
    confidence: float


def yin_track(
    x: np.ndarray, sr: int, f_min: float, f_max: float, hop: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YIN (de Cheveigné & Kawahara 2002): cumulative-mean-normalised difference d'(tau),
    first dip under 0.15 (else global minimum), parabolic interpolation.

    Window = 2 max-lags. Returns per-frame ``(f0_hz, aperiodicity d'(tau*), rms)``.
    """
    max_lag = int(math.ceil(sr / f_min))
    min_lag = max(2, int(sr / f_max))
    win = max_lag
    n_frames = max(0, (len(x) - win - max_lag) // hop + 1)
    f0 = np.zeros(n_frames)
    ap = np.ones(n_frames)
    rms = np.zeros(n_frames)
    for i in range(n_frames):
        seg = x[i * hop : i * hop + win + max_lag]
        w = seg[:win]
        # d(tau) = E(w) + E(seg[tau:tau+win]) - 2 r(tau), cross term via FFT
        n = 1 << int(math.ceil(math.log2(len(seg) + win)))
        r = np.fft.irfft(np.fft.rfft(seg, n) * np.conj(np.fft.rfft(w, n)), n)[: max_lag + 1]
        c = np.concatenate([[0.0], np.cumsum(seg**2)])
        e_lag = c[np.arange(max_lag + 1) + win] - c[np.arange(max_lag + 1)]
        d = c[win] + e_lag - 2 * r
        d[0] = 0.0
        cmnd = np.ones_like(d)
        cs = np.cumsum(d[1:])
        cmnd[1:] = d[1:] * np.arange(1, max_lag + 1) / np.maximum(cs, 1e-20)
        rms[i] = math.sqrt(c[win] / win)
        band = cmnd[min_lag:max_lag]
        under = np.nonzero(band < 0.15)[0]
        if len(under):
            k = under[0]
            while k + 1 < len(band) and band[k + 1] < band[k]:
                k += 1  # walk to the bottom of the first dip
        else:
            k = int(np.argmin(band))
        tau = k + min_lag
        if 1 <= tau < max_lag:
            a, b, cc = cmnd[tau - 1], cmnd[tau], cmnd[tau + 1]
            den = a - 2 * b + cc
            shift = 0.5 * (a - cc) / den if abs(den) > 1e-12 else 0.0
        else:
            shift = 0.0
        f0[i] = sr / (tau + float(np.clip(shift, -1, 1)))
        ap[i] = cmnd[tau]
    return f0, ap, rms


def _hz_to_midi(f: np.ndarray | float) -> np.ndarray | float:
    return 69 + 12 * np.log2(np.asarray(f) / 440.0)


def analyze_pitch(
    audio: torch.Tensor | np.ndarray,
    sr: int,
    f_min: float = 30.0,
    f_max: float = 2200.0,
    hop_s: float = 0.004,
) -> PitchAnalysis:
    """Root note, pitch envelope and tonality of a one-shot ([T] or [C, T], mono-mixed).

    1. YIN over the frames holding energy (within 30 dB of the loudest frame).
    2. Tonal when at least 40 % of those frames have aperiodicity < 0.2.
    3. Root = median f0 of the periodic frames of the later half of the energetic part
       (the body a kick settles on after its sweep), rounded to the nearest MIDI note.
    4. Re-track with a window of ~1.5 root periods (sharper in time) to get the sweep;
       ``pitch_env`` = 12 log2(f0 / f_root) from the first energetic frame.
    Unpitched sounds get the spectral-centroid pitch as a nominal root and ``tonal=False``.
    """
    x = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    x = x.astype(np.float64)
    while x.ndim > 1:
        x = x.mean(axis=0)
    hop = max(1, int(round(hop_s * sr)))
    rate = sr / hop
    f0, ap, rms = yin_track(x, sr, f_min, f_max, hop)
    if len(f0) == 0:
        raise ValueError(f"audio too short for pitch analysis down to {f_min} Hz")
    loud = rms >= rms.max() * 10 ** (-30 / 20)
    idx = np.nonzero(loud)[0]
    periodic = loud & (ap < 0.2)
    confidence = float(periodic.sum() / max(1, loud.sum()))
    tonal = confidence >= 0.4
    if tonal:
        sel = idx[len(idx) // 2 :]
        sel = sel[periodic[sel]]
        if len(sel) == 0:
            sel = np.nonzero(periodic)[0]
        f_root = float(np.median(f0[sel]))
    else:
        spec = np.abs(np.fft.rfft(x))
        freqs = np.fft.rfftfreq(len(x), 1 / sr)
        f_root = float(np.clip((spec * freqs).sum() / max(spec.sum(), 1e-20), f_min, sr / 2))
    midi = int(round(float(_hz_to_midi(f_root))))
    env = np.zeros(0)
    if tonal:
        # finer pass: a window of ~1.5 root periods follows a fast sweep
        f0b, apb, rmsb = yin_track(x, sr, f_root / 1.5, min(f_max * 2, sr / 4), hop)
        if len(f0b):
            loudb = np.nonzero(rmsb >= rmsb.max() * 10 ** (-30 / 20))[0]
            seg = f0b[loudb[0] : loudb[-1] + 1]
            env = 12 * np.log2(seg / f_root)
    return PitchAnalysis(
        midi_note=midi,
        octave=midi // 12,
        pitch_class=midi % 12,
        f0_hz=f_root,
        pitch_env=env,
        pitch_env_rate=rate,
        tonal=bool(tonal),
        confidence=confidence,
    )
