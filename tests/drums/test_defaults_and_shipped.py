"""Tag words, tag-only defaults that ring as long as the library, and the no-run paths
that load the shipped model (a tiny model stands in for it; the real one is tested when
``mambakit/weights/gm-drums`` is there)."""

import json

import numpy as np
import pytest
import torch

import mambakit.pretrained as pretrained
from mambakit.cli import main
from mambakit.drums.conditioning import resolve_tag
from mambakit.drums.config import DrumConfig
from mambakit.drums.model import DrumDiffusionModel
from mambakit.drums.pipeline import DEFAULTS_NAME, DrumSynth, TagDefaults
from mambakit.drums.tags import TAGS
from mambakit.drums.training import decay_matched_adsr, tag_defaults
from mambakit.dsp import ADSR, render_adsr
from mambakit.eval.features import comb_level_db, decay_time_s

SR = 44100


def _tone_under(curve: torch.Tensor, sr: int) -> np.ndarray:
    """A 1 kHz tone under an envelope curve: what the decay measure listens to."""
    return curve.numpy() * np.sin(2 * np.pi * 1000 * np.arange(len(curve)) / sr)


@pytest.mark.parametrize(
    "word, tag",
    [("hihat", "closed_hat"), ("hh", "closed_hat"), ("bd", "kick"), ("sd", "snare"),
     ("crash", "cymbal"), ("ride", "cymbal"), ("open hat", "open_hat"), ("kick", "kick"),
     ("Snares", "snare"), ("rimshot", "rim")],
)  # fmt: skip
def test_folder_words_resolve_to_their_tag(word, tag):
    assert resolve_tag(word, None, TAGS) == tag


def test_an_unknown_word_names_the_tags_and_the_folder_words():
    with pytest.raises(ValueError, match="unknown tag 'banjo'.*kick.*hihat, hh, bd"):
        resolve_tag("banjo", None, TAGS)


@pytest.mark.parametrize("decay_10", [0.05, 0.12, 0.45])
@pytest.mark.parametrize("adsr", [ADSR(0.005, 0.3, 0.0, 0.05), ADSR(0.002, 0.2, 0.15, 1.0)])
def test_decay_matched_adsr_rings_exactly_as_long_as_asked(adsr, decay_10):
    matched = decay_matched_adsr(adsr, decay_10, SR, SR)
    assert decay_time_s(_tone_under(render_adsr(matched, SR, SR), SR), SR) == pytest.approx(
        decay_10, abs=0.01, rel=0.05
    )  # the Hilbert envelope's 5 ms smoothing, on a slow slope where it crosses 10 %
    assert matched.attack_s == adsr.attack_s and matched.sustain_level == adsr.sustain_level


def test_tag_defaults_store_the_library_decay_and_an_envelope_of_that_length(tmp_path):
    from mambakit.drums.data import load_corpus
    from mambakit.drums.procedural import write_corpus

    write_corpus(tmp_path / "c", n_per_tag=3, tags=("kick", "cymbal"), seconds=0.5)
    ds = load_corpus(tmp_path / "c", cache_dir=tmp_path / "cache", workers=0, progress=False)
    defaults = tag_defaults(ds)
    for tag in ("kick", "cymbal"):
        clips = [ds[i]["audio"][0].numpy() for i in range(len(ds)) if ds.tags[i] == tag]
        library = float(np.median([decay_time_s(a, ds.config.sr) for a in clips]))
        assert defaults[tag]["decay_10_s"] == pytest.approx(library)
        curve = render_adsr(ADSR.from_vector(defaults[tag]["adsr"]), len(clips[0]), ds.config.sr)
        made = decay_time_s(_tone_under(curve, ds.config.sr), ds.config.sr)
        assert made == pytest.approx(library, abs=0.006)
    TagDefaults(**defaults["kick"])  # the JSON fields are the dataclass fields


