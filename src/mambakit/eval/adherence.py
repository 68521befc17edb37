"""Control adherence of one-shots: did the sound do what the controls asked?

Each metric compares a generated clip with the *requested* controls, never with
another clip, so a model cannot score by copying its training data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from mambakit.dsp import ADSR, analyze_pitch, fit_adsr, hilbert_envelope, render_adsr
from mambakit.eval.features import as_mono_numpy


def midi_to_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def pitch_error_cents(audio: np.ndarray | torch.Tensor, sr: int, target_midi: float) -> float:
    """Signed distance in cents of the clip's analysed root pitch from ``target_midi``.

    Uses the f0 that :func:`mambakit.dsp.analyze_pitch` settles on (the body of the
    sound after any sweep), so a kick asked for C1 with a 12-semitone drop is judged
    on where it lands, not on its click. NaN for a clip analysed as unpitched.
    """
    analysis = analyze_pitch(as_mono_numpy(audio).astype(np.float32), sr)
    if not analysis.tonal or not analysis.f0_hz or analysis.f0_hz <= 0:
        return math.nan
    return 1200.0 * math.log2(analysis.f0_hz / midi_to_hz(target_midi))


def _frame_envelope(env: np.ndarray, sr: int, frame_s: float = 0.005) -> np.ndarray:
    hop = max(1, int(sr * frame_s))
    n = len(env) // hop
    return env[: n * hop].reshape(n, hop).mean(axis=1)


def envelope_correlation(audio: np.ndarray | torch.Tensor, sr: int, adsr: ADSR) -> float:
    """Pearson correlation of the clip's Hilbert envelope with the requested ADSR curve,
    both averaged over 5 ms frames. 1.0 is a perfect shape match (level-independent)."""
    x = as_mono_numpy(audio)
    env = _frame_envelope(np.asarray(hilbert_envelope(x.astype(np.float32), sr), np.float64), sr)
    target = render_adsr(adsr, len(x), sr)
    target = _frame_envelope(np.asarray(target, dtype=np.float64), sr)
    n = min(len(env), len(target))
    env, target = env[:n], target[:n]
    if env.std() < 1e-12 or target.std() < 1e-12:
        return 0.0
    return float(np.corrcoef(env, target)[0, 1])


@dataclass(frozen=True)
class EnvelopeErrors:
    """Fitted-vs-requested envelope times (seconds; positive = too long)."""

    attack_error_s: float
    decay_error_s: float
    fitted: ADSR


def envelope_errors(audio: np.ndarray | torch.Tensor, sr: int, adsr: ADSR) -> EnvelopeErrors:
    """Fit an ADSR to the clip and compare its attack and decay with the request."""
    x = as_mono_numpy(audio).astype(np.float32)
    fitted = fit_adsr(hilbert_envelope(x, sr), sr)
    return EnvelopeErrors(
        attack_error_s=fitted.attack_s - adsr.attack_s,
        decay_error_s=fitted.decay_s - adsr.decay_s,
        fitted=fitted,
    )


def is_percussive(audio: np.ndarray | torch.Tensor, sr: int, drop_db: float = 20.0) -> bool:
    """True when the clip's short-time energy falls ``drop_db`` below its peak within the
    first 90 % of the clip (a drum hit); False for a sustained or constant signal, also
    one whose loudest frame comes late or that is only faded out at its very end."""
    from mambakit.eval.features import short_time_energy_db

    db, _ = short_time_energy_db(audio, sr)
    if len(db) == 0:
        return False
    peak = int(np.argmax(db))
    below = np.nonzero(db[peak:] < db[peak] - drop_db)[0]
    return bool(len(below)) and peak + int(below[0]) < 0.9 * len(db)


def pairwise_diversity(embeddings: np.ndarray) -> float:
    """Mean pairwise Euclidean distance between descriptors (0 = all identical)."""
    e = np.atleast_2d(embeddings)
    if len(e) < 2:
        return 0.0
    d = np.sqrt(((e[:, None] - e[None]) ** 2).sum(-1))
    return float(d[np.triu_indices(len(e), k=1)].mean())


def nearest_neighbour_distances(query: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each query descriptor, the distance to its nearest reference descriptor."""
    q, r = np.atleast_2d(query), np.atleast_2d(reference)
    d = np.sqrt(((q[:, None] - r[None]) ** 2).sum(-1))
    return d.min(axis=1)
