"""Audio file I/O, resampling and level/onset utilities.

All functions take and return float32 ``torch.Tensor`` audio shaped ``[C, T]``
(channels, samples) unless stated; the sample rate always travels beside it.
"""

from __future__ import annotations

import struct
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
    "as_mono_numpy",
]


class AudioError(Exception):
    """An audio file could not be read or written; the message names the file and why."""


def _truncation_problem(path: Path) -> str | None:
    """Why a RIFF/WAVE or AIFF file is cut short, or None.

    libsndfile silently returns the frames that are there when a WAV or AIFF file ends
    before its ``data`` / ``SSND`` chunk does (a broken copy or download), so we compare the
    chunk size declared in the header with the bytes actually present. Streaming writers
    that leave the size unknown (0 or 0xFFFFFFFF) are accepted. Other containers (FLAC,
    OGG, MP3) carry their own framing and make libsndfile fail loudly instead.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12:
            return None  # too short for either container: let libsndfile report it
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            endian, data_id = "<", b"data"
        elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            endian, data_id = ">", b"SSND"
        else:
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack(endian + "4sI", f.read(8))
            if chunk_id == data_id:
                if chunk_size in (0, 0xFFFFFFFF):
                    return None
                present = size - (pos + 8)
                if chunk_size > present:
                    return (
                        f"truncated: header declares {chunk_size} bytes of audio data, "
                        f"only {present} present"
                    )
                return None
            pos += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to even sizes
    return None


def load_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """Read any file libsndfile understands (WAV/FLAC/AIFF/OGG/MP3).

    Integer PCM (including 8-bit unsigned WAV) is mapped by soundfile to [-1, 1]; float
    files keep their values. WAV/AIFF files that end before their audio data does are
    rejected rather than silently returned short.

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
    problem = _truncation_problem(path)
    if problem:
        raise AudioError(f"{path}: {problem}")
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


def as_mono_numpy(audio: torch.Tensor | np.ndarray) -> np.ndarray:
    """Any ``[T]``, ``[C, T]`` or ``[1, C, T]`` signal as a float64 mono ``[T]`` array (for
    NumPy analyses: onsets here, every feature of :mod:`mambakit.eval`)."""
    x = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    x = x.astype(np.float64)
    while x.ndim > 1:
        x = x.mean(axis=0)
    return x


def detect_onset(
    audio: torch.Tensor | np.ndarray, sr: int, threshold_db: float = -30.0, frame_ms: float = 2.0
) -> int:
    """Sample index where the sound starts.

    Energy-based: short-frame RMS in dB; the onset frame is the first whose level rises
    ``threshold_db`` below the peak frame AND at least 12 dB above the noise floor (the
    10th percentile of frame levels), so constant hiss before the hit is ignored (a clip
    that never rises 12 dB above its 10th percentile has no such floor). The onset is then
    refined to the sample: around that frame, the first sample where the mean square over
    the next 0.25 ms reaches the same threshold (a frame start alone would be up to
    ``frame_ms`` early).
    """
    x = as_mono_numpy(audio)
    hop = max(1, int(sr * frame_ms / 1000))
    n = len(x) // hop
    if n == 0:
        return 0
    frames = x[: n * hop].reshape(n, hop)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
    floor = np.percentile(level, 10)
    thresh = level.max() + threshold_db
    if floor + 12.0 <= level.max():  # a floor only exists if the hit stands out of it
        thresh = max(thresh, floor + 12.0)
    frame = int(np.nonzero(level >= thresh)[0][0])
    # sample-level refinement over the onset frame and its neighbours
    lo, hi = max(0, (frame - 1) * hop), min(len(x), (frame + 2) * hop)
    w = max(1, int(round(sr * 0.00025)))
    c = np.concatenate([[0.0], np.cumsum(x[lo : hi + w] ** 2)])
    n_win = min(hi - lo, len(c) - w)  # windows that fit inside the signal
    fine = 10 * np.log10((c[w : w + n_win] - c[:n_win]) / w + 1e-20)
    hits = np.nonzero(fine >= thresh)[0]
    return int(lo + hits[0]) if len(hits) else frame * hop


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
