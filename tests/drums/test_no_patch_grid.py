"""The drum model's synthesis carries no trace of its token grid (issue 14, the 689 Hz comb).

A transposed convolution of stride ``patch`` (the old band decoder) put lines at
multiples of the token rate into every clip, trained or not (a fresh tiny model: +48 dB);
linear interpolation of the parser tokens still left +28 dB through the head's
nonlinearity. These tests fail if either comes back.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mambakit.drums.config import DrumConfig
from mambakit.drums.model import DrumDiffusionModel, smooth_downsample, smooth_upsample
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


def test_decimation_keeps_tones_near_the_token_rate_out_of_the_tokens():
    factor, n = 16, 4096
    t = torch.arange(n, dtype=torch.float64)
    for cycles_per_sample in (1 / factor - 0.005, 1 / factor + 0.003, 3 / factor + 0.01):
        tone = torch.sin(2 * torch.pi * cycles_per_sample * t).view(1, 1, n)
        assert smooth_downsample(tone, factor)[..., 5:-5].abs().max() < 1e-4
        strided = tone.view(1, 1, -1, factor).mean(-1)  # what a strided patch encoder sees
        assert strided.abs().max() > 0.02  # ... the folded tone, 0.05-0.9 of it
    assert torch.allclose(smooth_downsample(torch.ones(1, 1, 100), 8), torch.ones(1, 1, 13))


@pytest.mark.parametrize("note", [48, 90, 110])  # 131 Hz; 1480 and 4186 Hz fold in patches
def test_a_fresh_model_prints_no_lines_at_the_token_rate(note):
    torch.manual_seed(0)
    cfg = DrumConfig.tiny().with_(seconds=0.5)
    synth = DrumSynth(DrumDiffusionModel(cfg))
    audio, sr = synth.generate(tag="tom", note=note, n=3, seed=0)
    line_hz = sr / 64  # every band path's token rate, and the parser's
    combs = [comb_level_db(clip[0].numpy(), sr, line_hz=line_hz) for clip in audio]
    # real one-shots: 0 +- 3 dB; the patch decoder: +48 dB; a smooth decoder behind a
    # strided encoder: +4 dB on the high notes
    assert np.median(combs) < 2.0


@pytest.mark.parametrize("factor,n", [(8, 101), (64, 700), (2, 5)])
def test_smooth_downsample_is_the_strided_gaussian_convolution(factor, n):
    # the reference: one conv1d with the (2R + 1) * factor Gaussian taps, stride factor,
    # normalised by the same convolution of ones (the weights inside the clip)
    gen = torch.Generator().manual_seed(factor)
    x = torch.randn(2, 3, n, generator=gen, dtype=torch.float64, requires_grad=True)
    n_tok, sigma = -(-n // factor), float(factor)
    reach = int(math.ceil(3 * sigma / factor)) + 1
    offsets = torch.arange((2 * reach + 1) * factor, dtype=torch.float64)
    taps = torch.exp(-0.5 * ((offsets - (2 * reach + 1) * factor / 2 + 0.5) / sigma) ** 2)
    pad = (reach * factor, reach * factor + n_tok * factor - n)

    def pool(y):
        return F.conv1d(F.pad(y, pad), taps.view(1, 1, -1), stride=factor)

    ref = pool(x.reshape(6, 1, n)).reshape(2, 3, n_tok) / pool(torch.ones_like(x[:1, :1]))
    out = smooth_downsample(x, factor)
    torch.testing.assert_close(out, ref)
    w = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    grad, grad_ref = (torch.autograd.grad((t * w).sum(), x)[0] for t in (out, ref))
    torch.testing.assert_close(grad, grad_ref)


@pytest.mark.parametrize("factor,n_tok,n", [(64, 11, 700), (8, 13, 101), (2, 3, 5), (4, 2, 8)])
def test_smooth_resampling_matches_its_reference_in_values_and_gradients(factor, n_tok, n):
    # the fast pair computes each backward with the other's kernel; the twins are the
    # plain ops under autograd
    from mambakit.drums.model import smooth_downsample_ref, smooth_upsample_ref

    gen = torch.Generator().manual_seed(n)
    tokens = torch.randn(2, 3, n_tok, generator=gen, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 3, n, generator=gen, dtype=torch.float64, requires_grad=True)
    for fast, ref, inp in [
        (smooth_upsample(tokens, factor, n), smooth_upsample_ref(tokens, factor, n), tokens),
        (smooth_downsample(x, factor), smooth_downsample_ref(x, factor), x),
    ]:
        torch.testing.assert_close(fast, ref)
        w = torch.randn(fast.shape, generator=gen, dtype=torch.float64)
        grad, grad_ref = (torch.autograd.grad((t * w).sum(), inp)[0] for t in (fast, ref))
        torch.testing.assert_close(grad, grad_ref)
