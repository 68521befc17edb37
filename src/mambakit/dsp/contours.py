"""Frame-rate contours of a monophonic performance: f0 with voicing, and A-weighted
loudness; what a harmonic-plus-noise resynthesis keeps of a melody.

Frames are centred: frame ``i`` describes the audio around sample ``i * hop``, and a clip
of ``T`` samples has ``ceil(T / hop) + 1`` frames, so that frames ``0 .. F - 1`` span the
whole clip (the synthesiser of :mod:`mambakit.dsp.harmonic` renders ``(F - 1) * hop >= T``
samples from them). Both analyses run in blocks of frames over zero-padded audio, so a
long clip costs bounded memory and gives exactly the frames of one pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mambakit.dsp.pitch import yin_track
from mambakit.dsp.spectral import mel_filterbank

__all__ = [
    "PitchContour",
    "SpectralEnvelope",
    "a_weighting_db",
    "frame_count",
    "frame_spectra",
    "f0_contour",
    "loudness_db",
    "spectral_envelope",
    "LOUDNESS_FLOOR_DB",
]

LOUDNESS_FLOOR_DB = -100.0
_BLOCK_FRAMES = 2048


def frame_count(n_samples: int, hop: int) -> int:
    """Frames of a ``n_samples`` clip: ``ceil(n / hop) + 1`` (the last at or past its end)."""
    return -(-n_samples // hop) + 1


def a_weighting_db(freqs_hz: Tensor) -> Tensor:
    """IEC 61672 A-weighting in dB (0 dB at 1 kHz)::

    R_A(f) = 12194^2 f^4 / ((f^2 + 20.6^2) sqrt((f^2 + 107.7^2)(f^2 + 737.9^2)) (f^2 + 12194^2))
    A(f) = 20 log10 R_A(f) + 2.00
    """
    f2 = freqs_hz.double() ** 2
    ra = (12194.0**2 * f2**2) / (
        (f2 + 20.6**2) * torch.sqrt((f2 + 107.7**2) * (f2 + 737.9**2)) * (f2 + 12194.0**2)
    )
    return (20 * torch.log10(ra.clamp_min(1e-20)) + 2.0).float()


def _flat(audio: Tensor | np.ndarray) -> Tensor:
    x = torch.as_tensor(np.asarray(audio) if isinstance(audio, np.ndarray) else audio).float()
    while x.ndim > 1:
        x = x.mean(dim=0)
    return x


def frame_spectra(audio: Tensor | np.ndarray, hop: int, n_fft: int, n_mels: int, sr: int):
    """Per-frame A-weighted loudness ``[F]`` (dB) and log-mel ``[F, n_mels]`` of mono
    ``audio`` ``[T]`` (or ``[C, T]``, mixed), Hann window of ``n_fft`` centred on each
    frame, zero padding outside the clip.

    Loudness ``10 log10(2 sum_f |X_f|^2 w_A(f) / (n_fft sum_n w_n^2))`` (floor
    :data:`LOUDNESS_FLOOR_DB`) is the A-weighted mean power: a sine of amplitude ``a`` at
    1 kHz reads ``20 log10(a) - 3.01`` dB. Log-mel: ``ln(mel + 1e-5)``, Slaney-normalised
    HTK filters as :func:`mambakit.dsp.mel_spectrogram`.
    """
    x = _flat(audio)
    n_frames = frame_count(len(x), hop)
    padded = torch.nn.functional.pad(x, (n_fft // 2, n_fft // 2 + hop))
    window = torch.hann_window(n_fft, dtype=torch.float32)
    freqs = torch.linspace(0, sr / 2, n_fft // 2 + 1)
    weight = 10 ** (a_weighting_db(freqs) / 10)
    weight[0] = 0.0
    scale = torch.full((n_fft // 2 + 1,), 2.0)
    scale[0] = scale[-1] = 1.0
    norm = n_fft * float(window.pow(2).sum())
    fb = mel_filterbank(sr, n_fft, n_mels)
    loud, mels = [], []
    for a in range(0, n_frames, _BLOCK_FRAMES):
        b = min(n_frames, a + _BLOCK_FRAMES)
        frames = padded[a * hop : (b - 1) * hop + n_fft].unfold(0, n_fft, hop)[: b - a]
        spec = torch.fft.rfft(frames * window)  # [f, n_fft // 2 + 1]
        power = spec.real.pow(2) + spec.imag.pow(2)
        level = (power * weight * scale).sum(dim=-1) / norm
        loud.append((10 * torch.log10(level.clamp_min(1e-30))).clamp_min(LOUDNESS_FLOOR_DB))
        mels.append(torch.log(power.sqrt() @ fb.T + 1e-5))
    return torch.cat(loud), torch.cat(mels)


def loudness_db(audio: Tensor | np.ndarray, sr: int, hop: int, n_fft: int = 1024) -> Tensor:
    """A-weighted loudness per centred frame, ``[F]`` dB (see :func:`frame_spectra`)."""
    return frame_spectra(audio, hop, n_fft, 1, sr)[0]


@dataclass(frozen=True)
class PitchContour:
    """f0 per centred frame (:func:`f0_contour`).

    Attributes:
        f0_hz: ``[F]`` float32; unvoiced frames hold the nearest voiced value (0 when no
            frame is voiced), so an oscillator glides through them instead of jumping.
        voiced: ``[F]`` bool: periodic (YIN aperiodicity below the threshold).
        aperiodicity: ``[F]`` YIN's d'(tau*) in [0, 1+] (low = clearly periodic).
    """

    f0_hz: Tensor
    voiced: Tensor
    aperiodicity: Tensor


def f0_contour(
    audio: Tensor | np.ndarray,
    sr: int,
    hop: int,
    f_min: float = 50.0,
    f_max: float = 2000.0,
    threshold: float = 0.25,
) -> PitchContour:
    """YIN f0 (:func:`mambakit.dsp.pitch.yin_track`) on frames centred at ``i * hop``.

    Two passes, so that a clip costs about a quarter of plain YIN at the full rate: YIN on
    the audio decimated by the largest integer ``d`` that divides ``hop`` and keeps the
    rate at or above ``4 f_max`` (16 kHz, f_max 2 kHz: ``d = 2``) gives voicing and a
    coarse period; the period is then refined at the full rate by the raw difference
    function ``d(tau) = sum_j (x_j - x_{j + tau})^2`` at the five lags around it, with
    parabolic interpolation (decimated YIN alone reads high notes up to ~40 cents sharp).

    Voiced where the aperiodicity is below ``threshold``; a voiced frame whose f0 is an
    octave off both voiced neighbours (a YIN octave slip) takes their mean. Frames of
    silence (digital zero) are unvoiced.
    """
    from mambakit.dsp.io import resample

    full = _flat(audio).numpy().astype(np.float32)
    n_frames = frame_count(len(full), hop)
    d = max(1, int(sr // (4 * f_max)))
    while hop % d:
        d -= 1
    x = full if d == 1 else resample(torch.from_numpy(full), sr, sr // d).numpy()
    sr_a, hop_a = sr // d, hop // d
    max_lag = int(math.ceil(sr_a / f_min))
    span = 2 * max_lag  # yin_track's window: max_lag, plus max_lag of lags
    padded = np.pad(x, (span // 2, span // 2 + hop_a))
    f0s, aps, rmss = [], [], []
    for a in range(0, n_frames, _BLOCK_FRAMES):
        b = min(n_frames, a + _BLOCK_FRAMES)
        f0, ap, rms = yin_track(
            padded[a * hop_a : (b - 1) * hop_a + span], sr_a, f_min, f_max, hop_a
        )
        f0s.append(f0[: b - a])
        aps.append(ap[: b - a])
        rmss.append(rms[: b - a])
    f0, ap, rms = (np.concatenate(v).astype(np.float64) for v in (f0s, aps, rmss))
    if d > 1:
        f0 = _refine_f0(full, sr, hop, f0, f_min)
    voiced = (ap < threshold) & (rms > 1e-7) & np.isfinite(f0)
    f0 = np.where(voiced, f0, 0.0)
    idx = np.nonzero(voiced)[0]
    if len(idx) >= 3:
        inner = idx[1:-1]
        prev, nxt = f0[idx[:-2]], f0[idx[2:]]
        ratio_p, ratio_n = np.log2(f0[inner] / prev), np.log2(f0[inner] / nxt)
        slip = (
            (np.abs(ratio_p) > 0.8) & (np.abs(ratio_n) > 0.8) & (np.abs(np.log2(prev / nxt)) < 0.1)
        )
        f0[inner[slip]] = 0.5 * (prev[slip] + nxt[slip])
    if len(idx):
        filled = np.exp(np.interp(np.arange(n_frames), idx, np.log(f0[idx])))
    else:
        filled = np.zeros(n_frames)
    return PitchContour(
        f0_hz=torch.from_numpy(filled).float(),
        voiced=torch.from_numpy(voiced),
        aperiodicity=torch.from_numpy(ap).float(),
    )


def _refine_f0(x: np.ndarray, sr: int, hop: int, f0: np.ndarray, f_min: float) -> np.ndarray:
    """Frame f0s ``[F]`` re-estimated at the full rate: the minimum of the raw difference
    function over the five lags nearest ``sr / f0`` (frames centred at ``i * hop``, window
    ``ceil(sr / f_min)``), parabolic interpolation around it."""
    max_lag = int(math.ceil(sr / f_min))
    padded = np.pad(x, (max_lag, 2 * max_lag + hop))
    windows = np.lib.stride_tricks.sliding_window_view(padded, max_lag)  # [n, W], a view
    out = f0.copy()
    for a in range(0, len(f0), _BLOCK_FRAMES):
        block = f0[a : a + _BLOCK_FRAMES]
        ok = np.isfinite(block) & (block > 0)
        tau0 = np.clip(np.round(sr / np.where(ok, block, sr / 4.0)), 4, max_lag - 3).astype(int)
        lags = tau0[:, None] + np.arange(-2, 3)  # [f, 5]
        starts = (a + np.arange(len(block))) * hop  # frame start in padded coordinates
        seg = windows[starts]  # [f, W]
        shifted = windows[starts[:, None] + lags]  # [f, 5, W]
        diff = ((seg[:, None] - shifted) ** 2).sum(-1)  # d(tau), [f, 5]
        best = np.clip(diff.argmin(axis=1), 1, 3)
        rows = np.arange(len(block))
        lo, mid, hi = diff[rows, best - 1], diff[rows, best], diff[rows, best + 1]
        den = lo - 2 * mid + hi
        shift = np.where(den > 1e-12, 0.5 * (lo - hi) / np.where(den > 1e-12, den, 1.0), 0.0)
        tau = lags[rows, best] + np.clip(shift, -1.0, 1.0)
        out[a : a + len(block)] = np.where(ok, sr / tau, block)
    return out


@dataclass(frozen=True)
class SpectralEnvelope:
    """A clip's timbre as two curves over frequency, on ``n`` points evenly spaced from
    0 to ``sr / 2`` (:func:`spectral_envelope`), natural-log magnitudes with maximum 0.

    Attributes:
        harmonic: ``[n]`` log amplitude of the clip's harmonics, read at ``k f0`` and
            interpolated in between (flat outside the first and last harmonic).
        smooth: ``[n]`` log of the average magnitude spectrum smoothed over one grid step:
            where the energy is, harmonic or not (a noise envelope).
        partials: ``[max_harmonics]`` log amplitude of harmonic ``k = 1, 2, ...`` by its
            number (max 0; harmonics at or above Nyquist repeat the last one below): the
            pitch-relative view (a clarinet's weak even harmonics), where ``harmonic`` is
            the fixed-frequency one (a body resonance).
        f0_hz: the clip's median f0 over its loud voiced frames (0 if none).
    """

    harmonic: Tensor
    smooth: Tensor
    partials: Tensor
    f0_hz: float

    @staticmethod
    def sample(curve: Tensor, freqs_hz: Tensor, sr: int) -> Tensor:
        """``curve`` ``[..., n]`` (grid 0 .. sr / 2) at ``freqs_hz`` ``[..., m]`` (the same
        leading shape, or broadcastable), by linear interpolation -> ``[..., m]``."""
        n = curve.shape[-1]
        pos = (freqs_hz / (sr / 2) * (n - 1)).clamp(0, n - 1)
        lo = pos.floor().long().clamp(max=n - 2)
        w = pos - lo
        left = torch.gather(curve.expand(*pos.shape[:-1], n), -1, lo)
        right = torch.gather(curve.expand(*pos.shape[:-1], n), -1, lo + 1)
        return left + (right - left) * w


# A pitch whose odd harmonics (1, 3, 5) lie this far (natural log, 20 dB) below its even
# ones on average is the octave below the note: YIN's subharmonic error.
SUBHARMONIC_NATS = math.log(10.0)


def _harmonic_log_amplitudes(
    mag: Tensor, f0_frames: Tensor, f0: float, sr: int, n_fft: int, max_harmonics: int
) -> tuple[Tensor, Tensor]:
    """Mean log peak magnitude ``[K]`` near each harmonic ``k f0_t`` below Nyquist (+-2
    bins of the frames' spectra ``mag [f, n_fft // 2 + 1]``), and those ``k``."""
    bins = mag.shape[-1]
    k = torch.arange(1, max_harmonics + 1, dtype=torch.float32)
    k = k[k * f0 < sr / 2]
    centre = (f0_frames[:, None] * k * n_fft / sr).round().long()  # [f, K]
    near = (centre[..., None] + torch.arange(-2, 3)).clamp(0, bins - 1)  # [f, K, 5]
    peaks = torch.gather(mag[:, None, :].expand(-1, len(k), -1), 2, near).amax(-1)
    return torch.log(peaks + 1e-7).mean(0), k


def spectral_envelope(
    audio: Tensor | np.ndarray,
    sr: int,
    hop: int,
    n_points: int = 128,
    n_fft: int = 2048,
    max_harmonics: int = 64,
    pitch: PitchContour | None = None,
    level: Tensor | None = None,
    octave_check: bool = True,
) -> SpectralEnvelope:
    """The style clip's :class:`SpectralEnvelope`: over the frames within 30 dB of its
    loudest (and voiced, when any are), the mean log peak magnitude near each harmonic
    ``k f0`` (+-2 bins of an ``n_fft`` Hann STFT, f0 of the frame) and the mean magnitude
    spectrum; with ``octave_check``, f0 is doubled where its odd harmonics are missing
    (:data:`SUBHARMONIC_NATS`: the pitch tracker's octave-below error, under which every
    other "harmonic" is empty).
    A source-filter view: the harmonic curve read at another pitch's harmonics is a first
    guess of that note's harmonic amplitudes on the same instrument.

    ``pitch`` (:func:`f0_contour`) and ``level`` (:func:`loudness_db`, 1024-point window)
    of the clip at this ``hop``, when the caller has them, spare computing them again."""
    x = _flat(audio)
    pitch = f0_contour(x, sr, hop) if pitch is None else pitch
    level = frame_spectra(x, hop, 1024, 1, sr)[0] if level is None else level
    n_frames = len(level)
    padded = torch.nn.functional.pad(x, (n_fft // 2, n_fft // 2 + hop))
    loud = level >= level.max() - 30.0
    use = loud & pitch.voiced
    if not bool(use.any()):
        use = loud
    frames = padded[: (n_frames - 1) * hop + n_fft].unfold(0, n_fft, hop)[:n_frames][use]
    mag = torch.fft.rfft(frames * torch.hann_window(n_fft)).abs()  # [f, n_fft // 2 + 1]
    grid = torch.linspace(0, sr / 2, n_points)
    bins = n_fft // 2 + 1
    mean_mag = mag.mean(0)
    width = max(1, int(round(bins / n_points)))
    smooth = torch.nn.functional.avg_pool1d(
        mean_mag[None, None], width, 1, padding=width // 2, count_include_pad=False
    )[0, 0, :bins]
    smooth = torch.log(smooth[(grid / (sr / 2) * (bins - 1)).round().long()] + 1e-7)
    f0_frames = pitch.f0_hz[use]
    f0 = float(f0_frames.median()) if bool(pitch.voiced[use].any()) else 0.0
    if f0 <= 0:
        flat = torch.zeros(max_harmonics)
        return SpectralEnvelope(smooth - smooth.max(), smooth - smooth.max(), flat, 0.0)
    log_amp, k = _harmonic_log_amplitudes(mag, f0_frames, f0, sr, n_fft, max_harmonics)
    odd, even = log_amp[0:6:2], log_amp[1:6:2]  # harmonics 1, 3, 5 and 2, 4, 6
    if octave_check and len(log_amp) >= 6 and bool(odd.mean() < even.mean() - SUBHARMONIC_NATS):
        f0, f0_frames = 2.0 * f0, 2.0 * f0_frames  # YIN took the octave below the note
        log_amp, k = _harmonic_log_amplitudes(mag, f0_frames, f0, sr, n_fft, max_harmonics)
    harmonic = np.interp(grid.numpy(), (k * f0).numpy(), log_amp.numpy())
    harmonic = torch.from_numpy(harmonic).float()
    partials = torch.full((max_harmonics,), float(log_amp[-1]))
    partials[: len(log_amp)] = log_amp
    return SpectralEnvelope(
        harmonic - harmonic.max(), smooth - smooth.max(), partials - partials.max(), f0
    )
