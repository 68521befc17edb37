"""mambakit.dsp.pitch: root note on every MIDI note, kick sweeps, noise, onset alignment."""

import numpy as np
import pytest
import torch

from mambakit.dsp import analyze_pitch, pitch_env_curve
from mambakit.dsp.pitch import yin_track


def _hz(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def _tone(midi: int, sr: int, seconds: float, harmonics: int) -> np.ndarray:
    """A decaying tone; with harmonics > 1, partials k at 1/k with random phases."""
    t = np.arange(int(seconds * sr)) / sr
    phases = np.random.default_rng(midi).uniform(0, 2 * np.pi, harmonics)
    x = sum(
        np.sin(2 * np.pi * k * _hz(midi) * t + phases[k - 1]) / k
        for k in range(1, harmonics + 1)
        if k * _hz(midi) < sr / 2
    )
    return x * np.exp(-t / 0.2)


@pytest.mark.parametrize("harmonics", [1, 8], ids=["sine", "harmonic"])
def test_every_midi_note_24_to_96(harmonics):
    # 16 kHz keeps 146 analyses fast; the 2093 Hz top note is still well below sr / 4
    sr = 16000
    wrong = []
    for midi in range(24, 97):
        pa = analyze_pitch(_tone(midi, sr, 0.3, harmonics), sr)
        steady = pa.pitch_env.size > 0 and np.abs(pa.pitch_env).max() < 0.3
        if not (pa.midi_note == midi and pa.tonal and steady):
            wrong.append((midi, pa.midi_note, pa.tonal, pa.pitch_env[:3]))
        assert pa.midi_note == 12 * pa.octave + pa.pitch_class
    assert not wrong, wrong


@pytest.mark.parametrize("midi", [24, 60, 96])
def test_root_note_at_44k1_and_f0_accuracy(midi):
    sr = 44100
    pa = analyze_pitch(torch.from_numpy(_tone(midi, sr, 0.3, 8)).float()[None], sr)
    assert pa.midi_note == midi and pa.tonal
    assert abs(12 * np.log2(pa.f0_hz / _hz(midi))) < 0.05  # within 5 cents
    assert pa.pitch_env_rate == pytest.approx(sr / round(0.004 * sr))


def _kick(midi: int, sr: int, lead_s: float, harmonics: int) -> tuple[np.ndarray, np.ndarray]:
    """+12 semitones decaying to the root with tau = 10 ms (0.2 st left at 40 ms), with
    partials k at 1/k and an exponential amplitude decay, after ``lead_s`` of silence.
    Returns (audio [T], true sweep p(t) [0.3 s] in semitones from the onset)."""
    n = int(0.3 * sr)
    sweep = pitch_env_curve(12.0, 0.01, n, sr).double().numpy()
    phase = 2 * np.pi * np.cumsum(_hz(midi + sweep)) / sr  # equation 1's phase
    body = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
    body = body * np.exp(-np.arange(n) / sr / 0.1)
    return np.concatenate([np.zeros(int(lead_s * sr)), body]), sweep


# Measured limit: harmonic kicks below ~A2 start 2-3 semitones off (see analyze_pitch).
@pytest.mark.parametrize(
    "midi,harmonics", [(36, 1), (45, 1), (57, 1), (45, 4), (57, 4)], ids=lambda v: str(v)
)
def test_kick_sweep_envelope(midi, harmonics):
    sr = 44100
    audio, sweep = _kick(midi, sr, lead_s=0.05, harmonics=harmonics)
    pa = analyze_pitch(audio, sr)
    assert pa.tonal and pa.midi_note == midi
    env = pa.pitch_env
    truth = sweep[np.round(np.arange(len(env)) * sr / pa.pitch_env_rate).astype(int)]
    assert abs(env[0] - 12) < 2, env[:5]  # starts at the top of the sweep, at the onset
    assert np.abs(env[1:4] - truth[1:4]).max() < 2, (env[:5], truth[:5])
    late = np.arange(len(env)) / pa.pitch_env_rate >= 0.04
    assert np.abs(env[late]).max() < 0.5  # settled on the root after 40 ms
    assert abs(env[-1]) < 0.2
    assert (np.diff(env[: int(0.04 * pa.pitch_env_rate)]) < 0.3).all()  # falls, no jumps


def test_flat_tone_after_silence_has_flat_envelope_from_onset():
    sr = 22050
    x = np.concatenate([np.zeros(sr // 10), _tone(50, sr, 0.3, 4)])
    pa = analyze_pitch(x, sr)
    assert pa.midi_note == 50 and np.abs(pa.pitch_env).max() < 0.3
    # the envelope spans the sound, not the leading silence: ~0.3 s of decaying tone
    assert 0.1 < len(pa.pitch_env) / pa.pitch_env_rate <= 0.31


def test_noise_is_not_tonal():
    sr = 16000
    noise = np.random.default_rng(0).standard_normal(sr // 2) * np.exp(-np.arange(sr // 2) / 4000)
    pa = analyze_pitch(noise, sr)
    assert not pa.tonal and pa.pitch_env.size == 0 and pa.confidence < 0.4


def test_too_short_raises():
    with pytest.raises(ValueError, match="too short"):
        analyze_pitch(np.zeros(100), 16000)


def test_yin_track_on_a_steady_tone():
    sr = 16000
    t = np.arange(sr // 4) / sr
    f0, ap, rms = yin_track(np.sin(2 * np.pi * 233.0 * t), sr, 60.0, 1000.0, hop=160)
    assert len(f0) == (len(t) - 2 * int(np.ceil(sr / 60.0))) // 160 + 1
    assert np.abs(f0 - 233.0).max() < 0.5 and (ap < 0.05).all()
    assert np.allclose(rms, np.sqrt(0.5), atol=0.02)
