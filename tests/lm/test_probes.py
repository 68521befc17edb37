"""Synthetic probes: corpus structure, and a tiny model overfits a tiny token set."""

import math

import torch

from mambakit.lm.model import MusicLM, preset
from mambakit.lm.probes import ProbeCorpus, position_losses, probe_markdown, run_probe, train_tokens


def test_corpus_repeats_the_motif_and_follows_the_chain() -> None:
    corpus = ProbeCorpus(vocab_size=16, motif_len=4, gap=10, tail=5, branching=2)
    tokens = corpus.sample(8, torch.Generator().manual_seed(0))
    m, gap = corpus.motif_len, corpus.gap
    assert tokens.shape == (8, corpus.seq_len)
    assert torch.equal(tokens[:, :m], tokens[:, m + gap : 2 * m + gap])
    P = corpus.transition_matrix()
    assert torch.allclose(P.sum(1), torch.ones(16)) and ((P > 0).sum(1) == 2).all()
    local, recall = corpus.masks()
    for t in local.nonzero()[:, 0].tolist():  # every local token is a possible successor
        assert (P[tokens[:, t - 1], tokens[:, t]] > 0).all()
    assert not (local & recall).any()
    assert 0 < corpus.conditional_entropy() <= math.log(2) + 1e-9


def test_tiny_model_overfits_tiny_token_set() -> None:
    torch.manual_seed(0)
    corpus = ProbeCorpus(vocab_size=16, motif_len=4, gap=8, tail=4, branching=1)
    batch = corpus.sample(4, torch.Generator().manual_seed(1))
    model = MusicLM(preset("mamba2", "tiny", pattern="parallel", n_codebooks=1, codebook_size=16))
    before = float(position_losses(model, batch).mean())
    train_tokens(model, batches=[batch], steps=60, lr=1e-2)
    after = float(position_losses(model, batch).mean())
    unigram = -sum(
        p * math.log(p)
        for p in (torch.bincount(batch.flatten(), minlength=16) / batch.numel())
        if p > 0
    )
    assert before > 0.8 * unigram  # an untrained model is near chance ...
    assert after < 0.3 * unigram  # ... and a trained one memorises the set


def test_run_probe_reports_every_backbone() -> None:
    corpus = ProbeCorpus(vocab_size=8, motif_len=2, gap=4, tail=2)
    report = run_probe(["transformer", "mamba"], steps=2, corpus=corpus, eval_batch=4)
    assert [r["backbone"] for r in report["results"]] == ["transformer", "mamba"]
    counts = [r["n_parameters"] for r in report["results"]]
    assert abs(counts[0] - counts[1]) / counts[0] < 0.05
    table = probe_markdown(report)
    assert "| transformer |" in table and "| mamba |" in table


def test_cli_probe_prints_table_and_writes_json(tmp_path, capsys) -> None:
    import json

    from mambakit.cli import main

    out = tmp_path / "probe.json"
    code = main(
        [
            "lm",
            "probe",
            "--backbones",
            "mamba,hybrid",
            "--steps",
            "1",
            "--gap",
            "2",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    assert "| hybrid |" in capsys.readouterr().out
    assert [r["backbone"] for r in json.loads(out.read_text())["results"]] == ["mamba", "hybrid"]
