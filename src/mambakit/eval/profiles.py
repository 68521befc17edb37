"""The seed's Figure 4, measured: where a one-shot's energy sits in time and frequency.

Four measurements per clip, each a short formula on the signal (NumPy only):

- energy over time: the fraction of the clip's energy ``sum x[n]^2`` in each of equal
  time segments, and its centre of mass, the *temporal centroid*
  ``t_c = sum n x[n]^2 / (sr sum x[n]^2)`` in seconds (``tau / 2`` for ``e^{-t/tau}``);
- average spectrum: the power in log-spaced bands, each clip normalised to unit power
  before averaging so loud clips do not dominate;
- fundamental preservation: the fraction of the power within +-50 cents of the
  requested note's frequency ``f0 = 440 * 2^((midi - 69) / 12)``;
- harmonic preservation: the fraction within +-50 cents of ``k f0`` for ``k = 1..16``.

Like :mod:`mambakit.eval.adherence`, pitch measurements compare a clip with the note
it was *asked* for. :func:`evaluate_with_profiles` runs :func:`mambakit.eval.drums.evaluate_synth`
and profiles the very clips it generated, so both sets of numbers describe one set of outputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mambakit.eval.adherence import is_percussive, midi_to_hz
from mambakit.eval.features import as_mono_numpy

ENERGY_BINS = 40
SPECTRUM_BANDS = 48
SPECTRUM_F_MIN_HZ = 30.0
TOLERANCE_CENTS = 50.0
N_HARMONICS = 16
SILENCE_DB = -120.0


def energy_over_time(audio: np.ndarray | torch.Tensor, n_bins: int = ENERGY_BINS) -> np.ndarray:
    """Fraction of the clip's energy in each of ``n_bins`` equal time segments -> ``[n_bins]``
    summing to 1 (all zeros for a silent clip)."""
    x = as_mono_numpy(audio)
    edges = np.linspace(0, len(x), n_bins + 1).round().astype(int)
    energy = np.array([np.sum(x[a:b] ** 2) for a, b in zip(edges[:-1], edges[1:])])
    total = energy.sum()
    return energy / total if total > 0 else energy


def energy_centroid_s(audio: np.ndarray | torch.Tensor, sr: int) -> float:
    """Temporal centroid ``sum_n n x[n]^2 / (sr sum_n x[n]^2)`` in seconds; NaN if silent."""
    x = as_mono_numpy(audio)
    power = x**2
    total = power.sum()
    if total <= 0:
        return math.nan
    return float((np.arange(len(x)) * power).sum() / total / sr)


def _power_spectrum(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed power spectrum of the whole clip: ``(freqs Hz, power)``."""
    spec = np.fft.rfft(x * np.hanning(len(x)))
    return np.fft.rfftfreq(len(x), 1.0 / sr), np.abs(spec) ** 2


def band_edges_hz(sr: int, n_bands: int = SPECTRUM_BANDS, f_min: float = SPECTRUM_F_MIN_HZ):
    """``n_bands + 1`` log-spaced edges from ``f_min`` to Nyquist (Hz)."""
    return np.geomspace(f_min, sr / 2, n_bands + 1)


def band_power(audio: np.ndarray | torch.Tensor, sr: int, edges_hz: np.ndarray) -> np.ndarray:
    """Share of the clip's power in each band between consecutive ``edges_hz`` (the
    cumulative power is interpolated at the edges, so narrow bands below one FFT bin
    still get their share) divided by the band width: a density ``[len(edges) - 1]``
    that integrates to the share of power in ``[edges[0], edges[-1]]``."""
    freqs, power = _power_spectrum(as_mono_numpy(audio), sr)
    total = power.sum()
    if total <= 0:
        return np.zeros(len(edges_hz) - 1)
    cumulative = np.concatenate([[0.0], np.cumsum(power / total)])
    # bin k covers [f_k - df/2, f_k + df/2]; its power is spread evenly over that width
    df = freqs[1] - freqs[0] if len(freqs) > 1 else sr / 2
    bin_edges = np.concatenate([freqs - df / 2, [freqs[-1] + df / 2]])
    at_edges = np.interp(edges_hz, bin_edges, cumulative)
    return np.diff(at_edges) / np.diff(edges_hz)


def average_spectrum_db(
    audios: Sequence[np.ndarray | torch.Tensor],
    sr: int,
    n_bands: int = SPECTRUM_BANDS,
    f_min: float = SPECTRUM_F_MIN_HZ,
) -> tuple[np.ndarray, np.ndarray]:
    """Average spectrum of clips: ``(band centres Hz [n_bands], dB [n_bands])``.

    Each clip's band densities (:func:`band_power`, unit total power) are averaged,
    then shown in dB re the loudest band, floored at -120 dB.
    """
    edges = band_edges_hz(sr, n_bands, f_min)
    centres = np.sqrt(edges[:-1] * edges[1:])
    if not len(audios):
        return centres, np.full(n_bands, math.nan)
    mean = np.mean([band_power(a, sr, edges) for a in audios], axis=0)
    if mean.max() <= 0:
        return centres, np.full(n_bands, SILENCE_DB)
    db = 10 * np.log10(np.maximum(mean / mean.max(), 10 ** (SILENCE_DB / 10)))
    return centres, db


