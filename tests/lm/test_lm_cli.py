"""End to end through the CLI with a tiny random codec saved locally (no network)."""

import json

import numpy as np
import soundfile as sf

from mambakit.cli import main


def test_tokenize_train_eval_generate(tiny_dac, tmp_path, capsys) -> None:
    codec_dir = tmp_path / "codec"
    tiny_dac.model.save_pretrained(codec_dir)
    music = tmp_path / "music"
    music.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        sf.write(music / f"{i}.wav", rng.standard_normal(2000).astype(np.float32) * 0.1, 8000)
    tokens, run = tmp_path / "tokens", tmp_path / "run"

    assert (
        main(
            [
                "lm",
                "tokenize",
                str(music),
                "--codec",
                str(codec_dir),
                "--out",
                str(tokens),
                "--val-fraction",
                "0.5",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "lm",
                "train",
                str(tokens),
                "--backbone",
                "hybrid",
                "--preset",
                "tiny",
                "--out",
                str(run),
                "--steps",
                "2",
                "--seq-len",
                "16",
                "--batch-size",
                "2",
                "--warmup",
                "1",
            ]
        )
        == 0
    )
    assert "parameters" in capsys.readouterr().out
    report = tmp_path / "eval.json"
    assert main(["lm", "eval", str(run), "--split", "train", "--json", str(report)]) == 0
    assert "| run (hybrid) |" in capsys.readouterr().out
    assert len(json.loads(report.read_text())[0]["per_codebook"]) == 3

    out = tmp_path / "gen.wav"
    prompt = music / "0.wav"
    assert (
        main(
            [
                "lm",
                "generate",
                str(run),
                "--prompt",
                str(prompt),
                "--prompt-seconds",
                "0.01",
                "--seconds",
                "0.01",
                "--seed",
                "1",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    audio, sr = sf.read(out)
    assert sr == 8000 and len(audio) == round(0.01 * tiny_dac.frame_rate) * tiny_dac.hop_length
