"""The UI's handlers without a browser: validation, uploads, pads, loops, kit export."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import soundfile as sf
import torch

from mambakit.app import handlers as h
from mambakit.drums.kit import parse_sfz
from mambakit.dsp import ADSR, render_adsr

# ---------------------------------------------------------------- run directories


def test_validate_run_dir_rejects_everything_but_a_run_of_the_right_kind(tmp_path, drum_run):
    with pytest.raises(h.UIError, match="type the path"):
        h.validate_run_dir("   ")
    with pytest.raises(h.UIError, match="no such directory"):
        h.validate_run_dir(tmp_path / "nope")
    with pytest.raises(h.UIError, match=r"not a run directory \(missing config.json"):
        h.validate_run_dir(tmp_path)
    other = tmp_path / "lm_run"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "lm", "config": {}}))
    (other / "model.safetensors").write_bytes(b"")
    with pytest.raises(h.UIError, match="holds a lm model, not a drums model"):
        h.validate_run_dir(other, "drums")
    (other / "config.json").write_text("{broken")
    with pytest.raises(h.UIError, match="not valid JSON"):
        h.validate_run_dir(other, "lm")
    assert h.validate_run_dir(f"  {drum_run} ", "drums") == drum_run


def test_runs_root_confines_the_run_box(tmp_path, drum_run):
    root = drum_run.parent
    assert h.validate_run_dir(drum_run.name, "drums", runs_root=root) == drum_run.resolve()
    assert h.validate_run_dir(drum_run, "drums", runs_root=root) == drum_run.resolve()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for text in (str(outside), "../elsewhere", f"{drum_run.name}/../../elsewhere"):
        with pytest.raises(h.UIError, match="only runs inside the server's runs folder"):
            h.validate_run_dir(text, "drums", runs_root=root / "sub")


def test_load_run_reports_rate_and_tags(drum_run):
    synth, message = h.load_run("drums", str(drum_run))
    assert synth.sample_rate == 44100
    assert message.startswith(f"Drum model loaded from {drum_run}")
    assert "44100 Hz" in message and "kick" in message


def test_a_run_that_cannot_be_opened_is_a_page_message(drum_run, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    meta = json.loads((drum_run / "config.json").read_text())
    meta["config"]["band_channels"] = 3  # weights of another shape
    (broken / "config.json").write_text(json.dumps(meta))
    (broken / "model.safetensors").write_bytes((drum_run / "model.safetensors").read_bytes())
    with pytest.raises(h.UIError, match="cannot load the drum model"):
        h.load_run("drums", broken)


def test_missing_timbre_or_lm_run_is_a_clear_message(tmp_path):
    with pytest.raises(h.UIError, match="no such directory"):
        h.load_run("timbre", tmp_path / "missing")
    with pytest.raises(h.UIError, match="no music model loaded"):
        h.continue_music(None, None, 5.0, 1.0, 250)
    with pytest.raises(h.UIError, match="no timbre model loaded"):
        h.transfer_timbre(None, (torch.zeros(1, 10), 16000), None, [1.0] * 5)


# ---------------------------------------------------------------- uploads


def _wav(path, seconds=0.25, sr=22050, channels=2):
    t = np.arange(int(seconds * sr)) / sr
    x = 0.5 * np.sin(2 * np.pi * 220 * t)
    sf.write(path, np.stack([x] * channels, axis=1), sr)
    return path


def test_check_upload_decodes_audio_to_mono(tmp_path):
    audio, sr = h.check_upload(_wav(tmp_path / "take.wav"))
    assert sr == 22050 and audio.shape == (1, int(0.25 * 22050))
    assert audio.abs().max() == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "message"),
    [
        ("notes.txt", b"hello", {}, "notes.txt is not an audio file"),
        ("fake.wav", b"RIFF....not really a wav file at all", {}, "fake.wav could not be decoded"),
        ("big.wav", None, {"max_bytes": 1000}, "big.wav is 0.0 MB; the limit is 0 MB"),
        ("long.wav", None, {"max_seconds": 0.1}, "long.wav is 0.2 s long; the limit is 0 s"),
    ],
)
def test_check_upload_refuses_bad_files_by_name_only(tmp_path, name, content, kwargs, message):
    folder = tmp_path / "server-private-folder"
    folder.mkdir()
    path = folder / name
    if content is None:
        _wav(path)
    else:
        path.write_bytes(content)
    with pytest.raises(h.UIError) as info:
        h.check_upload(path, "input sample", **kwargs)
    assert message in str(info.value)
    assert "server-private-folder" not in str(info.value)  # no server paths in the page


# ---------------------------------------------------------------- pads


def test_requested_curves_are_the_adsr_and_exponential_pitch_drop():
    pad = h.PadParams(attack=0.01, decay=0.1, sustain=0.3, release=0.05, pitch_drop=12.0,
                      pitch_decay=0.02)  # fmt: skip
    t, env, pitch = h.requested_curves(pad, sr=8000, seconds=0.5)
    assert t.shape == env.shape == pitch.shape == (4000,)
    ref = render_adsr(ADSR(0.01, 0.1, 0.3, 0.05), 4000, 8000).numpy()
    np.testing.assert_allclose(env, ref)
    assert pitch[0] == pytest.approx(12.0)
    assert pitch[160] == pytest.approx(12.0 / np.e, rel=1e-4)  # t = decay


def test_pad_values_are_typed_and_checked():
    pad = h.pad_from_values(h.PadParams(name="kick"), note="D#1", seed=3.0, steps=4.0)
    assert pad.midi() == 27 and pad.seed == 3 and isinstance(pad.steps, int)
    with pytest.raises(h.UIError, match="note 'H9' is not a note"):
        h.PadParams(note="H9").midi()
    with pytest.raises(h.UIError, match="sustain must be between 0 and 1"):
        h.PadParams(sustain=1.5).adsr()


def test_generate_pad_is_seeded_and_bounded(synth):
    pad = h.PadParams(name="kick", tag="kick", note="C1", seed=5, steps=2)
    a, sr = h.generate_pad(synth, pad, n=2)
    assert sr == synth.sample_rate and a.shape == (2, synth.config.n_samples)
    assert a.dtype == np.float32 and np.isfinite(a).all()
    again, _ = h.generate_pad(synth, pad, n=1)
    # same seed, same sound (up to float rounding: batch 1 vs batch 2)
    np.testing.assert_allclose(again[0], a[0], atol=1e-5)
    assert not np.array_equal(a[0], a[1])  # variation i uses seed + i
    with pytest.raises(h.UIError, match="variations must be 1..8"):
        h.generate_pad(synth, pad, n=9)
    with pytest.raises(h.UIError, match="steps must be 0"):
        h.generate_pad(synth, h.PadParams(steps=500), n=1)
    with pytest.raises(h.UIError, match="guidance must be 0 .model default. .. 5, got -1"):
        h.generate_pad(synth, h.PadParams(cfg=-1.0), n=1)
    guided, _ = h.generate_pad(synth, h.PadParams(**{**vars(pad), "cfg": 3.0}), n=1)
    assert not np.allclose(guided[0], a[0])  # 0 (the default) is the model's own, here off
    with pytest.raises(h.UIError, match="no drum model loaded"):
        h.generate_pad(None, pad)


def test_variation_of_an_upload_at_zero_strength_returns_the_input(synth, tmp_path):
    upload = h.check_upload(_wav(tmp_path / "in.wav", seconds=1.0, sr=44100, channels=1))
    pad = h.PadParams(steps=2, strength=0.0)
    out, _ = h.generate_pad(synth, pad, n=1, init_audio=upload)
    np.testing.assert_allclose(out[0], upload[0][0, : out.shape[-1]].numpy(), atol=1e-6)


# ---------------------------------------------------------------- sequencer and kit


def test_render_loop_places_steps_and_wraps_tails():
    sr, bpm = 1000, 120.0  # one bar = 2 s = 2000 samples, one 16th = 125 samples
    click = np.zeros(300, dtype=np.float32)
    click[0] = 0.5
    click[-1] = 0.25  # the tail of the last hit rings past the bar line
    loop = h.render_loop({"kick": click}, {"kick": [1, 5, 16]}, bpm, 0.0, sr)
    assert loop.shape == (2000,)
    gain = (100 / 127) ** 1.5  # velocity 100
    hits = np.flatnonzero(loop)
    # hits at steps 1, 5, 16 (0, 500, 1875) and their tails 299 samples later; the tail
    # of the hit at 1875 ends at 2174, past the bar, and wraps to sample 174
    np.testing.assert_array_equal(hits, [0, 174, 299, 500, 799, 1875])
    assert loop[1875] == pytest.approx(0.5 * gain)
    assert loop[174] == pytest.approx(0.25 * gain)


def test_render_loop_swing_delays_odd_sixteenths():
    click = np.zeros(10, dtype=np.float32)
    click[0] = 1.0
    loop = h.render_loop({"hat": click}, {"hat": [2]}, 120.0, 0.5, 1000)
    assert np.flatnonzero(loop).tolist() == [125 + 31]  # step + swing/2 * step


def test_render_loop_errors():
    with pytest.raises(h.UIError, match="sequencer is empty"):
        h.render_loop({}, {"kick": []}, 120, 0.0, 1000)
    with pytest.raises(h.UIError, match="pad snare has steps on but no sound yet"):
        h.render_loop({"kick": np.ones(4)}, {"snare": [1]}, 120, 0.0, 1000)
    with pytest.raises(h.UIError, match="BPM must be between"):
        h.render_loop({"kick": np.ones(4)}, {"kick": [1]}, 1000, 0.0, 1000)


def test_export_kit_zip_holds_sfz_manifest_and_generated_wavs(tmp_path):
    files = h.SessionFiles(tmp_path)
    pads = h.default_pads()
    sounds = {"kick": np.full(441, 0.5, np.float32), "snare": np.full(882, -0.25, np.float32)}
    archive = h.export_kit(files, pads, sounds, 44100)
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        assert names == {"kit.sfz", "kit.json", "samples/kick.wav", "samples/snare.wav"}
        zf.extractall(tmp_path / "unzipped")
        kick, sr = sf.read(io.BytesIO(zf.read("samples/kick.wav")))
    assert sr == 44100 and kick.shape == (441,) and kick[0] == pytest.approx(0.5, abs=1e-6)
    regions = parse_sfz(tmp_path / "unzipped" / "kit.sfz")
    assert sorted(r["key"] for r in regions) == [36, 38]  # GM kick and snare
    with pytest.raises(h.UIError, match="no pad has a sound yet"):
        h.export_kit(files, pads, {}, 44100)


def test_session_files_are_private_and_cleaned_up(tmp_path):
    files = h.SessionFiles(tmp_path)
    first, second = files.path("../../etc/pass wd", ".wav"), files.path("loop", ".wav")
    assert first.parent == files.dir and second.parent == files.dir and first != second
    h.write_wav(files, "x", np.zeros(10, np.float32), 8000)
    files.cleanup()
    assert not files.dir.exists()


# ---------------------------------------------------------------- timbre / lm plumbing


class _EchoTimbre:
    """Stands in for TimbreTransfer: returns the content and records the call."""

    sample_rate = 16000

    def transfer(self, content, style, alpha, sr=None, style_sr=None):
        self.call = (style is None, alpha, sr, style_sr)
        return content.reshape(1, 1, -1), self.sample_rate


def test_transfer_passes_per_level_alphas_and_rates():
    model = _EchoTimbre()
    content = (torch.ones(1, 100) * 0.1, 22050)
    out, sr = h.transfer_timbre(model, content, (torch.ones(1, 50), 8000), [0.1, 0.2, 0.3, 0.4, 1])
    assert sr == 16000 and out.shape == (100,)
    assert model.call == (False, (0.1, 0.2, 0.3, 0.4, 1), 22050, 8000)
    with pytest.raises(h.UIError, match="alpha must be in"):
        h.transfer_timbre(model, content, None, [1.5] * 5)


def test_several_style_uploads_reach_the_model_as_one_list_with_their_rates():
    model = _EchoTimbre()
    content = (torch.ones(1, 100) * 0.1, 22050)
    styles = [(torch.ones(1, 50), 8000), (torch.ones(1, 70), 44100)]
    h.transfer_timbre(model, content, styles, [1.0] * 5)
    assert model.call == (False, (1.0,) * 5, 22050, [8000, 44100])


def test_transfer_messages_carry_the_reports_warnings_and_style_notes():
    from mambakit.timbre.pipeline import TransferReport

    class Scaffold:
        engine = "scaffold"
        last_report = TransferReport(warnings=["content does not look monophonic"], style_notes=3)

    assert h.transfer_messages(Scaffold()) == (
        ["content does not look monophonic"], ["style: 3 notes, one palette"]
    )
    Scaffold.last_report = TransferReport(style_notes=1)
    warned, notes = h.transfer_messages(Scaffold())
    assert warned == [] and "several notes" in notes[0]
    Scaffold.engine = "unet"  # the U-Net has no palette to speak of
    assert h.transfer_messages(Scaffold()) == ([], [])
    assert h.transfer_messages(object()) == ([], [])


def test_continue_music_bounds_requests():
    with pytest.raises(h.UIError, match="seconds must be in"):
        h.continue_music(object(), None, 600.0, 1.0, 250)
    with pytest.raises(h.UIError, match="top-k must be"):
        h.continue_music(object(), None, 5.0, 1.0, 10**6)


def test_continue_music_passes_the_page_options_as_one_sampling():
    from mambakit.lm.generate import Sampling

    class Recorder:
        sample_rate = 100

        def generate(self, **kwargs):
            self.kwargs = kwargs
            return torch.zeros(1, 1, 5)

    model = Recorder()
    audio, sr = h.continue_music(model, None, 2.0, 0.8, 0, seed=4)
    assert (audio.shape, sr) == ((5,), 100)
    assert model.kwargs["sampling"] == Sampling(0.8, top_k=None, seed=4)  # top-k 0 = off
    assert model.kwargs["seconds"] == 2.0 and model.kwargs["prompt"] is None


def test_cli_ui_binds_to_loopback_by_default():
    from mambakit.cli import build_parser

    args = build_parser().parse_args(["ui", "--drums", "runs/kit"])
    assert (args.host, args.port, args.drums, args.timbre, args.lm) == (
        "127.0.0.1",
        7860,
        "runs/kit",
        None,
        None,
    )


def test_the_editable_pads_round_trip_the_bundled_kit():
    from dataclasses import asdict

    from mambakit.drums.kit import default_kit_path, load_kit_yaml

    kit = load_kit_yaml(default_kit_path())[: h.N_PADS]
    back = [pad.to_kit_pad() for pad in h.default_pads()]
    assert [asdict(p) for p in back] == [asdict(p) for p in kit]
