"""The drum model's synthesis carries no trace of its token grid (issue 14, the 689 Hz comb).

A transposed convolution of stride ``patch`` (the old band decoder) put lines at
multiples of the token rate into every clip, trained or not (a fresh tiny model: +48 dB);
linear interpolation of the parser tokens still left +28 dB through the head's
nonlinearity. These tests fail if either comes back.
"""

import numpy as np
import pytest
import torch

from mambakit.drums.config import DrumConfig
from mambakit.drums.model import DrumDiffusionModel, smooth_upsample
from mambakit.drums.pipeline import DrumSynth
from mambakit.eval.features import comb_level_db


@pytest.mark.parametrize("factor", [2, 8, 64])
def test_constant_tokens_upsample_to_an_exact_constant_edges_included(factor):
    tokens = torch.full((1, 2, 7), 0.37, dtype=torch.float64)
    curve = smooth_upsample(tokens, factor, 7 * factor - 3)
    assert curve.shape == (1, 2, 7 * factor - 3)
    torch.testing.assert_close(curve, torch.full_like(curve, 0.37), rtol=0, atol=1e-12)


def test_upsampled_random_tokens_have_no_patch_periodic_mean_or_variance():
    factor = 16
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(4000, 1, 12, generator=g, dtype=torch.float64)
    curve = smooth_upsample(tokens, factor, 12 * factor)[..., 4 * factor : 8 * factor]
    # over many draws, level and power as a function of the position inside the patch
    power = curve.pow(2).mean(dim=(0, 1)).reshape(4, factor).mean(0)
    ripple = (power.max() - power.min()) / power.mean()
    assert ripple < 0.05  # linear interpolation: (1 + 0) / (0.5^2 + 0.5^2) -> 67 % ripple
    linear = torch.nn.functional.interpolate(tokens, scale_factor=factor, mode="linear")
    lin_power = linear[..., 4 * factor : 8 * factor].pow(2).mean(dim=(0, 1))
    lin_power = lin_power.reshape(4, factor).mean(0)
    assert (lin_power.max() - lin_power.min()) / lin_power.mean() > 0.5  # the test can fail


def test_smooth_upsample_passes_tokens_through_at_factor_one():
    tokens = torch.randn(2, 3, 10)
    assert torch.equal(smooth_upsample(tokens, 1, 9), tokens[..., :9])


def test_a_fresh_model_prints_no_lines_at_the_token_rate():
    torch.manual_seed(0)
    cfg = DrumConfig.tiny().with_(seconds=0.5)
    synth = DrumSynth(DrumDiffusionModel(cfg))
    audio, sr = synth.generate(tag="snare", n=3, seed=0)
    line_hz = sr / 64  # every band path's token rate, and the parser's
    combs = [comb_level_db(clip[0].numpy(), sr, line_hz=line_hz) for clip in audio]
    assert np.median(combs) < 3.0  # real one-shots: 0 +- 3 dB; the patch decoder: +48 dB
