"""Figures of the drum tab: what a pad asks for, and what the model made of it.

Figures are built with :class:`matplotlib.figure.Figure` directly (no ``pyplot`` state),
so concurrent sessions in the web server cannot draw into each other's axes.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mambakit.dsp import hilbert_envelope

_ENV_COLOR, _PITCH_COLOR, _GEN_COLOR = "#1f6feb", "#d9480f", "#2b8a3e"


def requested_figure(t: np.ndarray, envelope: np.ndarray, pitch: np.ndarray) -> Figure:
    """Requested ADSR envelope (left axis, linear amplitude) and pitch curve (right axis,
    semitones above the root) against time in seconds."""
    fig = Figure(figsize=(6.0, 2.4), dpi=80, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(t, envelope, color=_ENV_COLOR, label="envelope (ADSR)")
    ax.set_xlabel("time [s]")
    ax.set_ylabel("amplitude", color=_ENV_COLOR)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlim(float(t[0]), float(t[-1]))
    twin = ax.twinx()
    twin.plot(t, pitch, color=_PITCH_COLOR, label="pitch above root")
    twin.set_ylabel("pitch [semitones]", color=_PITCH_COLOR)
    twin.set_ylim(min(0.0, float(pitch.min())) - 0.5, max(1.0, float(pitch.max())) + 0.5)
    ax.set_title("requested envelope and pitch curve")
    return fig


def draw_spectrogram(ax: Axes, audio: np.ndarray, sr: int) -> None:
    """A Hann-windowed STFT (1024 / hop 256) of ``audio [T]`` in dB on ``ax``, the colour
    scale spanning the 80 dB below the loudest bin (what is audible next to it).

    A -140 dB noise floor keeps exact silence (a released tail) from becoming -inf.
    """
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    floor = np.float32(1e-7) * np.random.default_rng(0).standard_normal(audio.shape[0])
    power, _, _, image = ax.specgram(
        audio + floor, NFFT=1024, Fs=sr, noverlap=768, cmap="magma", scale="dB"
    )
    top = 10.0 * np.log10(max(float(power.max()), 1e-30))
    image.set_clim(top - 80.0, top)


def analysis_figure(audio: np.ndarray, sr: int, requested_envelope: np.ndarray) -> Figure:
    """Waveform, log-magnitude spectrogram, and the generated Hilbert envelope (peak
    normalised) over the requested one, for one generated clip ``audio [T]``."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    t = np.arange(audio.shape[0]) / sr
    fig = Figure(figsize=(6.0, 5.4), dpi=80, layout="constrained")
    wave, spec, env = fig.subplots(3, 1, sharex=True)
    wave.plot(t, audio, linewidth=0.5, color="#333333")
    wave.set_ylabel("waveform")
    wave.set_ylim(-1.05, 1.05)
    draw_spectrogram(spec, audio, sr)
    spec.set_ylabel("frequency [Hz]")
    spec.set_yscale("symlog", linthresh=200.0)
    generated = hilbert_envelope(audio, sr)
    generated = generated / max(float(generated.max()), 1e-9)
    n = min(len(requested_envelope), len(generated))
    env.plot(t[:n], requested_envelope[:n], color=_ENV_COLOR, label="requested")
    env.plot(t[:n], generated[:n], color=_GEN_COLOR, label="generated (Hilbert)")
    env.set_ylabel("envelope")
    env.set_xlabel("time [s]")
    env.legend(loc="upper right", fontsize="small")
    wave.set_xlim(0.0, float(t[-1]))
    return fig
