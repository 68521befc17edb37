"""Amplitude envelopes: Hilbert envelope, the ADSR model, its renderer and its fitter."""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass

import numpy as np
import scipy.fft
import scipy.optimize
import scipy.signal
import torch

__all__ = ["hilbert_envelope", "ADSR", "fit_adsr", "render_adsr", "DECAY_LOG_RATIO"]

# decay_s / release_s are the times for the exponential segment to fall by 60 dB
# (a factor 1000), the usual "T60" of percussive sounds: k = ln(1000).
DECAY_LOG_RATIO = math.log(1000.0)


def hilbert_envelope(
    audio: torch.Tensor | np.ndarray, sr: int, smooth_ms: float = 5.0
) -> np.ndarray:
    """|analytic signal| of mono-mixed ``audio`` ([T] or [C, T]), smoothed by a moving
    average of ``smooth_ms`` milliseconds. Returns float64 ``np.ndarray [T]``.

    The analytic signal is computed on a copy zero-padded to at least twice the length:
    the FFT Hilbert transform is circular, and without padding the 1/n leakage of a sharp
    onset wraps around onto the end of the clip, where it fakes a tail (about -45 dB on a
    one-shot that is actually silent there) that misleads the release fit.
    """
    x = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    x = x.astype(np.float64)
    while x.ndim > 1:
        x = x.mean(axis=0)
    n_fft = scipy.fft.next_fast_len(2 * len(x))
    env = np.abs(scipy.signal.hilbert(x, N=n_fft))[: len(x)]
    width = max(1, int(round(smooth_ms * sr / 1000)))
    if width > 1:
        env = np.convolve(env, np.ones(width) / width, mode="same")
    return env


