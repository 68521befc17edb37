"""MusicLM: parameter-matched presets, causality, checkpoints."""

import pytest
import torch

from mambakit.lm.model import MusicLM, _count_on_meta, count_parameters, preset
from mambakit.ssm import KINDS

TINY_CODEC = {"n_codebooks": 4, "codebook_size": 32}


def _backbone_count(config) -> int:
    with torch.device("meta"):
        return count_parameters(MusicLM(config).backbone)


@pytest.mark.parametrize("scale", ["tiny", "small", "base"])
def test_presets_are_parameter_matched_within_5_percent(scale: str) -> None:
    counts = {kind: _count_on_meta(preset(kind, scale)) for kind in KINDS}
    reference = counts["transformer"]
    for kind, n in counts.items():
        assert abs(n - reference) / reference < 0.05, (kind, n, reference)
    # the backbones alone (without the shared embeddings and heads) match too ...
    cores = {kind: _backbone_count(preset(kind, scale)) for kind in KINDS}
    for kind, n in cores.items():
        assert abs(n - cores["transformer"]) / cores["transformer"] < 0.05, (kind, n)
    # ... and the matching is not vacuous: with the transformer's MLP they would differ
    unmatched = _backbone_count(preset("mamba", scale, mlp_ratio=4.0))
    assert abs(unmatched - cores["transformer"]) / cores["transformer"] > 0.05


def test_meta_count_equals_real_count() -> None:
    config = preset("hybrid", "tiny", **TINY_CODEC)
    assert _count_on_meta(config) == count_parameters(MusicLM(config))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pattern", ["delay", "flat"])
def test_logits_are_causal(kind: str, pattern: str) -> None:
    torch.manual_seed(0)
    model = MusicLM(preset(kind, "tiny", pattern=pattern, **TINY_CODEC)).eval()
    tokens = model.pattern.build(torch.randint(0, 32, (1, 4, 6)))
    changed = tokens.clone()
    s = tokens.shape[-1] // 2
    changed[:, :, s:] = model.pattern.build(torch.randint(0, 32, (1, 4, 6)))[:, :, s:]
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    # logits for steps <= s see only tokens < s + 1 ... those up to s must be identical
    assert torch.allclose(a[:, :, : s + 1], b[:, :, : s + 1], atol=1e-5)
    assert not torch.allclose(a[:, :, s + 1 :], b[:, :, s + 1 :], atol=1e-5)


def test_loss_ignores_pad_and_label_smoothing_only_raises_it(tmp_path) -> None:
    torch.manual_seed(0)
    model = MusicLM(preset("mamba2", "tiny", **TINY_CODEC))
    tokens = model.pattern.build(torch.randint(0, 32, (2, 4, 5)))
    loss, per_stream = model.loss(tokens)
    assert per_stream.shape == (4,)
    # PAD positions are excluded: the mean over code positions equals the loss
    assert torch.isclose(loss, per_stream.mean(), atol=1e-5)  # each stream has T codes
    smoothed, _ = model.loss(tokens, label_smoothing=0.1)
    assert not torch.isclose(loss, smoothed)

    model.save_pretrained(tmp_path)
    loaded = MusicLM.from_pretrained(tmp_path)
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.allclose(loaded(tokens), model.eval()(tokens))
