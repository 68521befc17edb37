import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from mambakit.cli import main
from mambakit.eval.timbre import pair_metrics, si_sdr
from mambakit.timbre.model import TimbreConfig, TimbreUNet


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("timbre_run")
    TimbreUNet(TimbreConfig.tiny()).save_pretrained(path)
    return path


def _tone(seconds, sr, f):
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * f * t) * np.exp(-2 * t)).astype(np.float32)


def test_transfer_command_writes_audio_and_reports(run, tmp_path, capsys):
    sf.write(tmp_path / "c.wav", np.stack([_tone(0.6, 22050, 220)] * 2, axis=1), 22050)
    sf.write(tmp_path / "s.wav", _tone(0.3, 16000, 330), 16000)
    out = tmp_path / "out" / "o.wav"
    code = main(["timbre", "transfer", str(tmp_path / "c.wav"), str(tmp_path / "s.wav"),
                 "--run", str(run), "--alpha", "1,1,1,1,0.2", "-o", str(out)])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "x real time" in text and "mixed 2 channels to mono" in text
    audio, sr = sf.read(out)
    assert sr == 16000 and len(audio) == 9600


def test_transfer_command_errors_are_one_line(run, tmp_path, capsys):
    sf.write(tmp_path / "silent.wav", np.zeros(8000, np.float32), 16000)
    code = main(["timbre", "transfer", str(tmp_path / "silent.wav"), str(tmp_path / "silent.wav"),
                 "--run", str(run), "-o", str(tmp_path / "o.wav")])  # fmt: skip
    assert code == 2
    assert "silent.wav" in capsys.readouterr().err
    code = main(["timbre", "transfer", "a.wav", "b.wav", "--run", str(run), "--alpha", "2",
                 "-o", str(tmp_path / "o.wav")])  # fmt: skip
    assert code == 2 and "[0, 1]" in capsys.readouterr().err


def test_si_sdr_and_metrics_behave():
    torch.manual_seed(0)
    ref = torch.randn(4000)
    assert si_sdr(3.0 * ref, ref) > 100  # scale invariant
    assert si_sdr(ref + 0.1 * torch.randn(4000), ref) == pytest.approx(20, abs=1.0)
    t = torch.arange(16000) / 16000
    content = 0.5 * torch.sin(2 * torch.pi * 220 * t) * torch.exp(-3 * t)
    target = 0.5 * torch.sign(torch.sin(2 * torch.pi * 220 * t)) * torch.exp(-3 * t)
    same = pair_metrics(content, content, target, 16000)
    assert same["pitch_corr"] == pytest.approx(1.0) and same["loudness_corr"] == pytest.approx(1.0)
    assert same["style_gain"] == pytest.approx(0.0)
    perfect = pair_metrics(target, content, target, 16000)
    assert perfect["style_gain"] == pytest.approx(1.0) and perfect["si_sdr"] > 100


def test_eval_command_prints_a_table_and_json(run, procedural_dir, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = main(["eval", "timbre", str(run), str(run), "--pairs", str(procedural_dir), "-n", "3",
                 "--json", str(out)])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "| metric |" in text and "| si_sdr ↑ |" in text and "| recon_si_sdr ↑ |" in text
    assert "| objective | unknown |" in text  # a bare checkpoint has no training record
    assert "| losses | unknown |" in text
    assert "not measured here (no run trained with objective transfer" in text
    results = json.loads(out.read_text())
    assert results["kind"] == "timbre-eval" and results["pairs_dir"] == str(procedural_dir)
    assert set(results["meta"]) == {"machine", "command", "git_commit", "date_utc"}
    (row,) = results["runs"]  # the same run twice: one entry
    assert row["pairs"] == 3 and np.isfinite(row["stft_dist"]) and np.isfinite(row["recon_si_sdr"])
    assert row["objective"] is None and row["shared_notes"] is None
    assert results["style_notes"] == 1 and "| style clip | one note | one note |" in text


def test_eval_with_scale_style_clips(run, procedural_dir, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = main(["eval", "timbre", str(run), "--pairs", str(procedural_dir), "-n", "2",
                 "--style-notes", "2", "--speed-seconds", "0", "--json", str(out)])  # fmt: skip
    assert code == 0 and "| style clip | 2 notes (a scale) |" in capsys.readouterr().out
    joined = json.loads(out.read_text())
    assert joined["style_notes"] == 2 and not joined["style_clips"]
    # one clip per note: the U-Net reads its clips end to end, so the same scores
    code = main(["eval", "timbre", str(run), "--pairs", str(procedural_dir), "-n", "2",
                 "--style-notes", "2", "--style-clips", "--speed-seconds", "0",
                 "--json", str(out)])  # fmt: skip
    assert code == 0 and "| style clip | 2 notes, one clip each |" in capsys.readouterr().out
    clips = json.loads(out.read_text())
    assert clips["style_clips"] and clips["runs"][0]["pairs"] == joined["runs"][0]["pairs"] > 0
    np.testing.assert_allclose(clips["runs"][0]["style_gain_per_pair"],
                               joined["runs"][0]["style_gain_per_pair"], rtol=1e-5)  # fmt: skip
    code = main(["eval", "timbre", str(run), "--pairs", str(procedural_dir), "--style-notes", "0"])
    assert code == 2 and "style_notes must be >= 1" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="the fluidsynth program is absent")
def test_dataset_from_sf2_command(tiny_soundfont, tmp_path, capsys):
    code = main(["timbre", "dataset-from-sf2", str(tiny_soundfont), "--out", str(tmp_path / "set"),
                 "--programs", "0", "--pitches", "60-64:4", "--seconds", "0.3"])  # fmt: skip
    assert code == 0
    assert "wrote 2 notes" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "set" / "audio").iterdir()) == [
        "tiny_program000-060-100.wav",
        "tiny_program000-064-100.wav",
    ]
