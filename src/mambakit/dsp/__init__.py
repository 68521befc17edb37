"""mambakit.dsp: deterministic signal processing (no learning, imports nothing of ours)."""

from mambakit.dsp.anchor import pitch_env_curve, resample_curve, sine_anchor
from mambakit.dsp.bands import Band, LogBands, log_bands
from mambakit.dsp.contours import (
    PitchContour,
    SpectralEnvelope,
    a_weighting_db,
    f0_contour,
    frame_count,
    loudness_db,
    spectral_envelope,
)
from mambakit.dsp.envelope import ADSR, fit_adsr, hilbert_envelope, render_adsr
from mambakit.dsp.harmonic import HarmonicNoiseSynth, SynthState, filtered_noise, harmonic_synth
from mambakit.dsp.io import (
    AudioError,
    detect_onset,
    fit_length,
    load_audio,
    loudness_normalize,
    peak_normalize,
    resample,
    save_audio,
    to_mono,
    trim_to_onset,
)
from mambakit.dsp.pitch import PitchAnalysis, analyze_pitch
from mambakit.dsp.spectral import (
    MelLoss,
    MultiResolutionSTFTLoss,
    mel_spectrogram,
    mfcc_statistics,
    stft,
)

__all__ = [
    "ADSR",
    "HarmonicNoiseSynth",
    "PitchContour",
    "SpectralEnvelope",
    "SynthState",
    "a_weighting_db",
    "f0_contour",
    "filtered_noise",
    "frame_count",
    "harmonic_synth",
    "loudness_db",
    "spectral_envelope",
    "AudioError",
    "Band",
    "LogBands",
    "MelLoss",
    "MultiResolutionSTFTLoss",
    "PitchAnalysis",
    "analyze_pitch",
    "detect_onset",
    "fit_adsr",
    "fit_length",
    "hilbert_envelope",
    "load_audio",
    "log_bands",
    "loudness_normalize",
    "mel_spectrogram",
    "mfcc_statistics",
    "peak_normalize",
    "pitch_env_curve",
    "render_adsr",
    "resample",
    "resample_curve",
    "save_audio",
    "sine_anchor",
    "stft",
    "to_mono",
    "trim_to_onset",
]
