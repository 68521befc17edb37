import math

import pytest
import torch

from mambakit.dsp.harmonic import (
    HarmonicNoiseSynth,
    filtered_noise,
    harmonic_synth,
    noise_fir,
    nyquist_mask,
    upsample_frames,
)

SR, HOP = 16000, 64


def _magnitude_db(audio, freq):
    """Level of ``freq`` in the Hann-windowed spectrum of ``audio`` ``[N]``, dB re its peak."""
    window = torch.hann_window(len(audio), dtype=torch.float64)
    spec = torch.fft.rfft(audio.double() * window).abs()
    bin_ = round(freq * len(audio) / SR)
    return float(20 * torch.log10(spec[bin_ - 2 : bin_ + 3].max() / spec.max()))


def test_one_harmonic_is_a_sine_at_f0():
    frames = 51
    amps = torch.zeros(1, frames, 8)
    amps[..., 0] = 0.5
    f0 = torch.full((1, frames), 440.0)
    audio, phase = harmonic_synth(amps, f0, SR, HOP)
    n = torch.arange((frames - 1) * HOP, dtype=torch.float64)
    expected = 0.5 * torch.sin(2 * math.pi * 440.0 * n / SR)
    assert audio.shape == (1, (frames - 1) * HOP)
    torch.testing.assert_close(audio[0].double(), expected, atol=2e-5, rtol=0)
    assert float(phase[0]) == pytest.approx((440.0 * (frames - 1) * HOP / SR) % 1.0, abs=1e-9)


def test_harmonic_k_is_at_k_f0_with_its_amplitude():
    frames = 41
    amps = torch.zeros(1, frames, 4)
    amps[..., 2] = 0.25  # harmonic 3
    f0 = torch.full((1, frames), 300.0)
    audio, _ = harmonic_synth(amps, f0, SR, HOP)
    n = torch.arange((frames - 1) * HOP, dtype=torch.float64)
    torch.testing.assert_close(
        audio[0].double(), 0.25 * torch.sin(2 * math.pi * 900.0 * n / SR), atol=2e-5, rtol=0
    )


def test_no_partial_at_or_above_nyquist():
    # f0 2500 Hz: partials 2500, 5000, 7500 Hz are kept; 10000 Hz would alias to 6000 Hz
    frames = 257
    amps = torch.ones(1, frames, 16)
    audio, _ = harmonic_synth(amps, torch.full((1, frames), 2500.0), SR, HOP)
    for kept in (2500, 5000, 7500):
        assert _magnitude_db(audio[0], kept) > -1.0
    for alias in (6000, 3500, 1000):  # where 10, 12.5, 15 kHz would fold to
        assert _magnitude_db(audio[0], alias) < -100.0
    # exactly at Nyquist (f0 4 kHz, harmonic 2) is excluded as well
    assert nyquist_mask(torch.tensor([4000.0, 3999.0]), 2, SR).tolist() == [[1, 0], [1, 1]]


def test_gliding_f0_keeps_every_partial_below_nyquist():
    frames = 129
    f0 = torch.linspace(1000.0, 3000.0, frames)[None]
    audio, _ = harmonic_synth(torch.ones(1, frames, 16), f0, SR, HOP)
    # the same glide rendered with only the partials that stay below Nyquist throughout
    # the segment they are in: reference by the per-sample closed form
    f0_n = upsample_frames(f0[..., None].double(), HOP)[0, :, 0]
    cycles = torch.cumsum(f0_n / SR, 0) - f0_n / SR
    seg_max = torch.maximum(f0[0, :-1], f0[0, 1:]).double().repeat_interleave(HOP)
    k = torch.arange(1, 17, dtype=torch.float64)
    keep = (k * seg_max[:, None]) < SR / 2
    expected = (torch.sin(2 * math.pi * k * cycles[:, None]) * keep).sum(1)
    torch.testing.assert_close(audio[0].double(), expected, atol=2e-3, rtol=0)


