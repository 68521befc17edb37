"""Root-note and pitch-envelope analysis (YIN f0 tracking)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
import scipy.optimize
import torch

from mambakit.dsp.io import detect_onset

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
    x: np.ndarray, sr: int, f_min: float, f_max: float, hop: int, win: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YIN (de Cheveigné & Kawahara 2002): cumulative-mean-normalised difference d'(tau),
    first dip under 0.15 (else global minimum), parabolic interpolation.

    Frame i starts at sample i * hop and spans ``win + max_lag`` samples, with
    ``max_lag = ceil(sr / f_min)`` and the integration window ``win`` (default max_lag, as
    in the paper; shorter windows trade robustness for time resolution). All frames are at
    once (one batched FFT for the cross term). Returns per-frame
    ``(f0_hz, aperiodicity d'(tau*), rms)``.
    """
    max_lag = int(math.ceil(sr / f_min))
    min_lag = max(2, int(sr / f_max))
    win = max_lag if win is None else max(min_lag, int(win))
    n_frames = max(0, (len(x) - win - max_lag) // hop + 1)
    if n_frames == 0:
        return np.zeros(0), np.ones(0), np.zeros(0)
    span = win + max_lag
    starts = np.arange(n_frames) * hop
    seg = np.lib.stride_tricks.sliding_window_view(x, span)[starts]  # [F, span]
    lags = np.arange(max_lag + 1)
    # d(tau) = E(w) + E(seg[tau : tau + win]) - 2 r(tau), with r(tau) by FFT correlation
    n_fft = scipy.fft.next_fast_len(span + win)
    r = scipy.fft.irfft(
        scipy.fft.rfft(seg, n_fft) * np.conj(scipy.fft.rfft(seg[:, :win], n_fft)), n_fft
    )[:, : max_lag + 1]
    c = np.concatenate([np.zeros((n_frames, 1)), np.cumsum(seg**2, axis=1)], axis=1)
    energy_lag = c[:, lags + win] - c[:, lags]  # [F, max_lag + 1]
    d = c[:, win : win + 1] + energy_lag - 2 * r
    d[:, 0] = 0.0
    cmnd = np.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] * lags[1:] / np.maximum(np.cumsum(d[:, 1:], axis=1), 1e-20)
    rms = np.sqrt(np.maximum(c[:, win], 0.0) / win)

    band = cmnd[:, min_lag:max_lag]  # [F, n_lags] candidate lags
    under = band < 0.15
    first = np.where(under.any(axis=1), under.argmax(axis=1), band.argmin(axis=1))
    # walk from the first sub-threshold lag down to the bottom of its dip: the first k >= first
    # where the curve stops falling (for the global-minimum fallback that is k itself)
    stops = np.concatenate([band[:, 1:] >= band[:, :-1], np.ones((n_frames, 1), bool)], axis=1)
    stops &= np.arange(band.shape[1])[None] >= first[:, None]
    tau = stops.argmax(axis=1) + min_lag
    rows = np.arange(n_frames)
    inner = (tau >= 1) & (tau < max_lag)
    t_in = np.clip(tau, 1, max_lag - 1)
    a, b, cc = cmnd[rows, t_in - 1], cmnd[rows, t_in], cmnd[rows, t_in + 1]
    den = a - 2 * b + cc
    safe = np.abs(den) > 1e-12
    shift = np.where(inner & safe, 0.5 * (a - cc) / np.where(safe, den, 1.0), 0.0)
    f0 = sr / (tau + np.clip(shift, -1, 1))
    ap = cmnd[rows, tau]
    return f0, ap, rms


def _hz_to_midi(f: np.ndarray | float) -> np.ndarray | float:
    return 69 + 12 * np.log2(np.asarray(f) / 440.0)


