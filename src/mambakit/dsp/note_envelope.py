"""Note-level loudness envelopes: where a monophonic line's notes start, and one note's
loudness against the time since its onset, moved from one performance onto another.

A pluck keeps decaying while a bowed note holds; a harmonic-plus-noise resynthesis that
follows the content's loudness curve keeps the content's envelope whatever the style.
This module is the deterministic answer (no learning), on frame-rate loudness curves in
dB (:func:`mambakit.dsp.loudness_db`)::

    S(t)        = L_style(o_s + t) - max L_style          the style's note curve, t >= 0
    L_out(i)    = min(P_j + S(i - o_j), L_content(i) + R)  frame i of content note j

with ``o_j`` the onset of the content note holding frame ``i``, ``P_j`` that note's peak
loudness up to frame ``i``, and ``R`` (:data:`RELEASE_HEADROOM_DB`) how far the output
may stay above the content: a content note that ends (its loudness falls) ends the output
note too, a sustained style under a decaying content keeps up to ``R`` dB more than the
content.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "note_onsets",
    "note_frames",
    "style_note_curve",
    "apply_note_curve",
    "RELEASE_HEADROOM_DB",
]

# Frames within this many dB of the clip's loudest are sounding.
SOUNDING_DB = 50.0
# A re-articulation: loudness up by this much within RISE_FRAMES frames.
RISE_DB, RISE_FRAMES = 6.0, 3
# A legato note change: voiced pitch moving by this many semitones and staying there.
PITCH_STEP = 0.7
# No two onsets closer than this (seconds).
MIN_NOTE_SECONDS = 0.05
# How far the transferred level may lie above the content's own (dB).
RELEASE_HEADROOM_DB = 20.0
# The style curve's floor, relative to its peak (dB).
CURVE_FLOOR_DB = -80.0


def note_onsets(loudness_db: Tensor, f0_hz: Tensor, voiced: Tensor, frame_rate: float) -> Tensor:
    """Onset frames of a monophonic line, ``[F]`` bool, from its per-frame loudness (dB),
    f0 (Hz) and voicing (all ``[F]``).

    A frame is an onset where the line starts sounding (within :data:`SOUNDING_DB` of the
    clip's loudest, after a frame that was not; frame 0 if sounding), where its loudness
    lies :data:`RISE_DB` above the quietest of the :data:`RISE_FRAMES` frames before it (a
    re-articulated note; the first frame of such a run), or where the voiced pitch steps
    by :data:`PITCH_STEP` semitones and holds the new value two frames later (legato).
    Onsets closer than :data:`MIN_NOTE_SECONDS` to the previous one are dropped.
    """
    level = loudness_db.double().numpy()
    n = len(level)
    if n == 0:
        return torch.zeros(0, dtype=torch.bool)
    sounding = level >= level.max() - SOUNDING_DB
    starts = sounding & ~np.concatenate([[False], sounding[:-1]])
    # the quietest of the RISE_FRAMES frames before each frame
    before = np.concatenate([np.full(RISE_FRAMES, np.inf), level[:-1]])
    back = np.lib.stride_tricks.sliding_window_view(before, RISE_FRAMES).min(axis=1)[:n]
    rising = (level - back >= RISE_DB) & sounding
    rise_start = rising & ~np.concatenate([[False], rising[:-1]])
    pitch = 12 * np.log2(np.maximum(f0_hz.double().numpy(), 1e-3))
    v = voiced.numpy().astype(bool)
    step = np.zeros(n, dtype=bool)
    if n > 3:
        prev, here, later = pitch[:-3], pitch[1:-2], pitch[3:]
        ok = v[:-3] & v[1:-2] & v[3:]
        jump = (np.abs(here - prev) >= PITCH_STEP) & (np.abs(later - prev) >= PITCH_STEP)
        jump &= np.abs(later - here) < PITCH_STEP
        step[1:-2] = ok & jump & sounding[1:-2]
    candidates = np.nonzero(starts | rise_start | step)[0]
    gap = max(1, int(round(MIN_NOTE_SECONDS * frame_rate)))
    onsets = np.zeros(n, dtype=bool)
    last = -gap
    for i in candidates:
        if i - last >= gap:
            onsets[i] = True
            last = i
    return torch.from_numpy(onsets)


def note_frames(loudness_db: Tensor, onsets: Tensor) -> tuple[Tensor, Tensor]:
    """Per frame ``[F]``: frames since the onset of the note holding it (``int64``; frames
    before the first onset count from frame 0) and that note's peak loudness so far (dB;
    the running maximum of ``loudness_db`` since the onset: causal, so appending audio
    changes nothing before it)."""
    n = len(loudness_db)
    idx = torch.arange(n)
    marks = onsets.clone()
    if n:
        marks[0] = True
    start = torch.cummax(torch.where(marks, idx, torch.zeros_like(idx)), dim=0).values
    note_id = torch.cumsum(marks.long(), dim=0) - 1  # [F]
    # one running maximum over all notes, each note lifted above every earlier one
    level = loudness_db.double().clamp(-1e3, 1e3)
    lift = note_id.double() * 1e4
    peak = torch.cummax(level + lift, dim=0).values - lift
    return idx - start, peak.to(loudness_db.dtype)


def style_note_curve(loudness_db: Tensor, frames: int) -> Tensor:
    """The style clip's note curve ``S`` ``[frames]`` (dB, maximum 0) from its loudness
    ``[F_s]``: from its first sounding frame on, relative to its loudest frame; past the
    clip's end continued by the slope of its last quarter (never rising), floored at
    :data:`CURVE_FLOOR_DB`."""
    level = loudness_db.double()
    sounding = torch.nonzero(level >= level.max() - SOUNDING_DB)
    first = int(sounding[0]) if len(sounding) else 0
    curve = level[first:] - level.max()
    if len(curve) >= frames:
        curve = curve[:frames]
    else:
        tail = curve[-max(2, len(curve) // 4) :]
        slope = min(0.0, float(tail[-1] - tail[0]) / max(1, len(tail) - 1))
        extra = float(curve[-1]) + slope * torch.arange(1, frames - len(curve) + 1)
        curve = torch.cat([curve, extra.double()])
    return curve.clamp_min(CURVE_FLOOR_DB).float()


def apply_note_curve(
    loudness_db: Tensor, since_onset: Tensor, note_peak_db: Tensor, curve: Tensor
) -> Tensor:
    """``min(P_j + S(t), L + R)`` (module docstring) for curves ``[B, F]`` (``since_onset``
    int64, frames) and style curves ``[B, N]`` (a note longer than ``N`` frames holds
    ``S(N - 1)``) -> ``[B, F]`` dB."""
    t = since_onset.clamp(max=curve.shape[-1] - 1)
    shaped = note_peak_db + torch.gather(curve, -1, t)
    return torch.minimum(shaped, loudness_db + RELEASE_HEADROOM_DB)
