"""Audio file I/O, resampling and level/onset utilities.

All functions take and return float32 ``torch.Tensor`` audio shaped ``[C, T]``
(channels, samples) unless stated; the sample rate always travels beside it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

__all__ = [
    "AudioError",
    "load_audio",
    "save_audio",
    "resample",
    "to_mono",
    "peak_normalize",
    "loudness_normalize",
    "detect_onset",
    "trim_to_onset",
    "fit_length",
]


class AudioError(Exception):
    """An audio file could not be read or written; the message names the file and why."""


def load_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """Read any file libsndfile understands (WAV/FLAC/AIFF/OGG/MP3).

    Integer PCM (including 8-bit unsigned WAV) is mapped by soundfile to [-1, 1].

    Returns:
        ``(audio [C, T] float32, sample_rate)``.

    Raises:
        AudioError: missing, empty, truncated or non-audio file, or zero frames.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [T, C]
    except Exception as exc:  # soundfile raises several types (LibsndfileError, RuntimeError)
        raise AudioError(f"{path}: cannot decode audio ({exc})") from exc
    if data.shape[0] == 0:
        raise AudioError(f"{path}: file holds zero audio frames")
    return torch.from_numpy(np.ascontiguousarray(data.T)), int(sr)


def save_audio(
    path: str | Path, audio: torch.Tensor | np.ndarray, sr: int, subtype: str = "PCM_16"
) -> None:
    """Write ``audio`` ([C, T] or [T]) to ``path``; format from the suffix (default WAV).

    ``subtype`` is ``"PCM_16"``, ``"PCM_24"`` or ``"FLOAT"``. PCM output is clipped to
    [-1, 1] with a warning when samples exceed it (float files keep the values).
    """
    x = audio.detach().cpu().float().numpy() if isinstance(audio, torch.Tensor) else audio
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise AudioError(f"{path}: expected audio [C, T] or [T], got shape {tuple(x.shape)}")
    if subtype.startswith("PCM") and np.abs(x).max(initial=0.0) > 1.0:
        warnings.warn(f"{path}: audio exceeds [-1, 1]; clipping for {subtype}", stacklevel=2)
        x = np.clip(x, -1.0, 1.0)
    try:
        sf.write(str(path), x.T, int(sr), subtype=subtype)
    except Exception as exc:
        raise AudioError(f"{path}: cannot write audio ({exc})") from exc


def resample(audio: torch.Tensor, sr_in: int, sr_out: int) -> torch.Tensor:
    """High-quality (soxr "HQ") resampling along the last axis; [T], [C, T] or [B, C, T].

    Not differentiable (goes through NumPy); dtype and device are preserved.
    """
    import soxr

    if sr_in == sr_out:
        return audio
    lead = audio.shape[:-1]
    flat = audio.detach().reshape(-1, audio.shape[-1]).cpu().double().numpy()  # [N, T]
    out = soxr.resample(flat.T, sr_in, sr_out, quality="HQ").T  # soxr wants [T, N]
    out = torch.from_numpy(np.ascontiguousarray(out)).to(audio.dtype).to(audio.device)
    return out.reshape(*lead, out.shape[-1])


def to_mono(audio: torch.Tensor) -> torch.Tensor:
    """Average channels: [C, T] (or [T]) -> [1, T]."""
    if audio.ndim == 1:
        return audio[None]
    return audio.mean(dim=0, keepdim=True)


def peak_normalize(audio: torch.Tensor, peak: float = 0.99) -> torch.Tensor:
    """Scale so that max |x| == ``peak``; silent input is returned unchanged."""
    m = audio.abs().max()
    return audio if m <= 0 else audio * (peak / m)


def loudness_normalize(audio: torch.Tensor, sr: int, target_db: float = -20.0) -> torch.Tensor:
    """Scale to an RMS level of ``target_db`` dBFS (plain RMS over all samples, not LUFS).

    RMS was chosen over K-weighted LUFS because one-shots are short (< 400 ms gating
    blocks make LUFS ill-defined). ``sr`` is accepted for API symmetry.
    """
    rms = audio.pow(2).mean().sqrt()
    if rms <= 0:
        return audio
    return audio * (10 ** (target_db / 20) / rms)


def _as_mono_numpy(audio: torch.Tensor | np.ndarray) -> np.ndarray:
    x = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    x = x.astype(np.float64)
    while x.ndim > 1:
        x = x.mean(axis=0)
    return x


def detect_onset(
    audio: torch.Tensor | np.ndarray, sr: int, threshold_db: float = -30.0, frame_ms: float = 2.0
) -> int:
    """Sample index where the sound starts.

    Energy-based: short-frame RMS in dB; the onset is the first frame whose level rises
    ``threshold_db`` below the peak frame AND at least 12 dB above the noise floor (the
    10th percentile of frame levels), so constant hiss before the hit is ignored.
    """
    x = _as_mono_numpy(audio)
    hop = max(1, int(sr * frame_ms / 1000))
    n = len(x) // hop
    if n == 0:
        return 0
    frames = x[: n * hop].reshape(n, hop)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
    floor = np.percentile(level, 10)
    thresh = max(level.max() + threshold_db, floor + 12.0)
    above = np.nonzero(level >= min(thresh, level.max()))[0]
    return int(above[0] * hop)


def trim_to_onset(audio: torch.Tensor, sr: int, pre_roll_s: float = 0.002) -> torch.Tensor:
    """Drop everything before ``detect_onset - pre_roll_s``; [C, T] -> [C, T']."""
    start = max(0, detect_onset(audio, sr) - int(round(pre_roll_s * sr)))
    return audio[..., start:]


def fit_length(audio: torch.Tensor, n: int) -> torch.Tensor:
    """Cut or zero-pad the last axis to exactly ``n`` samples."""
    t = audio.shape[-1]
    if t >= n:
        return audio[..., :n]
    return torch.nn.functional.pad(audio, (0, n - t))