def _timed_track(
    x: np.ndarray,
    sr: int,
    f_lo: float,
    f_hi: float,
    hop: int,
    max_ap: float = 0.2,
    win_periods: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YIN track with each estimate placed at the centre of the samples it compared.

    A frame starting at sample s compares x[s : s + win] with x[s + tau : s + tau + win]
    (win = ``win_periods`` times the largest lag), so its period describes the signal
    around s + (win + tau) / 2, not s. On a fast sweep that difference is most of the error.
    Returns ``(times_s, f0_hz, rms)`` of the periodic frames (aperiodicity < ``max_ap``).
    """
    win = max(2, int(round(win_periods * math.ceil(sr / f_lo))))
    f0, ap, rms = yin_track(x, sr, f_lo, f_hi, hop, win=win)
    if len(f0) == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    centres = (np.arange(len(f0)) * hop + 0.5 * (win + sr / f0)) / sr
    keep = ap < max_ap
    return centres[keep], f0[keep], rms[keep]


def _extrapolate_to_onset(
    times: np.ndarray, semis: np.ndarray, grid: np.ndarray, fit_s: float = 0.03
) -> np.ndarray:
    """Values of the sweep on the grid times before the first measurement.

    No period estimate can be centred earlier than about half a cycle after the onset,
    yet a kick sweep moves fastest right there. We continue it backwards with the
    exponential p(t) = A exp(-t / tau) that analogue kicks follow, fitted to the
    measurements of the first ``fit_s`` seconds (robust soft-L1 least squares, so one
    octave-confused frame does not tilt it); when they do not fall (no sweep, or a rise)
    the first value is held instead. A is capped at 24 semitones.
    """
    held = np.full(grid.shape, semis[0])
    first = times <= times[0] + fit_s
    t_fit, p_fit = times[first], semis[first]
    if len(t_fit) < 3 or p_fit[0] <= 0.5 or p_fit[0] <= p_fit[-1]:
        return held
    pos = p_fit > 0.1
    slope, icpt = np.polyfit(t_fit[pos], np.log(p_fit[pos]), 1)  # log-linear first guess
    if slope >= 0:
        return held
    x0 = np.clip([np.exp(icpt), -1.0 / slope], [0.0, 1e-3], [24.0, 1.0])
    res = scipy.optimize.least_squares(
        lambda q: q[0] * np.exp(-t_fit / q[1]) - p_fit,
        x0,
        bounds=([0.0, 1e-3], [24.0, 1.0]),
        loss="soft_l1",
        f_scale=0.5,
    )
    amp, tau = res.x
    return amp * np.exp(-grid / tau)


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
    4. Pitch envelope ``pitch_env[k] = 12 log2(f0(t_k) / f_root)`` at t_k = k / rate from
       the onset (:func:`mambakit.dsp.detect_onset`) to the last energetic frame, built from
       time-centred YIN estimates (:func:`_timed_track`) of two passes:

       - a body pass with a window of ~1.5 root periods (f >= f_root / 1.5);
       - for a sound whose first body estimate is sharp, a start pass over the first 50 ms
         at a quarter of the hop that only looks above the root (f >= f_root * 2^(2/12)),
         with an integration window of half its longest period, so its first estimates
         are centred a few ms after the onset instead of ~1.5 root periods (tens of ms
         for a low kick) later, where the sweep has mostly gone;

       before the first estimate the sweep is continued back to the onset exponentially
       (:func:`_extrapolate_to_onset`). Measured on a +12 semitone sweep decaying to the
       root with a 10 ms time constant (tests/dsp/test_pitch.py): the envelope starts
       within 1 semitone of +12 for sine sweeps with roots C2..A3 and harmonic ones from
       A2 up (the single 1.5-root-period window used before started at +3 to +8). Below
       that, the first estimate comes >= 8 ms after the onset and the backward
       extrapolation of a harmonic sweep can overshoot by 2-3 semitones (seen at C2/A1).
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
        raise ValueError(
            f"audio too short for pitch analysis down to {f_min} Hz: {len(x)} samples "
            f"({len(x) / sr:.3f} s), need at least {2 * math.ceil(sr / f_min)}"
        )
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
    env = _pitch_envelope(x, sr, f_root, f_max, hop, loud) if tonal else None
    return PitchAnalysis(
        midi_note=midi,
        octave=midi // 12,
        pitch_class=midi % 12,
        f0_hz=f_root,
        pitch_env=np.zeros(0) if env is None else env,
        pitch_env_rate=rate,
        tonal=bool(tonal),
        confidence=confidence,
    )


def _pitch_envelope(
    x: np.ndarray,
    sr: int,
    f_root: float,
    f_max: float,
    hop: int,
    loud: np.ndarray,
) -> np.ndarray:
    """Semitones re ``f_root`` every ``hop`` samples from the onset (see analyze_pitch, 4).

    ``loud`` flags the energetic frames of :func:`yin_track` at the same ``hop``.
    """
    n0 = detect_onset(x, sr)
    last_loud = int(np.nonzero(loud)[0][-1]) * hop + hop  # end of the last energetic frame
    n_env = max(1, (last_loud - n0) // hop + 1)
    grid = np.arange(n_env) * hop / sr  # seconds from the onset
    f_hi = min(f_max * 2, sr / 4)
    tail = x[n0:]
    t_body, f_body, _ = _timed_track(tail, sr, f_root / 1.5, f_hi, hop)
    f_start_lo = f_root * 2 ** (2 / 12)
    t_start, f_start = np.zeros(0), np.zeros(0)
    # only a sound whose first body estimate is sharp sweeps (a steady tone skips the work)
    if len(f_body) == 0 or f_body[0] > f_root * 2 ** (0.5 / 12):
        start_len = int(sr * 0.05) + 2 * int(math.ceil(sr / f_start_lo))
        # half-period window and a looser periodicity test: within one window a fast
        # sweep is not periodic, and a shorter window is what puts estimates near the onset
        t_start, f_start, _ = _timed_track(
            tail[:start_len], sr, f_start_lo, f_hi, hop // 4 or 1, max_ap=0.3, win_periods=0.5
        )
    if len(t_body) == 0 and len(t_start) == 0:
        return np.zeros(n_env)
    first_body = t_body[0] if len(t_body) else np.inf
    # the start pass only fills in before the body pass, and only clearly inside its
    # search range (at its lower edge f_start_lo the estimate sticks to the boundary)
    early = (t_start < first_body) & (f_start > f_start_lo * 2 ** (0.5 / 12))
    times = np.concatenate([t_start[early], t_body])
    semis = 12 * np.log2(np.concatenate([f_start[early], f_body]) / f_root)
    env = np.interp(grid, times, semis)
    before = grid < times[0]
    if before.any():
        env[before] = _extrapolate_to_onset(times, semis, grid[before])
    return env
