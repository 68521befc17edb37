import json

import numpy as np
import pytest
import soundfile as sf

from mambakit.drums.kit import (
    KitPad,
    default_kit_path,
    generate_kit,
    load_kit_yaml,
    parse_sfz,
    write_kit,
)


def test_default_kit_has_eight_gm_pads():
    pads = load_kit_yaml(default_kit_path())
    assert [p.name for p in pads][:2] == ["kick", "snare"] and len(pads) == 8
    by_name = {p.name: p for p in pads}
    assert by_name["kick"].key == 36 and by_name["kick"].note == 24  # C1
    assert by_name["kick"].attack == pytest.approx(0.001)
    assert by_name["closed_hat"].key == 42 and by_name["open_hat"].key == 46


def test_yaml_errors_name_file_and_pad(tmp_path):
    bad = tmp_path / "k.yaml"
    bad.write_text("pads:\n  - {name: boom, tag: kick, attack: fast}\n")
    with pytest.raises(ValueError, match=r"k\.yaml: pad 'boom'"):
        load_kit_yaml(bad)
    bad.write_text("- {name: x, tag: gong}\n")
    with pytest.raises(ValueError, match="unknown tag 'gong'"):
        load_kit_yaml(bad)
    bad.write_text("- {name: x, tag: kick, colour: red}\n")
    with pytest.raises(ValueError, match="unknown field"):
        load_kit_yaml(bad)


class FakeSynth:
    sample_rate = 8000

    def __init__(self):
        self.calls = []

    def generate(self, tag, note, adsr, pitch_env, seed, n=1):
        self.calls.append((tag, note, seed, pitch_env.shape))
        rng = np.random.default_rng(seed)
        return rng.uniform(-0.5, 0.5, (n, 1, 800)).astype(np.float32), self.sample_rate


def test_generate_and_write_kit_round_trip(tmp_path):
    pads = load_kit_yaml(default_kit_path())
    synth = FakeSynth()
    audios = generate_kit(synth, pads)
    assert [c[0] for c in synth.calls] == [p.tag for p in pads]
    assert synth.calls[0][3] == (8000,)
    sfz = write_kit(tmp_path / "kit", pads, audios, 8000)
    regions = parse_sfz(sfz)
    assert [r["key"] for r in regions] == [p.key for p in pads]
    for region, audio in zip(regions, audios, strict=True):
        assert region["path"].is_file()
        x, sr = sf.read(region["path"], dtype="float32")
        info = sf.info(region["path"])
        assert sr == 8000 and info.subtype == "PCM_24"
        np.testing.assert_allclose(x, audio, atol=1e-6)
    manifest = json.loads((tmp_path / "kit" / "kit.json").read_text())
    assert [p["name"] for p in manifest["pads"]] == [p.name for p in pads]
    # Portable: moving the folder keeps the sample paths valid.
    (tmp_path / "kit").rename(tmp_path / "moved")
    assert all(r["path"].is_file() for r in parse_sfz(tmp_path / "moved" / "kit.sfz"))


def test_parse_sfz_groups_and_comments(tmp_path):
    (tmp_path / "a.sfz").write_text(
        "// c\n<control> default_path=s/\n<group> lovel=1 hivel=90\n"
        "<region> sample=x.wav lokey=40 hikey=41 // comment\n<region> sample=y.wav key=50\n"
    )
    r = parse_sfz(tmp_path / "a.sfz")
    assert (r[0]["lokey"], r[0]["hikey"], r[0]["hivel"]) == (40, 41, 90)
    assert r[1]["lokey"] == r[1]["hikey"] == 50
    assert r[1]["path"] == (tmp_path / "s" / "y.wav").resolve()


def test_pitch_env_decays_from_drop():
    env = KitPad("k", "kick", pitch_drop=12, pitch_decay=0.01).pitch_env(1000, 1000)
    assert env[0] == pytest.approx(12) and env[10] == pytest.approx(12 / np.e, rel=1e-5)


def test_kit_pad_shape_is_keyword_only_and_gives_the_adsr():
    import dataclasses

    from mambakit.dsp import ADSR

    pad = KitPad("tom", "tom", 45, 3, attack=0.01, sustain=0.5)
    assert (pad.note, pad.seed, pad.key) == (45, 3, 45)  # key: the tag's GM key
    assert pad.adsr() == ADSR(0.01, 0.2, 0.5, 0.05)
    with pytest.raises(TypeError):
        KitPad("k", "kick", 36, 0, None, None, 0.01)  # a shape field given by position
    with pytest.raises(dataclasses.FrozenInstanceError):
        pad.decay = 1.0