def test_silence_at_zero_amplitude():
    synth = HarmonicNoiseSynth(SR, HOP, n_noise_bands=9)
    frames = 20
    audio, _ = synth(torch.zeros(2, frames, 8), torch.full((2, frames), 220.0),
                     torch.zeros(2, frames, 9))  # fmt: skip
    assert audio.shape == (2, (frames - 1) * HOP) and float(audio.abs().max()) == 0.0


def test_flat_noise_filter_is_a_delayed_scaled_copy():
    m = 9
    taps = 2 * (m - 1)
    fir = noise_fir(torch.full((m,), 0.3))
    centre = torch.hann_window(taps, periodic=False)[taps // 2]
    expected = torch.zeros(taps)
    expected[taps // 2] = 0.3 * centre
    torch.testing.assert_close(fir, expected, atol=1e-6, rtol=0)
    frames = 6
    noise = torch.randn(1, (frames - 1) * HOP + taps - 1)
    out = filtered_noise(torch.full((1, frames, m), 0.3), noise, HOP)
    # y(n) = sum_l h[l] u(n - l) with u(n) = noise[n + taps - 1], h = 0.3 c delta(l - taps/2)
    delayed = noise[0, taps - 1 - taps // 2 : taps - 1 - taps // 2 + (frames - 1) * HOP]
    torch.testing.assert_close(out[0], 0.3 * centre * delayed, atol=1e-5, rtol=0)


def test_pieces_concatenate_to_the_one_pass_rendering():
    torch.manual_seed(0)
    synth = HarmonicNoiseSynth(SR, HOP, n_noise_bands=9)
    frames = 30
    amps, noise = torch.rand(1, frames, 8), torch.rand(1, frames, 9) * 0.1
    f0 = torch.linspace(200.0, 500.0, frames)[None]
    whole, _ = synth(amps, f0, noise)
    first, state = synth(amps[:, :11], f0[:, :11], noise[:, :11])
    second, _ = synth(amps[:, 10:], f0[:, 10:], noise[:, 10:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, atol=1e-5, rtol=0)


def test_gradient_reaches_amplitudes_and_noise():
    synth = HarmonicNoiseSynth(SR, HOP, n_noise_bands=5)
    amps = torch.rand(1, 6, 4, requires_grad=True)
    noise = torch.rand(1, 6, 5, requires_grad=True)
    audio, _ = synth(amps, torch.full((1, 6), 330.0), noise)
    audio.pow(2).sum().backward()
    assert amps.grad.abs().sum() > 0 and noise.grad.abs().sum() > 0


@pytest.mark.parametrize("f0_range", [(40.0, 120.0), (100.0, 2000.0)])
def test_recurrence_synth_matches_its_sin_twin(f0_range):
    g = torch.Generator().manual_seed(0)
    frames = 40
    lo, hi = math.log(f0_range[0]), math.log(f0_range[1])
    f0 = torch.exp(torch.rand(2, frames, generator=g) * (hi - lo) + lo)
    amps = torch.rand(2, frames, 64, generator=g, requires_grad=True)
    phase = torch.tensor([0.25, 0.7], dtype=torch.float64)
    fast, end_fast = harmonic_synth(amps, f0, SR, HOP, phase)
    ref, end_ref = harmonic_synth(amps, f0, SR, HOP, phase, method="sin")
    # 64 sines of amplitude <= 1: their sum reaches tens; rounding stays near 1e-5 of it
    torch.testing.assert_close(fast, ref, atol=2e-3, rtol=0)
    assert torch.equal(end_fast, end_ref)
    weights = torch.randn(fast.shape, generator=g)
    (grad_fast,) = torch.autograd.grad((fast * weights).sum(), amps)
    (grad_ref,) = torch.autograd.grad((ref * weights).sum(), amps)
    torch.testing.assert_close(grad_fast, grad_ref, atol=2e-3, rtol=1e-4)


def test_unknown_sine_method_is_refused():
    with pytest.raises(ValueError, match="unknown method 'fft'"):
        harmonic_synth(torch.ones(1, 3, 2), torch.full((1, 3), 100.0), SR, HOP, method="fft")
