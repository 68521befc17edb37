import numpy as np
import pytest
import soundfile as sf
import torch

from mambakit.cli import main
from mambakit.pretrained import PACKAGED_DIR
from mambakit.timbre.pipeline import DEFAULT_MODEL
from mambakit.timbre.scaffold import ScaffoldConfig, ScaffoldTimbre


def _write_pair(folder):
    t = np.arange(8000) / 16000
    note = lambda f: (0.4 * np.sin(2 * np.pi * f * t) * np.exp(-2 * t)).astype(np.float32)  # noqa: E731
    sf.write(folder / "content.wav", note(220), 16000)
    sf.write(folder / "style.wav", note(330) + 0.2 * note(660), 16000)


@pytest.fixture(scope="module")
def scaffold_run(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("scaffold_run")
    ScaffoldTimbre(ScaffoldConfig.preset("tiny")).save_pretrained(path)
    return path


def test_transfer_with_a_scaffold_run(scaffold_run, tmp_path, capsys):
    _write_pair(tmp_path)
    out = tmp_path / "out.wav"
    code = main(["timbre", "transfer", str(tmp_path / "content.wav"), str(tmp_path / "style.wav"),
                 "--run", str(scaffold_run), "--engine", "scaffold", "-o", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0 and "x real time" in printed and "tip: a style of several notes" in printed
    audio, sr = sf.read(out)
    assert sr == 16000 and len(audio) == 8000 and np.abs(audio).max() > 0.1


def test_transfer_takes_several_style_files_as_one_palette(scaffold_run, tmp_path, capsys):
    _write_pair(tmp_path)
    t = np.arange(8000) / 16000
    sf.write(tmp_path / "high.wav", (0.4 * np.sin(2 * np.pi * 587 * t)).astype(np.float32), 16000)
    out = tmp_path / "out.wav"
    files = [str(tmp_path / name) for name in ("content.wav", "style.wav", "high.wav")]
    code = main(["timbre", "transfer", *files, "--run", str(scaffold_run), "-o", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "style: 2 notes from 2 clips" in printed and "tip:" not in printed
    assert len(sf.read(out)[0]) == 8000
    files[-1] = str(tmp_path / "missing.wav")
    code = main(["timbre", "transfer", *files, "--run", str(scaffold_run), "-o", str(out)])
    assert code == 2 and "missing.wav" in capsys.readouterr().err


def test_transfer_refuses_a_run_of_the_other_engine_and_warns_on_noise(scaffold_run, tmp_path,
                                                                        capsys):  # fmt: skip
    _write_pair(tmp_path)
    args = [str(tmp_path / "content.wav"), str(tmp_path / "style.wav"), "--run", str(scaffold_run)]
    code = main(["timbre", "transfer", *args, "--engine", "unet", "-o", str(tmp_path / "o.wav")])
    assert code == 2 and "holds a scaffold model" in capsys.readouterr().err
    noise = np.random.default_rng(0).uniform(-0.4, 0.4, 16000).astype(np.float32)
    sf.write(tmp_path / "noise.wav", noise, 16000)
    code = main(["timbre", "transfer", str(tmp_path / "noise.wav"), str(tmp_path / "style.wav"),
                 "--run", str(scaffold_run), "-o", str(tmp_path / "o.wav")])  # fmt: skip
    assert code == 0 and "warning: content does not look monophonic" in capsys.readouterr().out


@pytest.mark.skipif(not (PACKAGED_DIR / DEFAULT_MODEL).is_dir(), reason="no shipped gm-timbre")
def test_transfer_without_run_uses_the_shipped_model(tmp_path, capsys):
    _write_pair(tmp_path)
    out = tmp_path / "out.wav"
    code = main(["timbre", "transfer", str(tmp_path / "content.wav"), str(tmp_path / "style.wav"),
                 "-o", str(out)])  # fmt: skip
    assert code == 0
    audio, sr = sf.read(out)
    assert sr == 16000 and len(audio) == 8000 and np.isfinite(audio).all()


def test_train_sets_config_fields_and_the_mfcc_term(procedural_dir, tmp_path, capsys):
    import json

    out = tmp_path / "run"
    args = ["timbre", "train", str(procedural_dir), "--engine", "scaffold", "--out", str(out),
            "--preset", "tiny", "--steps", "2", "--batch-size", "2", "--mfcc-weight", "0.5",
            "--set", "n_noise_bands=17", "--set", "note_inputs=false"]  # fmt: skip
    assert main(args) == 0
    config = ScaffoldTimbre.from_pretrained(out).config
    assert (config.n_noise_bands, config.note_inputs) == (17, False)
    assert config.embed_dim == ScaffoldConfig.preset("tiny").embed_dim  # the rest: the preset
    logged = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert "mfcc" in logged["logs"]
    assert main([*args[:-4], "--set", "noise_bands=17"]) != 0
    assert "expected FIELD=VALUE" in capsys.readouterr().err