@pytest.fixture
def packaged_tiny(tmp_path, monkeypatch):
    """A tiny untrained model saved as the packaged ``gm-drums`` (in a temporary folder)."""
    torch.manual_seed(0)
    folder = tmp_path / "weights" / "gm-drums"
    DrumDiffusionModel(DrumConfig.tiny().with_(seconds=0.05)).save_pretrained(folder)
    (folder / DEFAULTS_NAME).write_text(json.dumps({"kick": {"midi_note": 30}}))
    monkeypatch.setattr(pretrained, "PACKAGED_DIR", tmp_path / "weights")
    return folder


def test_from_pretrained_without_a_run_loads_the_packaged_model(packaged_tiny):
    synth = DrumSynth.from_pretrained()
    assert synth.config.n_samples == DrumConfig.tiny().with_(seconds=0.05).n_samples
    assert synth.defaults["kick"].midi_note == 30
    a, _ = synth.generate(tag="bd", seed=3)
    b, _ = DrumSynth.from_pretrained("gm-drums").generate(tag="kick", seed=3)
    torch.testing.assert_close(a, b)  # "bd" is a kick, and the same seed the same take


def test_cli_generate_without_a_run_uses_the_packaged_model(packaged_tiny, tmp_path, capsys):
    assert main(["drums", "generate", "--tag", "hh", "-n", "2", "-o", str(tmp_path / "o")]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["hh_seed0.wav", "hh_seed1.wav"]


SHIPPED = pretrained.PACKAGED_DIR / "gm-drums"


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="no shipped model")
def test_the_shipped_model_makes_every_tag_without_lines_at_the_token_rate():
    synth = DrumSynth.from_pretrained()
    assert synth.sample_rate == SR and set(synth.defaults) <= set(TAGS)
    audio, sr = synth.generate(tag="snare", n=2, seed=0)
    assert audio.shape == (2, 1, synth.config.n_samples) and torch.isfinite(audio).all()
    assert np.median([comb_level_db(clip[0].numpy(), sr) for clip in audio]) < 3.0


def test_the_app_opens_with_the_packaged_model_else_the_demo_run(packaged_tiny, monkeypatch):
    from mambakit.app import handlers, ui

    monkeypatch.setattr(handlers, "DEMO_RUN", packaged_tiny.parent / "no-demo-run")
    models = ui.AppModels()
    assert models.status["drums"].startswith("Drum model loaded from gm-drums")
    synth = models.of("drums", {})
    assert synth.config.n_samples == DrumConfig.tiny().with_(seconds=0.05).n_samples
    (packaged_tiny / "config.json").unlink()  # no packaged model left
    assert ui.AppModels().models["drums"] is None


def test_variation_is_per_seed_reproducible_and_independent_of_the_batch(packaged_tiny):
    synth = DrumSynth.from_pretrained()
    still, _ = synth.generate(tag="snare", seed=4, n=2)
    varied, _ = synth.generate(tag="snare", seed=4, n=2, variation=0.5)
    alone, _ = synth.generate(tag="snare", seed=5, n=1, variation=0.5)
    torch.testing.assert_close(varied[1:], alone)
    assert not torch.allclose(varied, still)
    with pytest.raises(ValueError, match="variation must lie in"):
        synth.generate(tag="snare", variation=1.5)


def test_a_tag_without_a_guidance_argument_uses_its_stored_default(packaged_tiny):
    (packaged_tiny / DEFAULTS_NAME).write_text(json.dumps({"kick": {"cfg": 3.0}}))
    synth = DrumSynth.from_pretrained()
    default, _ = synth.generate(tag="kick", seed=2)
    torch.testing.assert_close(default, synth.generate(tag="kick", seed=2, cfg=3.0)[0])
    assert not torch.allclose(default, synth.generate(tag="kick", seed=2, cfg=1.0)[0])
    unguided, _ = synth.generate(tag="snare", seed=2)  # a tag with no defaults: cfg 1 = off
    torch.testing.assert_close(unguided, synth.generate(tag="snare", seed=2, cfg=1.0)[0])