def spectrum_distance_db(db_a: np.ndarray, db_b: np.ndarray) -> float:
    """Root-mean-square difference of two average spectra in dB (0 = the same shape)."""
    a, b = np.asarray(db_a, np.float64), np.asarray(db_b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.sqrt(np.mean((a[ok] - b[ok]) ** 2))) if ok.any() else math.nan


def harmonic_energy_fraction(
    audio: np.ndarray | torch.Tensor,
    sr: int,
    midi_note: float,
    n_harmonics: int = N_HARMONICS,
    tolerance_cents: float = TOLERANCE_CENTS,
) -> float:
    """Fraction of the clip's power within ``tolerance_cents`` of ``k * f0`` for
    ``k = 1 .. n_harmonics`` (below Nyquist), ``f0`` the requested note in Hz.

    ~1 for a harmonic tone at the note, about the covered share of the band for white
    noise (0.1 for ``f0`` = 262 Hz at 44.1 kHz), 0 for a silent clip. Each window is at
    least +-3 FFT bins wide, the main lobe of the Hann window; NaN when that is more than
    ``f0 / 4`` (a clip too short to resolve this note: the windows would cover everything
    below ``n_harmonics * f0``; at 1 s this happens only below 12 Hz).
    """
    x = as_mono_numpy(audio)
    f0 = midi_to_hz(midi_note)
    min_half_width = 3 * sr / max(len(x), 1)
    if not math.isfinite(f0) or min_half_width > f0 / 4:
        return math.nan
    freqs, power = _power_spectrum(x, sr)
    total = power.sum()
    if total <= 0:
        return 0.0
    ratio = 2.0 ** (tolerance_cents / 1200.0)
    near = np.zeros(len(freqs), dtype=bool)
    for k in range(1, n_harmonics + 1):
        fk = k * f0
        if fk >= sr / 2:
            break
        lo = min(fk / ratio, fk - min_half_width)
        hi = max(fk * ratio, fk + min_half_width)
        near |= (freqs >= lo) & (freqs <= hi)
    return float(power[near].sum() / total)


def fundamental_energy_fraction(
    audio: np.ndarray | torch.Tensor,
    sr: int,
    midi_note: float,
    tolerance_cents: float = TOLERANCE_CENTS,
) -> float:
    """Fraction of the clip's power within ``tolerance_cents`` of the requested note's
    frequency (~1 for a pure tone at the note, 0 for a silent clip, NaN when the clip is
    too short to resolve the note; see :func:`harmonic_energy_fraction`)."""
    return harmonic_energy_fraction(audio, sr, midi_note, 1, tolerance_cents)


def peak_db(audio: np.ndarray | torch.Tensor) -> float:
    """Sample peak in dBFS (-120 for silence)."""
    peak = float(np.abs(as_mono_numpy(audio)).max(initial=0.0))
    return 20 * math.log10(peak) if peak > 10 ** (SILENCE_DB / 20) else SILENCE_DB


@dataclass
class ProfileSummary:
    """Figure-4 numbers of one set of clips (a model, the scaffold or the real data).

    Scalars: ``median_peak_db`` (dBFS), ``median_energy_centroid_s`` (s),
    ``percussive_rate`` (share of clips whose energy falls 20 dB within the clip),
    ``fundamental_fraction`` and ``harmonic_fraction`` (means over clips of tonal tags),
    ``spectrum_distance_db`` (to the real data's average spectrum; NaN until compared).
    Curves: ``energy_curve`` (mean of :func:`energy_over_time`) and ``spectrum_db``
    (:func:`average_spectrum_db`, at ``spectrum_hz``).
    """

    n: int = 0
    median_peak_db: float = math.nan
    median_energy_centroid_s: float = math.nan
    percussive_rate: float = math.nan
    fundamental_fraction: float = math.nan
    harmonic_fraction: float = math.nan
    spectrum_distance_db: float = math.nan
    energy_curve: list[float] = field(default_factory=list)
    spectrum_hz: list[float] = field(default_factory=list)
    spectrum_db: list[float] = field(default_factory=list)


