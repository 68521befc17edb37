"""mambakit.dsp.anchor (equation 1) and mambakit.dsp.bands (LogBands)."""

import math

import numpy as np
import pytest
import scipy.signal
import torch

from mambakit.dsp import log_bands, pitch_env_curve, resample_curve, sine_anchor

SR = 16000


def test_batched_sine_anchor_equals_per_item_calls():
    n = 2000
    notes = torch.tensor([0, 9, 4])
    octaves = torch.tensor([3, 4, 2])
    envs = torch.stack([pitch_env_curve(d, 0.02, n, SR) for d in (12.0, 0.0, -5.0)])  # [B, T]
    batched = sine_anchor(notes, octaves, envs, SR)
    assert batched.shape == (3, n) and batched.dtype == torch.float32
    for i in range(3):
        single = sine_anchor(int(notes[i]), int(octaves[i]), envs[i], SR)
        assert torch.equal(batched[i], single)
    # one shared [T] envelope broadcasts over the batch of notes
    shared = sine_anchor(notes, octaves, envs[0], SR)
    for i in range(3):
        assert torch.equal(shared[i], sine_anchor(int(notes[i]), int(octaves[i]), envs[0], SR))


def test_sine_anchor_instantaneous_frequency_follows_equation_1():
    n = SR // 2
    note, octave = 9, 3  # A3 = MIDI 45 = 110 Hz
    env = pitch_env_curve(12.0, 0.05, n, SR).double()
    x = sine_anchor(note, octave, env, SR).double().numpy()
    expected_hz = 440.0 * 2 ** ((env.numpy() + 12 * octave + note - 69) / 12)  # eq. 1
    phase = np.unwrap(np.angle(scipy.signal.hilbert(x)))
    # instantaneous frequency as the phase advance over 20 ms windows (the sample-wise
    # derivative of a float32 signal's analytic phase ripples by ~1 %), vs the mean of f
    w = SR // 50
    starts = np.arange(SR // 20, n - SR // 20 - w, w)  # away from the clip edges
    inst_hz = (phase[starts + w] - phase[starts]) * SR / (2 * np.pi * w)
    true_hz = np.array([expected_hz[i + 1 : i + w + 1].mean() for i in starts])
    assert np.abs(inst_hz / true_hz - 1).max() < 0.005  # 9 cents; a semitone is 6 %
    assert inst_hz[0] > 1.2 * inst_hz[-1]  # the windows really saw the sweep
    # and sample-exact at the start: phi(0) = phase0 + 2 pi f(0) / fs (phase accumulation)
    y = sine_anchor(note, octave, env, SR, phase0=0.3)
    assert float(y[0]) == pytest.approx(math.sin(0.3 + 2 * math.pi * expected_hz[0] / SR), 1e-6)


def test_sine_anchor_flat_pitch_and_errors():
    x = sine_anchor(0, 5, None, SR, n_samples=SR // 4)  # C5 = MIDI 60 = 261.63 Hz
    spec = np.abs(np.fft.rfft(x.numpy()))
    assert abs(np.argmax(spec) * 4 - 261.63) <= 4  # 4 Hz bins
    with pytest.raises(ValueError, match="n_samples is required"):
        sine_anchor(0, 5, None, SR)
    with pytest.raises(ValueError, match="n_samples"):
        sine_anchor(0, 5, torch.zeros(100), SR, n_samples=200)


def test_pitch_env_curve_and_resample_curve():
    p = pitch_env_curve(12.0, 0.01, SR, SR)
    assert float(p[0]) == 12.0 and float(p[160]) == pytest.approx(12 / math.e, rel=1e-5)
    assert torch.equal(pitch_env_curve(12.0, 0.0, 10, SR), torch.zeros(10))
    # linear between control points at 250 Hz, held after the last one
    curve = resample_curve(np.array([0.0, 1.0, 3.0]), 250.0, 200, SR)
    assert float(curve[32]) == pytest.approx(0.5) and float(curve[96]) == pytest.approx(2.0)
    assert (curve[128:] == 3.0).all()
    assert torch.equal(resample_curve(np.zeros(0), 250.0, 5, SR), torch.zeros(5))


@pytest.mark.parametrize("n", [44100, 12345])
def test_bands_round_trip_and_shapes(n):
    bands = log_bands(44100)
    x = torch.randn(2, 1, n)
    parts = bands.split(x)
    assert len(parts) == len(bands) == 10  # 9 octaves + residual
    for band, part in zip(bands.bands, parts):
        assert part.shape == (2, 1, -(-n // band.factor)) and band.rate == 44100 / band.factor
    assert (bands.merge(parts) - x).abs().max() < 1e-4
    with pytest.raises(ValueError, match="expected 10 bands"):
        bands.merge(parts[:-1])


def test_bands_are_differentiable():
    bands = log_bands(44100)
    x = torch.randn(1, 1, 4096, requires_grad=True)
    sum(p.pow(2).sum() for p in bands.split(x)[2:5]).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_each_band_holds_the_tones_in_its_range():
    sr = 44100
    bands = log_bands(sr)
    n = sr // 2
    t = torch.arange(n, dtype=torch.float64) / sr
    for k, band in enumerate(bands.bands):
        f_lo = band.f_lo if band.f_lo > 0 else band.f_hi / 2  # residual: an octave below
        f0 = math.sqrt(f_lo * band.f_hi)  # the band's geometric centre
        x = torch.sin(2 * math.pi * f0 * t).float()[None, None]
        parts = bands.split(x)
        # energy at full rate: a band kept at sr / factor holds 1 / factor of the samples
        energy = np.array([float(p.pow(2).sum()) * b.factor for p, b in zip(parts, bands.bands)])
        share = energy / energy.sum()
        assert int(np.argmax(share)) == k, (k, f0, share.round(3))
        assert share[max(0, k - 1) : k + 2].sum() > 0.95, (k, f0, share.round(3))
        # the decimated band still carries the tone at its own frequency (no aliasing)
        spec = np.abs(np.fft.rfft(parts[k][0, 0].double().numpy()))
        peak_hz = np.argmax(spec) * band.rate / parts[k].shape[-1]
        assert abs(peak_hz - f0) <= 2 * band.rate / parts[k].shape[-1]


def test_merge_keeps_each_output_in_its_own_band():
    """A model's band output that strays outside its band (e.g. a 689 Hz tone in the top
    band's slot) is dropped by ``merge``; the same tone in its own band's slot passes."""
    sr, n = 44100, 44100
    bands = log_bands(sr)
    t = torch.arange(n, dtype=torch.float64) / sr
    tone = torch.sin(2 * math.pi * 689.0625 * t).float()[None, None]  # band 4 holds 689-1378
    home = next(k for k, b in enumerate(bands.bands) if b.f_lo < 900 < b.f_hi)

    def merged_with_tone_in(k):
        parts = [torch.zeros(1, 1, -(-n // b.factor)) for b in bands.bands]
        parts[k] = torch.nn.functional.interpolate(tone, size=parts[k].shape[-1], mode="linear")
        return float(bands.merge(parts).pow(2).mean())

    assert merged_with_tone_in(0) < 1e-4 * float(tone.pow(2).mean())  # top band: 11-22 kHz
    assert merged_with_tone_in(home) > 0.1 * float(tone.pow(2).mean())


@pytest.mark.parametrize("n", [4096, 1001, 513])
def test_split_and_merge_gradients_equal_autograd_through_their_ops(n):
    # split's backward is merge and merge's is split (adjoint pairs); the reference is
    # autograd through the FFT ops themselves (LogBands._split / _merge)
    bands = log_bands(44100)
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(2, 3, n, generator=gen, dtype=torch.float64, requires_grad=True)
    parts, ref = bands.split(x), bands._split(x)
    weights = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in parts]
    for fast, slow in zip(parts, ref):
        torch.testing.assert_close(fast, slow)
    grads = [torch.autograd.grad(sum((p * w).sum() for p, w in zip(ps, weights)), x)[0]
             for ps in (parts, ref)]  # fmt: skip
    torch.testing.assert_close(*grads)
    leaves = [p.detach().requires_grad_(True) for p in parts]
    merged, merged_ref = bands.merge(leaves), bands._merge(leaves, n)
    torch.testing.assert_close(merged, merged_ref)
    w = torch.randn(merged.shape, generator=gen, dtype=torch.float64)
    for a, b in zip(*(torch.autograd.grad((m * w).sum(), leaves) for m in (merged, merged_ref))):
        torch.testing.assert_close(a, b)
