import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from mambakit.dsp import analyze_pitch, load_audio
from mambakit.timbre.data import PairedNotes, read_nsynth, render_sf2_dataset


def _nsynth(root, entries):
    (root / "audio").mkdir(parents=True)
    for name in entries:
        sf.write(root / "audio" / f"{name}.wav", np.zeros(1600, np.float32) + 0.1, 16000)
    (root / "examples.json").write_text(json.dumps(entries))
    return root


def _entry(instrument, pitch, velocity, source="acoustic"):
    return {
        "pitch": pitch,
        "velocity": velocity,
        "instrument_str": instrument,
        "instrument_family_str": "keyboard",
        "instrument_source_str": source,
    }


def test_nsynth_reader_applies_the_seeds_filters(tmp_path):
    root = _nsynth(
        tmp_path / "nsynth",
        {
            "keyboard_acoustic_001-060-100": _entry("keyboard_acoustic_001", 60, 100),
            "keyboard_acoustic_001-060-050": _entry("keyboard_acoustic_001", 60, 50),
            "keyboard_acoustic_001-060-051": _entry("keyboard_acoustic_001", 60, 51),
            "keyboard_synthetic_002-060-100": _entry(
                "keyboard_synthetic_002", 60, 100, "synthetic"
            ),
            "keyboard_electronic_003-062-127": _entry(
                "keyboard_electronic_003", 62, 127, "electronic"
            ),
        },
    )
    kept = {r.note_str for r in read_nsynth(root)}
    assert kept == {
        "keyboard_acoustic_001-060-100",
        "keyboard_acoustic_001-060-051",
        "keyboard_electronic_003-062-127",
    }
    assert len(read_nsynth(root, min_velocity=0, drop_synthetic=False)) == 5


def test_nsynth_reader_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="examples.json"):
        read_nsynth(tmp_path)
    (tmp_path / "examples.json").write_text("{not json")
    with pytest.raises(ValueError, match="examples.json.*JSON"):
        read_nsynth(tmp_path)
    (tmp_path / "examples.json").write_text(json.dumps({"x-060-100": {"pitch": 60}}))
    with pytest.raises(ValueError, match="'x-060-100' has no 'velocity'"):
        read_nsynth(tmp_path)


def test_missing_audio_is_skipped_and_reported(tmp_path):
    root = _nsynth(tmp_path / "n", {"a-060-100": _entry("a", 60, 100)})
    entries = json.loads((root / "examples.json").read_text())
    entries["b-060-100"] = _entry("b", 60, 100)
    (root / "examples.json").write_text(json.dumps(entries))
    with pytest.warns(UserWarning, match="skipped 1 entries"):
        assert [r.note_str for r in read_nsynth(root)] == ["a-060-100"]


def test_paired_notes_triples_follow_the_transfer_definition(procedural_dir):
    data = PairedNotes(procedural_dir, segment_seconds=0.2, max_start_seconds=0.1,
                       reconstruction_ratio=0.0)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    for i in range(len(data)):
        item = data.sample(i, g)
        assert item["transfer"]
        c, s, t = (data.records[int(k)] for k in item["indices"])
        assert t.pitch == c.pitch and t.instrument_str == s.instrument_str != c.instrument_str
        assert s.pitch != c.pitch  # the style is another note of instrument B
        for key in ("content", "style", "target"):
            assert item[key].shape == (1, 3200)
        # content and target share their start: both begin at the same point of the note
        full_c, full_t = data.audio(int(item["indices"][0])), data.audio(int(item["indices"][2]))
        start = int(torch.nonzero(full_c[0] == item["content"][0, 0]).min())
        torch.testing.assert_close(item["target"], full_t[:, start : start + 3200])