@dataclass(frozen=True)
class ADSR:
    """Attack-decay-sustain(-hold)-release envelope (times in seconds, levels in [0, 1]).

    Shape rendered by :func:`render_adsr`: linear attack 0 -> 1 over ``attack_s``;
    exponential decay toward ``sustain_level`` (the excess falls 60 dB in ``decay_s``);
    the sustain level held for ``hold_s``; exponential release from the sustain level
    (falls 60 dB in ``release_s``), then silence. With ``sustain_level == 0`` the release
    starts from silence and ``release_s`` has no audible effect.
    """

    attack_s: float
    decay_s: float
    sustain_level: float
    release_s: float
    hold_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("attack_s", "decay_s", "release_s", "hold_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"ADSR.{name} must be a finite time >= 0 s, got {v}")
        if not (0.0 <= self.sustain_level <= 1.0):
            raise ValueError(f"ADSR.sustain_level must lie in [0, 1], got {self.sustain_level}")

    def to_vector(self) -> torch.Tensor:
        """[5] float32: (attack_s, decay_s, sustain_level, release_s, hold_s)."""
        return torch.tensor(astuple(self), dtype=torch.float32)

    @classmethod
    def from_vector(cls, v: torch.Tensor | np.ndarray | list[float]) -> ADSR:
        vals = [float(a) for a in (v.tolist() if hasattr(v, "tolist") else v)]
        if len(vals) not in (4, 5):
            raise ValueError(f"ADSR vector needs 4 or 5 values, got {len(vals)}")
        return cls(*vals)


def _adsr_curve(a: float, d: float, s: float, r: float, h: float, t: np.ndarray) -> np.ndarray:
    """NumPy ADSR curve at times ``t`` (s); the single definition shared by render and fit."""
    a, d, r = max(a, 1e-6), max(d, 1e-6), max(r, 1e-6)
    out = np.zeros_like(t)
    att = t < a
    out[att] = t[att] / a
    td = t - a
    dec = (~att) & (td < d + h)
    out[dec] = s + (1 - s) * np.exp(-DECAY_LOG_RATIO * td[dec] / d)
    end_d = s + (1 - s) * np.exp(-DECAY_LOG_RATIO * (d + h) / d)  # level where release starts
    tr = td - d - h
    rel = (~att) & (~dec) & (tr < r)
    out[rel] = end_d * np.exp(-DECAY_LOG_RATIO * tr[rel] / r)
    return out


def render_adsr(adsr: ADSR, n_samples: int, sr: int) -> torch.Tensor:
    """ADSR envelope as float32 ``Tensor [n_samples]`` at ``sr`` Hz (see :class:`ADSR`)."""
    t = np.arange(n_samples) / sr
    curve = _adsr_curve(
        adsr.attack_s, adsr.decay_s, adsr.sustain_level, adsr.release_s, adsr.hold_s, t
    )
    return torch.from_numpy(curve).float()


def _release_start_guess(y: np.ndarray, t: np.ndarray, i_peak: int, i_last: int) -> int | None:
    """Index where the release most likely begins, from the kink of the log-envelope.

    In the log domain the decay toward the sustain level is convex, the hold is flat and
    the release is a straight line, so the release start is the one place after the peak
    where the log-slope suddenly gets steeper: the most negative change of slope, measured
    between two ~10 ms windows so that a noisy envelope does not fake a kink.
    """
    w = max(2, int(round(0.01 / max(t[1] - t[0], 1e-9))))
    logy = np.log(np.maximum(y, 1e-6))
    idx = np.arange(i_peak + w, i_last - w + 1)
    if len(idx) == 0:
        return None
    dt = w * (t[1] - t[0])
    slope_before = (logy[idx] - logy[idx - w]) / dt
    slope_after = (logy[idx + w] - logy[idx]) / dt
    kink = slope_after - slope_before
    k = int(np.argmin(kink))
    return int(idx[k]) if kink[k] < 0 else None


def fit_adsr(envelope: np.ndarray | torch.Tensor, sr: int, fit_rate: float = 2000.0) -> ADSR:
    """Fit the :func:`render_adsr` model to an amplitude envelope ``[T]`` at ``sr`` Hz.

    The envelope is peak-normalised and resampled to ``fit_rate`` Hz; the five parameters
    are found by bounded least squares (``scipy.optimize.least_squares``) from a few initial
    guesses, keeping the best:

    - a structural guess: attack = peak time; release start = the kink of the log-envelope
      (:func:`_release_start_guess`), sustain = the level there, release time from the level
      falling to 0.1 % of the peak after it, decay from the excess over sustain falling to
      5 % (``exp(-ln(1000) * 0.43)``), hold = what is left between decay and release;
    - plateau guesses: sustain = median of the middle of the post-peak part (right when a
      long hold makes a plateau), with a hold of 0 % or 50 % of the remaining time.

    Without sustain (``sustain_level ~ 0``, a percussive hit) hold and release leave no
    trace in the curve, so their fitted values are arbitrary there.
    """
    env = envelope.detach().cpu().numpy() if isinstance(envelope, torch.Tensor) else envelope
    env = np.asarray(env, dtype=np.float64).reshape(-1)
    if env.size < 4 or env.max() <= 0:
        raise ValueError("fit_adsr needs a non-silent envelope of at least 4 samples")
    env = env / env.max()
    step = max(1, int(sr // fit_rate))
    y = env[::step]
    t = np.arange(len(y)) * step / sr
    dur = len(env) / sr
    i_peak = int(np.argmax(y))
    i_last = int(np.nonzero(y > 1e-3)[0][-1])  # end of sound
    peak_t, last = t[i_peak], t[i_last]
    after = y[i_peak : i_last + 1]
    k = DECAY_LOG_RATIO

    def decay_guess(s0: float, until: int) -> float:
        # time for the excess over s0 to fall to 5 %, i.e. 0.43 of the 60 dB time
        excess = (y[i_peak : until + 1] - s0) / max(1 - s0, 1e-6)
        below = np.nonzero(excess < 0.05)[0]
        return below[0] * step / sr / 0.43 if len(below) else (t[until] - peak_t)

    guesses = []
    i_rel = _release_start_guess(y, t, i_peak, i_last)
    if i_rel is not None:
        s0 = float(y[i_rel])
        r0 = (last - t[i_rel]) * k / max(np.log(s0 / 1e-3), 1e-3)
        d0 = min(decay_guess(s0, i_rel), t[i_rel] - peak_t)
        guesses.append([peak_t, d0, s0, r0, max(0.0, t[i_rel] - peak_t - d0)])
    s0 = float(np.clip(np.median(after[len(after) // 4 : len(after) // 2 + 1]), 0, 1))
    s0 = s0 if s0 > 0.05 else 0.0
    d0 = decay_guess(s0, i_last) if s0 > 0 else decay_guess(0.0, i_last)
    for h_frac in (0.0, 0.5):
        h0 = max(0.0, (last - peak_t - d0) * h_frac)
        guesses.append([peak_t, d0, s0, max(last - peak_t - d0 - h0, 0.01), h0])

    lo = np.array([0, 1e-4, 0, 1e-4, 0])
    hi = np.array([dur, 4 * dur, 1, 4 * dur, dur])
    best = None
    for x0 in guesses:
        x0 = np.minimum(np.maximum(x0, lo + 1e-6), hi - 1e-6)
        res = scipy.optimize.least_squares(
            lambda p: _adsr_curve(*p, t) - y, x0, bounds=(lo, hi), x_scale="jac"
        )
        if best is None or res.cost < best.cost:
            best = res
    a, d, s, r, h = (float(v) for v in best.x)
    return ADSR(attack_s=a, decay_s=d, sustain_level=s, release_s=r, hold_s=h)
