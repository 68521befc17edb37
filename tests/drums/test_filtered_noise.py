"""The filtered-noise excitation of the drum head: a learned spectral envelope on seeded noise."""

import math

import numpy as np
import pytest
import torch

from mambakit.drums.config import DrumConfig
from mambakit.drums.model import DrumDiffusionModel, filtered_noise

SR = 8000


def test_flat_gains_return_the_noise_and_scale_linearly():
    noise = torch.randn(2, 1, 4000, generator=torch.Generator().manual_seed(0))
    ones = torch.ones(2, 16)
    assert torch.allclose(filtered_noise(noise, ones, SR, f_min=40.0), noise, atol=1e-5)
    assert torch.allclose(filtered_noise(noise, 0.5 * ones, SR, f_min=40.0), 0.5 * noise, atol=1e-5)


def test_one_point_of_the_envelope_puts_the_energy_at_its_frequency():
    k, point = 16, 9
    centres = np.exp(np.linspace(math.log(40.0), math.log(SR / 2), k))
    gains = torch.zeros(1, k)
    gains[0, point] = 1.0
    noise = torch.randn(1, 1, 16000, generator=torch.Generator().manual_seed(1))
    out = filtered_noise(noise, gains, SR, f_min=40.0)[0, 0].double().numpy()
    power = np.abs(np.fft.rfft(out)) ** 2
    freqs = np.fft.rfftfreq(out.size, 1 / SR)
    centroid = (power * freqs).sum() / power.sum()
    # a triangle in log-frequency between the neighbouring points: centred near its point
    assert centres[point - 1] < centroid < centres[point + 1]
    assert power[
        (freqs < centres[point - 1]) | (freqs > centres[point + 1])
    ].sum() == pytest.approx(0.0, abs=1e-6 * power.sum())


def test_the_per_tag_table_changes_only_that_tags_output():
    cfg = DrumConfig.tiny().with_(seconds=0.05, envelope_gate=False)
    model = DrumDiffusionModel(cfg).eval()
    n = cfg.n_samples
    with torch.no_grad():
        model.noise_gain_tag.weight[1].fill_(0.5)  # tag 1 gets a flat noise floor
    args = dict(
        sine=torch.zeros(2, 1, n), envelope=torch.ones(2, 1, n), t=torch.full((2,), 500.0),
        adsr=torch.tensor([[0.002, 0.2, 0.0, 0.05, 0.0]] * 2),
        pitch_class=torch.zeros(2, dtype=torch.long),
        octave=torch.full((2,), 3), tag=torch.tensor([0, 1]),
    )  # fmt: skip
    x = torch.randn(2, 1, n, generator=torch.Generator().manual_seed(2))
    excitation = torch.randn(2, 1, n, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        plain, _ = model(x, **args)
        noisy, _ = model(x, **args, excitation=excitation)
    assert torch.allclose(noisy[0], plain[0], atol=1e-6)  # tag 0: all gains still zero
    assert torch.allclose(noisy[1] - plain[1], 0.5 * excitation[1], atol=1e-4)


def test_the_sign_of_a_gain_is_inaudible_no_notch_between_opposite_signs():
    noise = torch.randn(1, 1, 8000, generator=torch.Generator().manual_seed(1))
    alternating = torch.tensor([[(-1.0) ** i for i in range(16)]])
    out = filtered_noise(noise, alternating, SR, f_min=40.0)
    assert torch.allclose(out, filtered_noise(noise, alternating.abs(), SR, f_min=40.0))
    assert torch.allclose(out, noise, atol=1e-5)  # |gains| = 1 everywhere: flat, no notches