def test_reconstruction_objective_and_ratio(procedural_dir):
    recon = PairedNotes(procedural_dir, segment_seconds=0.2, objective="reconstruction")
    item = recon.sample(0, torch.Generator().manual_seed(0))
    assert not item["transfer"]
    assert torch.equal(item["content"], item["target"]) and torch.equal(
        item["style"], item["target"]
    )
    mixed = PairedNotes(procedural_dir, segment_seconds=0.2, reconstruction_ratio=0.5)
    g = torch.Generator().manual_seed(0)
    share = np.mean([bool(mixed.sample(i % len(mixed), g)["transfer"]) for i in range(200)])
    assert 0.35 < share < 0.65
    with pytest.raises(ValueError, match="objective"):
        PairedNotes(procedural_dir, objective="style")


def test_missing_fluidsynth_is_a_clear_error(tiny_soundfont, tmp_path):
    font = tiny_soundfont
    with pytest.raises(FileNotFoundError, match="not installed.*install FluidSynth"):
        render_sf2_dataset(font, tmp_path / "out", fluidsynth="no-such-fluidsynth-program")
    with pytest.raises(FileNotFoundError, match="no such SoundFont"):
        render_sf2_dataset(tmp_path / "missing.sf2", tmp_path / "out")


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="the fluidsynth program is absent")
def test_sf2_renderer_writes_the_nsynth_layout(tiny_soundfont, tmp_path):
    font = tiny_soundfont
    out = render_sf2_dataset(font, tmp_path / "set", programs=(0,), pitches=(57, 69),
                             velocities=(80, 110), seconds=0.5, hold_seconds=0.4,
                             progress=False)  # fmt: skip
    entries = json.loads((out / "examples.json").read_text())
    assert len(entries) == 4
    for note_str, entry in entries.items():
        assert entry["note_str"] == note_str
        assert entry["instrument_source_str"] == "acoustic"
        assert entry["instrument_family_str"] == "keyboard"  # GM program 0
        assert note_str == f"{entry['instrument_str']}-{entry['pitch']:03d}-{entry['velocity']:03d}"
        audio, sr = load_audio(out / "audio" / f"{note_str}.wav")
        assert sr == 16000 and audio.shape == (1, 8000)
        assert analyze_pitch(audio[0, :6000], sr).midi_note == entry["pitch"]
    records = read_nsynth(out)
    assert {r.velocity for r in records} == {80, 110}


def test_a_palette_style_is_a_scale_of_the_style_instrument(procedural_dir):
    single = PairedNotes(procedural_dir, segment_seconds=0.2, max_start_seconds=0.1,
                         reconstruction_ratio=0.0)  # fmt: skip
    palette = PairedNotes(procedural_dir, segment_seconds=0.2, max_start_seconds=0.1,
                          reconstruction_ratio=0.0, style_notes=3)  # fmt: skip
    g1, g3 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    for i in range(len(palette)):
        one, three = single.sample(i, g1), palette.sample(i, g3)
        # the same content, target and first style note as with one style note
        assert torch.equal(one["content"], three["content"])
        assert torch.equal(one["target"], three["target"])
        c, s, _ = (palette.records[int(k)] for k in three["indices"])
        others = [p for p in palette.by_instrument[s.instrument_str] if p != c.pitch]
        assert len(others) == 2  # three pitches per instrument: one note is used twice
        assert three["style"].shape == (1, 3 * 3200)  # three notes, a crop each
        crops = three["style"].view(3, 3200)
        assert any(torch.equal(crop, one["style"][0]) for crop in crops)
        assert s.pitch == min(others, key=lambda p: (abs(p - c.pitch), p))
    recon = PairedNotes(procedural_dir, segment_seconds=0.2, objective="reconstruction",
                        style_notes=3).sample(0, torch.Generator().manual_seed(0))  # fmt: skip
    assert recon["style"].shape == (1, 3 * 3200)  # a palette of A holding this very crop
    assert any(torch.equal(crop, recon["content"][0]) for crop in recon["style"].view(3, 3200))
    with pytest.raises(ValueError, match="style_notes"):
        PairedNotes(procedural_dir, style_notes=0)
