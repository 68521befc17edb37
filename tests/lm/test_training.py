"""LM training through the shared Trainer on a tiny token store, then resume."""

import json

import numpy as np
import torch

from mambakit.lm.model import MusicLM
from mambakit.lm.store import tokenize_folder
from mambakit.lm.training import lm_loss, train_lm
from mambakit.train import TrainConfig


def test_train_logs_unsmoothed_ce_and_resumes(noise_token_store, tmp_path) -> None:
    tokens = noise_token_store
    config = TrainConfig(
        max_steps=4,
        batch_size=2,
        warmup_steps=1,
        log_every=1,
        ckpt_every=2,
        progress=False,
        lr=1e-3,
    )
    model, summary = train_lm(
        tokens,
        tmp_path / "run",
        backbone="mamba2",
        scale="tiny",
        seq_len=16,
        label_smoothing=0.1,
        train_config=config,
    )
    assert summary.steps == 4
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    # the objective is smoothed, the logged ce is not
    assert all(abs(r["loss"] - r["logs"]["ce"]) > 1e-4 for r in records)
    assert "eval/val_ce" in records[1]["logs"]  # validation at the checkpoint
    loaded = MusicLM.from_pretrained(tmp_path / "run")
    assert loaded.config.codec_id == "tiny-dac" and loaded.config.n_codebooks == 3

    longer = TrainConfig(**{**config.__dict__, "max_steps": 6})
    _, resumed = train_lm(
        tokens,
        tmp_path / "run",
        backbone="mamba2",
        scale="tiny",
        seq_len=16,
        label_smoothing=0.1,
        train_config=longer,
    )
    assert resumed.steps == 6
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5, 6]


def test_lm_loss_matches_model_loss() -> None:
    from mambakit.lm.model import preset

    model = MusicLM(preset("hybrid", "tiny", n_codebooks=2, codebook_size=8))
    codes = torch.randint(0, 8, (2, 2, 5))
    loss, logs = lm_loss(model, codes)
    expected, per_stream = model.loss(model.pattern.build(codes))
    assert torch.isclose(loss, expected)
    assert abs(logs["ce"] - float(expected.detach())) < 1e-6
    assert abs(logs["ce_1"] - float(per_stream[1].detach())) < 1e-6


def test_evaluate_matches_model_loss_and_argmax(tiny_dac, tmp_path) -> None:
    from mambakit.eval.lm import evaluate_model, evaluate_run, runs_markdown
    from mambakit.lm.model import preset
    from mambakit.lm.store import TokenStore

    music = tmp_path / "music"
    music.mkdir()
    import soundfile as sf

    rng = np.random.default_rng(1)
    for i in range(2):
        sf.write(music / f"{i}.wav", rng.standard_normal(160).astype(np.float32) * 0.1, 8000)
    tokenize_folder(music, tiny_dac, tmp_path / "tokens", val_fraction=1.0, progress=False)
    store = TokenStore(tmp_path / "tokens")
    torch.manual_seed(0)
    model = MusicLM(preset("transformer", "tiny", n_codebooks=3, codebook_size=16)).eval()
    result = evaluate_model(model, store, seq_len=40, progress=False)  # one window per file

    codes = torch.stack([store.codes(f) for f in store.files("val")])  # [2, 3, 40]
    tokens = model.pattern.build(codes)
    with torch.no_grad():
        loss, per_stream = model.loss(tokens)
        logits = model(tokens)
    assert abs(result["loss"] - float(loss)) < 1e-5
    assert abs(result["perplexity"] - float(loss.exp())) < 1e-3
    for k in range(3):
        assert abs(result["per_codebook"][k]["loss"] - float(per_stream[k])) < 1e-5
        predicted = logits[:, k, k : k + 40].argmax(-1)  # delay: codebook k sits k steps later
        top1 = (predicted == codes[:, k]).float().mean()
        assert abs(result["per_codebook"][k]["top1"] - float(top1)) < 1e-6
        assert result["per_codebook"][k]["top5"] >= result["per_codebook"][k]["top1"]

    model.save_pretrained(tmp_path / "run")
    table = runs_markdown([evaluate_run(tmp_path / "run", tmp_path / "tokens", seq_len=40)])
    assert "| run (transformer) |" in table and "| 2 |" in table
