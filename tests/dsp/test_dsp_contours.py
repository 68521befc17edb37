import math

import numpy as np
import pytest
import torch

import mambakit.dsp.contours as contours
from mambakit.dsp.contours import a_weighting_db, f0_contour, frame_count, loudness_db

SR, HOP = 16000, 128


def _note(f0_curve, seconds, harmonics=6):
    """Harmonic note following ``f0_curve(t)`` (Hz), 1/k amplitudes, peak ~0.5."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0_curve(t)) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
    return (0.5 * x / np.abs(x).max()).astype(np.float32), t


def test_frames_cover_the_clip():
    assert frame_count(1000, 128) == 9 and frame_count(1024, 128) == 9
    x, _ = _note(lambda t: 220 + 0 * t, 0.5)
    assert (
        len(f0_contour(x, SR, HOP).f0_hz)
        == len(loudness_db(x, SR, HOP))
        == frame_count(len(x), HOP)
    )


@pytest.mark.parametrize("freq", [82.4, 220.0, 659.3])
def test_f0_of_a_steady_note(freq):
    x, _ = _note(lambda t: freq + 0 * t, 1.0)
    pitch = f0_contour(x, SR, HOP)
    inner = slice(8, -8)  # frames whose window lies inside the note
    assert bool(pitch.voiced[inner].all())
    cents = 1200 * np.log2(pitch.f0_hz[inner].numpy() / freq)
    assert np.abs(cents).max() < 10


def test_f0_follows_a_glide():
    glide = lambda t: 200 * 2 ** (t / 1.0)  # noqa: E731  one octave a second
    x, _ = _note(glide, 1.0)
    pitch = f0_contour(x, SR, HOP)
    times = np.arange(len(pitch.f0_hz)) * HOP / SR
    inner = slice(8, -8)
    cents = 1200 * np.log2(pitch.f0_hz[inner].numpy() / glide(times[inner]))
    assert np.abs(cents).max() < 25


def test_silence_and_noise_are_unvoiced():
    assert not bool(f0_contour(np.zeros(8000), SR, HOP).voiced.any())
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, SR).astype(np.float32)
    assert float(f0_contour(noise, SR, HOP).voiced.float().mean()) < 0.2


def test_loudness_of_sines_and_silence():
    t = np.arange(SR) / SR
    for amp in (0.5, 0.25, 0.05):
        level = loudness_db(amp * np.sin(2 * np.pi * 1000 * t), SR, HOP)
        assert float(level[10:-10].mean()) == pytest.approx(20 * math.log10(amp) - 3.01, abs=0.05)
    low = loudness_db(0.5 * np.sin(2 * np.pi * 100 * t), SR, HOP)[10:-10].mean()
    # A-weighting: 100 Hz reads 19.1 dB below 1 kHz (IEC 61672 table)
    assert float(low) == pytest.approx(20 * math.log10(0.5) - 3.01 - 19.1, abs=0.3)
    assert float(loudness_db(np.zeros(4000), SR, HOP).max()) == contours.LOUDNESS_FLOOR_DB
    assert float(a_weighting_db(torch.tensor([1000.0]))) == pytest.approx(0.0, abs=0.01)


def test_blocked_analysis_equals_one_block(monkeypatch):
    x, _ = _note(lambda t: 300 + 40 * np.sin(2 * np.pi * 3 * t), 1.0)
    whole_f0, whole_loud = f0_contour(x, SR, HOP), loudness_db(x, SR, HOP)
    monkeypatch.setattr(contours, "_BLOCK_FRAMES", 7)
    torch.testing.assert_close(f0_contour(x, SR, HOP).f0_hz, whole_f0.f0_hz)
    torch.testing.assert_close(loudness_db(x, SR, HOP), whole_loud)


def test_spectral_envelope_reads_the_harmonic_amplitudes():
    from mambakit.dsp.contours import SpectralEnvelope, spectral_envelope

    f0, amps = 250.0, np.array([1.0, 0.5, 0.25, 0.6, 0.1])
    t = np.arange(SR) / SR
    x = sum(a * np.sin(2 * np.pi * (k + 1) * f0 * t) for k, a in enumerate(amps))
    env = spectral_envelope(0.3 * x, SR, HOP, n_points=257, max_harmonics=8)
    assert env.f0_hz == pytest.approx(f0, rel=2e-3)
    expected = np.log(amps / amps.max())
    np.testing.assert_allclose(env.partials[:5].numpy(), expected, atol=0.05)
    assert float(env.partials[5:].max()) < float(env.partials[:5].min())  # empty above h5
    # the by-frequency curve passes through the same points at k f0
    at_harmonics = SpectralEnvelope.sample(env.harmonic, torch.tensor(f0 * np.arange(1, 6)), SR)
    np.testing.assert_allclose(at_harmonics.numpy(), expected, atol=0.05)


def test_spectral_envelope_corrects_the_octave_below_but_keeps_odd_harmonic_notes():
    from mambakit.dsp.contours import PitchContour, spectral_envelope

    t = np.arange(SR) / SR
    full = sum(np.sin(2 * np.pi * k * 300.0 * t) / k for k in range(1, 9))
    right = f0_contour(0.3 * full, SR, HOP)
    assert float(right.f0_hz.median()) == pytest.approx(300.0, rel=5e-3)
    # the tracker's octave-below error, as if YIN had said 150 Hz throughout
    below = PitchContour(right.f0_hz / 2, right.voiced, right.aperiodicity)
    fixed = spectral_envelope(0.3 * full, SR, HOP, max_harmonics=16, pitch=below)
    truth = spectral_envelope(0.3 * full, SR, HOP, max_harmonics=16, pitch=right)
    assert fixed.f0_hz == pytest.approx(truth.f0_hz) and truth.f0_hz == pytest.approx(300, rel=5e-3)
    torch.testing.assert_close(fixed.partials, truth.partials)
    # a clarinet-like note (odd harmonics only) at its own pitch is not "corrected"
    odd = sum(np.sin(2 * np.pi * k * 300.0 * t) / k for k in (1, 3, 5, 7))
    env = spectral_envelope(0.3 * odd, SR, HOP, max_harmonics=16, pitch=right)
    assert env.f0_hz == pytest.approx(truth.f0_hz)
    assert float(env.partials[1]) < float(env.partials[2]) - 2.0  # its h2 is empty
