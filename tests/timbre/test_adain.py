import pytest
import torch

from mambakit.timbre.adain import adain, time_statistics


def test_output_statistics_equal_the_styles_over_time_for_different_lengths():
    torch.manual_seed(0)
    content = torch.randn(2, 5, 300) * 0.3 + 1.0
    style = torch.randn(2, 5, 77) * torch.linspace(0.5, 3, 5)[None, :, None] - 2.0
    out = adain(content, style)
    assert out.shape == content.shape
    out_mean, out_std = time_statistics(out)
    style_mean, style_std = time_statistics(style)
    torch.testing.assert_close(out_mean, style_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_std, style_std, atol=1e-4, rtol=1e-4)
    # per channel: the channels got different statistics, not one pooled over channels
    assert out_std[0, :, 0].std() > 0.5


def test_normalised_shape_of_content_is_kept():
    torch.manual_seed(1)
    content = torch.randn(1, 3, 200)
    out = adain(content, torch.randn(1, 3, 50) * 4 + 1)
    # AdaIN is a per-channel affine map of the content: correlation over time is 1
    for c in range(3):
        r = torch.corrcoef(torch.stack([content[0, c], out[0, c]]))[0, 1]
        assert r > 0.9999


def test_alpha_zero_is_identity_and_alpha_interpolates():
    torch.manual_seed(2)
    content, style = torch.randn(2, 4, 64), torch.randn(2, 4, 33) * 5
    assert torch.equal(adain(content, style, alpha=0.0), content)
    full = adain(content, style, alpha=1.0)
    half = adain(content, style, alpha=0.5)
    torch.testing.assert_close(half, 0.5 * full + 0.5 * content)
    per_item = adain(content, style, alpha=torch.tensor([0.0, 1.0]).view(2, 1, 1))
    torch.testing.assert_close(per_item[0], content[0])
    torch.testing.assert_close(per_item[1], full[1])


def test_precomputed_statistics_match_and_mismatch_is_an_error():
    content, style = torch.randn(1, 4, 64), torch.randn(1, 4, 10)
    torch.testing.assert_close(adain(content, time_statistics(style)), adain(content, style))
    with pytest.raises(ValueError, match="channels"):
        adain(content, torch.randn(1, 3, 10))
