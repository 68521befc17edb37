"""mambakit.dsp.spectral: STFT / mel against direct computations, losses and gradients."""

import math

import numpy as np
import pytest
import torch

from mambakit.dsp import MelLoss, MultiResolutionSTFTLoss, mel_spectrogram, stft
from mambakit.dsp.spectral import mel_filterbank

SR = 16000


def _htk_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)


def test_stft_matches_direct_dft():
    n_fft, hop = 64, 16
    x = torch.randn(2, 256, dtype=torch.float64)
    spec = stft(x, n_fft, hop)  # [B, F, frames]
    padded = np.pad(x.numpy(), ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")  # center
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann, as torch.hann_window
    for frame in (0, 5, spec.shape[-1] - 1):
        seg = padded[:, frame * hop : frame * hop + n_fft] * window
        assert np.allclose(spec[:, :, frame].numpy(), np.fft.rfft(seg, axis=-1), atol=1e-9)
    with pytest.raises(ValueError, match="unknown window"):
        stft(x, n_fft, hop, window="kaiser")


def test_mel_filterbank_rows_peak_at_their_centre_bins():
    n_fft, n_mels, f_min, f_max = 1024, 40, 50.0, 7000.0
    fb = mel_filterbank(SR, n_fft, n_mels, f_min, f_max).numpy()
    assert fb.shape == (n_mels, n_fft // 2 + 1) and (fb >= 0).all()
    mel_pts = np.linspace(_htk_mel(f_min), _htk_mel(f_max), n_mels + 2)
    hz = 700.0 * (10 ** (mel_pts / 2595.0) - 1)
    bin_hz = SR / n_fft
    peak_bins = fb.argmax(axis=1)
    # the maximum sits on one of the two FFT bins around the triangle's centre frequency
    assert (np.abs(peak_bins * bin_hz - hz[1:-1]) <= bin_hz).all()
    assert (np.diff(peak_bins) >= 0).all()
    # support: zero outside (f_lo, f_hi) of each triangle (up to round-off at an edge)
    freqs = np.arange(n_fft // 2 + 1) * bin_hz
    for m in range(n_mels):
        outside = (freqs <= hz[m]) | (freqs >= hz[m + 2])
        assert (fb[m, outside] < 1e-12).all()
    # Slaney normalisation: the triangle of height 2/(f_hi-f_lo) has unit area in Hz
    wide = mel_filterbank(SR, 8192, 10).numpy()  # fine bins make the Riemann sum accurate
    areas = wide.sum(axis=1) * SR / 8192
    assert np.allclose(areas, 1.0, atol=0.02)


@pytest.mark.parametrize("shape", [(2, 1, 4000), (2, 4000)])
def test_mel_spectrogram_matches_direct_computation(shape):
    n_fft, hop, n_mels = 512, 128, 32
    x = torch.randn(*shape, dtype=torch.float64)
    mel = mel_spectrogram(x.float(), SR, n_fft=n_fft, hop_length=hop, n_mels=n_mels)
    flat = x.reshape(shape[0], -1).numpy()
    padded = np.pad(flat, ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
    window = np.hanning(n_fft + 1)[:-1]
    n_frames = 1 + flat.shape[-1] // hop
    frames = np.stack([padded[:, i * hop : i * hop + n_fft] for i in range(n_frames)], axis=-1)
    mag = np.abs(np.fft.rfft(frames * window[None, :, None], axis=1))  # [B, F, frames]
    fb = mel_filterbank(SR, n_fft, n_mels).double().numpy()
    ref = np.log(np.einsum("mf,bft->bmt", fb, mag) + 1e-5)
    assert mel.shape == (shape[0], n_mels, n_frames)
    assert np.allclose(mel.numpy(), ref, atol=1e-3)
    lin = mel_spectrogram(x.float(), SR, n_fft=n_fft, hop_length=hop, n_mels=n_mels, log=False)
    assert torch.allclose(torch.log(lin + 1e-5), mel, atol=1e-5)


def test_mel_spectrogram_tone_lands_in_its_band():
    n_fft, n_mels = 1024, 64
    t = torch.arange(SR // 4) / SR
    for f0 in (300.0, 1200.0, 5000.0):
        mel = mel_spectrogram(torch.sin(2 * math.pi * f0 * t)[None], SR, n_fft, 256, n_mels)
        mel_pts = np.linspace(0, _htk_mel(SR / 2), n_mels + 2)
        expected = int(np.argmin(np.abs(mel_pts[1:-1] - _htk_mel(f0))))
        assert abs(int(mel[0, :, 4:-4].mean(-1).argmax()) - expected) <= 1


def test_mel_spectrogram_rejects_multichannel():
    with pytest.raises(ValueError, match="mono"):
        mel_spectrogram(torch.randn(1, 2, 1000), SR)


def test_mel_loss_zero_on_equal_and_gradient_flows():
    loss = MelLoss(SR, n_fft=256, hop_length=64, n_mels=20)
    target = torch.randn(2, 1, 2048)
    assert float(loss(target, target)) == 0.0
    pred = (target + 0.1 * torch.randn_like(target)).requires_grad_(True)
    value = loss(pred, target)
    value.backward()
    assert value > 0 and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    # a small step against the gradient lowers the loss (the gradient is the true one)
    with torch.no_grad():
        stepped = loss(pred - 1e-2 * pred.grad / pred.grad.norm(), target)
    assert stepped < value


def test_mrstft_loss_zero_on_equal_and_gradient_flows():
    loss = MultiResolutionSTFTLoss(fft_sizes=(64, 128), hop_sizes=(16, 32), win_lengths=(64, 96))
    target = torch.randn(1, 1, 2048)
    assert float(loss(target, target)) < 1e-6
    pred = torch.randn(1, 2048, requires_grad=True)
    value = loss(pred, target)
    value.backward()
    assert value > 0 and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="equal lengths"):
        MultiResolutionSTFTLoss(fft_sizes=(64, 128), hop_sizes=(16,))


def test_mel_loss_takes_the_spectrogram_options_and_refuses_unknown_ones():
    audio = torch.randn(1, 1, 2048)
    loss = MelLoss(SR, n_fft=256, hop_length=64, n_mels=20)
    mel = mel_spectrogram(audio, SR, n_fft=256, hop_length=64, n_mels=20)
    assert float(loss(audio, torch.zeros_like(audio))) == pytest.approx(
        float((mel - math.log(1e-5)).abs().mean()), rel=1e-6
    )
    with pytest.raises(TypeError, match="n_bins"):
        MelLoss(SR, n_bins=20)
    with pytest.raises(TypeError, match="log-mel"):
        MelLoss(SR, log=False)
