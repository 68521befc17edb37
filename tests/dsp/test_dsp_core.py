import numpy as np
import pytest
import soundfile as sf
import torch

from mambakit.dsp import (
    ADSR,
    AudioError,
    MultiResolutionSTFTLoss,
    analyze_pitch,
    fit_adsr,
    load_audio,
    log_bands,
    pitch_env_curve,
    render_adsr,
    sine_anchor,
)

SR = 44100


@pytest.mark.parametrize("n", [44100, 12345])
def test_bands_round_trip(n):
    x = torch.randn(2, 1, n)
    assert (log_bands().merge(log_bands().split(x)) - x).abs().max() < 1e-4


@pytest.mark.parametrize(
    "adsr", [ADSR(0.005, 0.2, 0.0, 0.1), ADSR(0.02, 0.15, 0.0, 0.1), ADSR(0.01, 0.1, 0.5, 0.2, 0.2)]
)
def test_fit_adsr_recovers(adsr):
    fit = fit_adsr(render_adsr(adsr, SR, SR).numpy(), SR)
    assert abs(fit.attack_s - adsr.attack_s) <= 0.1 * adsr.attack_s
    assert abs(fit.decay_s - adsr.decay_s) <= 0.1 * adsr.decay_s
    assert abs(fit.sustain_level - adsr.sustain_level) <= 0.05


@pytest.mark.parametrize("midi", [24, 45, 60, 96])
def test_pitch_exact(midi):
    t = np.arange(SR // 2) / SR
    pa = analyze_pitch(np.sin(2 * np.pi * 440 * 2 ** ((midi - 69) / 12) * t), SR)
    assert pa.midi_note == midi and pa.tonal


def test_kick_sweep_and_noise():
    kick = sine_anchor(9, 4, pitch_env_curve(12, 0.01, SR // 2, SR), SR)
    pa = analyze_pitch(kick.numpy(), SR)
    assert pa.midi_note == 57
    assert pa.pitch_env[0] > 6 and abs(pa.pitch_env[-1]) < 0.5
    assert not analyze_pitch(np.random.default_rng(0).standard_normal(SR // 2), SR).tonal


def test_bad_files(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("hello")
    with pytest.raises(AudioError, match="notes.wav"):
        load_audio(bad)
    good = tmp_path / "u8.wav"
    sf.write(good, np.full((100, 2), 0.5), 22050, subtype="PCM_U8")
    x, sr = load_audio(good)
    assert sr == 22050 and x.shape == (2, 100) and abs(float(x.mean()) - 0.5) < 0.01


def test_mrstft_grad():
    x = torch.randn(1, 4096, requires_grad=True)
    MultiResolutionSTFTLoss()(x, torch.randn(1, 4096)).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