def profile_clips(
    audios: Sequence[np.ndarray],
    sr: int,
    midi_notes: Sequence[float],
    tonal: Sequence[bool],
) -> ProfileSummary:
    """Summarise clips ``[T]`` at ``sr``; ``midi_notes[i]`` is what clip ``i`` was asked
    for (or, for real clips, its analysed root) and only ``tonal`` clips count for the
    fundamental and harmonic fractions (clips too short to resolve their note are skipped)."""
    if not len(audios):
        return ProfileSummary()
    tonal_ids = [i for i, t in enumerate(tonal) if t]
    hz, db = average_spectrum_db(audios, sr)

    def mean_over_tonal(metric) -> float:
        values = [metric(audios[i], sr, midi_notes[i]) for i in tonal_ids]
        values = [v for v in values if not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan

    return ProfileSummary(
        n=len(audios),
        median_peak_db=float(np.median([peak_db(a) for a in audios])),
        median_energy_centroid_s=float(np.nanmedian([energy_centroid_s(a, sr) for a in audios])),
        percussive_rate=float(np.mean([is_percussive(a, sr) for a in audios])),
        fundamental_fraction=mean_over_tonal(fundamental_energy_fraction),
        harmonic_fraction=mean_over_tonal(harmonic_energy_fraction),
        energy_curve=np.mean([energy_over_time(a) for a in audios], axis=0).tolist(),
        spectrum_hz=hz.tolist(),
        spectrum_db=db.tolist(),
    )


def compare_to_data(summary: ProfileSummary, data: ProfileSummary) -> ProfileSummary:
    """Fill in ``summary.spectrum_distance_db`` against the real data's spectrum."""
    summary.spectrum_distance_db = spectrum_distance_db(summary.spectrum_db, data.spectrum_db)
    return summary


# ------------------------------------------------------------- datasets and runs


def tonal_tags(dataset: Any) -> set[str]:
    """Tags whose clips are mostly tonal in ``dataset`` (a ``DrumDataset``): the clips
    for which a fundamental is expected, for the real data and the generated clips alike."""
    votes: dict[str, list[float]] = {}
    for i in range(len(dataset)):
        votes.setdefault(dataset.tags[i], []).append(float(dataset[i]["tonal"]))
    return {tag for tag, v in votes.items() if np.mean(v) >= 0.5}


def profile_dataset(dataset: Any, n_samples: int, sr: int, tonal: set[str]) -> ProfileSummary:
    """Profile of the real clips of ``dataset``, each cut or zero-padded to ``n_samples``
    so it is measured over the same length as the generated clips."""
    audios, notes, is_tonal = [], [], []
    for i in range(len(dataset)):
        item = dataset[i]
        x = item["audio"][0].numpy().astype(np.float64)[:n_samples]
        audios.append(np.pad(x, (0, n_samples - len(x))))
        notes.append(float(item["midi_note"]))
        is_tonal.append(dataset.tags[i] in tonal)
    return profile_clips(audios, sr, notes, is_tonal)


class _RecordingSynth:
    """Stands in for a ``DrumSynth`` inside ``evaluate_synth`` and keeps each clip it is
    asked for one at a time (``n == 1``: the scored requests, not the diversity batches)."""

    def __init__(self, synth: Any) -> None:
        self.synth = synth
        self.clips: dict[str, list[tuple[str, float, np.ndarray]]] = {"model": [], "scaffold": []}

    def __getattr__(self, name: str) -> Any:  # sample_rate, tags, config, ...
        return getattr(self.synth, name)

    def _record(self, kind: str, method: Any, kwargs: dict[str, Any]) -> tuple[torch.Tensor, int]:
        audio, sr = method(**kwargs)
        if kwargs.get("n", 1) == 1:
            note = float(kwargs["note"]) if kwargs.get("note") is not None else math.nan
            self.clips[kind].append((kwargs["tag"], note, audio[0, 0].numpy().astype(np.float64)))
        return audio, sr

    def generate(self, **kwargs: Any) -> tuple[torch.Tensor, int]:
        return self._record("model", self.synth.generate, kwargs)

    def scaffold(self, **kwargs: Any) -> tuple[torch.Tensor, int]:
        return self._record("scaffold", self.synth.scaffold, kwargs)


def evaluate_with_profiles(
    synth: Any,
    reference: Any,
    requests_from: Any | None = None,
    limit: int | None = 24,
    steps: int | None = None,
    tonal: set[str] | None = None,
    progress: bool = True,
) -> tuple[list[Any], dict[str, ProfileSummary]]:
    """:func:`mambakit.eval.drums.evaluate_synth` plus the Figure-4 profile of the same
    outputs: ``([model DrumScores, scaffold DrumScores], {"model": ..., "scaffold": ...})``.

    ``tonal``: the tags judged on their fundamental (default: :func:`tonal_tags` of
    ``reference``). The spectrum distances are left NaN (see :func:`compare_to_data`).
    """
    from mambakit.eval.drums import evaluate_synth

    tonal = tonal_tags(reference) if tonal is None else tonal
    recorder = _RecordingSynth(synth)
    scores = evaluate_synth(recorder, reference, requests_from, limit, steps, progress)
    profiles = {}
    for kind, clips in recorder.clips.items():
        profiles[kind] = profile_clips(
            [audio for _, _, audio in clips],
            synth.sample_rate,
            [note for _, note, _ in clips],
            [tag in tonal for tag, _, _ in clips],
        )
    return scores, profiles
