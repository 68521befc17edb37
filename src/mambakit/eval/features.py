"""Hand-made audio descriptors shared by the evaluations (no learning, NumPy only).

These are the "ears" of the test suite and the reports: each is a small,
well-known formula so a number in a report can be traced back to the signal.
"""

from __future__ import annotations

import numpy as np
import torch

from mambakit.dsp import mel_spectrogram
from mambakit.dsp.io import as_mono_numpy


def log_mel_frames(
    audio: np.ndarray | torch.Tensor, sr: int, n_mels: int = 40, top_db: float = 80.0
) -> np.ndarray:
    """Log-mel spectrogram ``[n_mels, frames]`` in dB below the clip's loudest bin, floored
    at ``-top_db`` (1024-point FFT, hop 256).

    The floor is what a listener (and a real recording's noise floor) allows: without it,
    bins 100 dB down, inaudible, would dominate any distance between clips, and a
    procedural kick with exactly nothing above 5 kHz would sit far from a generated one
    with a faint -90 dB hiss there.
    """
    x = torch.as_tensor(as_mono_numpy(audio), dtype=torch.float32)[None]
    mel = mel_spectrogram(x, sr, n_fft=1024, hop_length=256, n_mels=n_mels, log=False)
    mel = mel[0].numpy().astype(np.float64)
    peak = max(float(mel.max()), 1e-12)
    return 20.0 * np.log10(np.maximum(mel, peak * 10.0 ** (-top_db / 20.0)) / peak)


def spectral_centroid_hz(audio: np.ndarray | torch.Tensor, sr: int) -> float:
    """Power-weighted mean frequency of the whole clip, in Hz."""
    x = as_mono_numpy(audio)
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1.0 / sr)
    return float((power * freqs).sum() / max(power.sum(), 1e-20))


def short_time_energy_db(audio: np.ndarray | torch.Tensor, sr: int) -> tuple[np.ndarray, int]:
    """Mean-square energy of consecutive 5 ms frames in dB -> ``(db [frames], hop samples)``."""
    x = as_mono_numpy(audio)
    hop = max(1, sr // 200)
    n = len(x) // hop
    frames = (x[: n * hop].reshape(n, hop) ** 2).mean(axis=1) + 1e-20
    return 10 * np.log10(frames), hop


def energy_decay_time_s(audio: np.ndarray | torch.Tensor, sr: int, drop_db: float = 20.0) -> float:
    """Seconds from the energy peak until the short-time energy has fallen by ``drop_db``
    (until the end of the clip if it never does)."""
    db, hop = short_time_energy_db(audio, sr)
    if len(db) == 0:
        return 0.0
    peak = int(np.argmax(db))
    below = np.nonzero(db[peak:] < db[peak] - drop_db)[0]
    end = below[0] if len(below) else len(db) - peak
    return float(end * hop / sr)


def clip_embedding(audio: np.ndarray | torch.Tensor, sr: int) -> np.ndarray:
    """A fixed-length descriptor of a one-shot: log-mel mean and std over time, the
    log-mel of the first 50 ms (the attack), log centroid and log decay time."""
    mel = log_mel_frames(audio, sr)
    attack_frames = max(1, int(0.05 * sr / 256))
    return np.concatenate(
        [
            mel.mean(axis=1),
            mel.std(axis=1),
            mel[:, :attack_frames].mean(axis=1),
            [np.log(spectral_centroid_hz(audio, sr) + 1.0)],
            [np.log(energy_decay_time_s(audio, sr) + 1e-3)],
        ]
    )


def comb_level_db(
    audio: np.ndarray | torch.Tensor,
    sr: int,
    line_hz: float = 44100 / 64,
    harmonics: int = 11,
    seconds: float = 0.5,
) -> float:
    """How far spectral lines at ``k * line_hz`` (k = 1..harmonics) stand out, in dB.

    The patch-rate comb measure of issue 14: on the Hann-windowed spectrum of the first
    ``seconds`` of the clip, the level at each line (the loudest bin within +-3 bins) above
    the local median spectrum (a median filter one ``line_hz`` wide), averaged over k,
    minus the same taken at the half-way frequencies ``(k + 0.5) * line_hz``. Subtracting
    the half-way points cancels the bias of taking a maximum of a noisy spectrum, so a clip
    without lines scores about 0 dB and one with lines scores their height. Lines above
    the Nyquist frequency are left out; NaN for a silent clip.
    """
    import scipy.ndimage

    x = as_mono_numpy(audio)[: int(round(seconds * sr))]
    if len(x) < 16 or not np.any(x):
        return float("nan")
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    db = 10.0 * np.log10(power + 1e-20 * max(float(power.max()), 1e-30))
    bin_hz = sr / len(x)
    width = max(3, int(round(line_hz / bin_hz)) | 1)
    floor = scipy.ndimage.median_filter(db, size=width, mode="nearest")
    excess = db - floor

    def level(freqs: np.ndarray) -> float:
        bins = np.round(freqs / bin_hz).astype(int)
        bins = bins[(bins >= 3) & (bins < len(db) - 3)]
        if len(bins) == 0:
            return float("nan")
        return float(np.mean([excess[b - 3 : b + 4].max() for b in bins]))

    k = np.arange(1, harmonics + 1, dtype=np.float64)
    k = k[(k + 0.5) * line_hz < sr / 2]
    return level(k * line_hz) - level((k + 0.5) * line_hz)


def decay_time_s(audio: np.ndarray | torch.Tensor, sr: int, fraction: float = 0.1) -> float:
    """Seconds from the start until the amplitude envelope stays below ``fraction`` of its
    peak (the Hilbert envelope smoothed over 5 ms; the clip length if it never does, 0 for
    a silent clip). The per-tag decay measure of issue 14 uses ``fraction = 0.1``."""
    from mambakit.dsp import hilbert_envelope

    x = as_mono_numpy(audio)
    if not np.any(x):
        return 0.0
    env = hilbert_envelope(x, sr)
    above = np.nonzero(env >= fraction * env.max())[0]
    return float((above[-1] + 1) / sr)
