"""The timbre evaluation: content preservation on steady notes, reconstruction scores, and
runs labelled with their training objective and whether the pairs were held out."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mambakit.eval.timbre import (
    curve_agreement,
    evaluate_runs,
    evaluation_markdown,
    gain_by_interval,
    mfcc_statistics,
    pair_metrics,
    pitch_accuracy,
    pitch_curve,
    run_info,
)
from mambakit.timbre.data import make_procedural_instruments
from mambakit.timbre.training import UNetTraining, timbre_train_config, train_timbre

SR = 16000


def _note(f0, seconds=1.0, harmonics=(1.0,), glide=0.0):
    """A decaying note; ``glide`` semitones per second bends its pitch."""
    t = torch.arange(int(seconds * SR)) / SR
    freq = f0 * 2 ** (glide * t / 12)
    phase = 2 * torch.pi * torch.cumsum(freq, 0) / SR
    wave = sum(a * torch.sin((h + 1) * phase) for h, a in enumerate(harmonics))
    return 0.5 * wave / max(harmonics) * torch.exp(-2 * t)


SINE, BRIGHT = (1.0,), (1.0, 0.7, 0.5, 0.4, 0.3)


def test_a_steady_note_in_another_timbre_keeps_its_content():
    """Correlating two flat pitch curves measures YIN jitter (it was -0.17 here); a flat
    curve is judged by agreement instead."""
    content, target = _note(220.0, harmonics=SINE), _note(220.0, harmonics=BRIGHT)
    perfect = pair_metrics(target, content, target, SR)
    assert perfect["pitch_corr"] > 0.95 and perfect["pitch_accuracy"] > 0.95
    assert perfect["loudness_corr"] > 0.95 and perfect["style_gain"] == pytest.approx(1.0)
    fifth_up = pair_metrics(_note(330.0, harmonics=BRIGHT), content, target, SR)
    assert fifth_up["pitch_corr"] < 0.05 and fifth_up["pitch_accuracy"] < 0.05


def test_a_moving_pitch_is_judged_by_correlation():
    content = _note(220.0, glide=6.0)
    same_glide = pitch_curve(_note(220.0, harmonics=BRIGHT, glide=6.0).numpy(), SR)
    falling = pitch_curve(_note(440.0, harmonics=BRIGHT, glide=-6.0).numpy(), SR)
    reference = pitch_curve(content.numpy(), SR)
    assert curve_agreement(same_glide, reference, 0.1, 0.5) > 0.99
    assert curve_agreement(falling, reference, 0.1, 0.5) < -0.9


def test_curve_agreement_and_pitch_accuracy_on_known_curves():
    flat = np.full(20, 60.0)
    assert curve_agreement(flat + 0.01 * np.sin(np.arange(20)), flat, 0.1, 0.5) == 1.0
    assert curve_agreement(flat + 1.0, flat, 0.1, 0.5) == 0.0  # a semitone off everywhere
    half_unvoiced = flat.copy()
    half_unvoiced[:10] = np.nan  # output unvoiced where the content is voiced: misses
    assert curve_agreement(half_unvoiced, flat, 0.1, 0.5) == pytest.approx(0.5)
    assert pitch_accuracy(half_unvoiced, flat) == pytest.approx(0.5)
    assert curve_agreement(np.full(20, np.nan), flat, 0.1, 0.5) == 0.0
    assert pitch_accuracy(flat, np.full(20, np.nan)) == 0.0  # nothing voiced to follow


def test_reconstruction_scores_compare_with_the_content():
    content, target = _note(220.0), _note(220.0, harmonics=BRIGHT)
    scores = pair_metrics(target, content, target, SR, reconstruction=content)
    assert scores["recon_si_sdr"] > 100 and scores["recon_stft_dist"] == pytest.approx(0, abs=1e-6)
    noisy = pair_metrics(target, content, target, SR, reconstruction=content + 0.05 * target)
    assert noisy["recon_si_sdr"] < 40 and noisy["recon_stft_dist"] > 0
    assert math.isnan(pair_metrics(target, content, target, SR)["recon_si_sdr"])


@pytest.fixture(scope="module")
def two_runs(procedural_dir, tmp_path_factory):
    """A transfer run (GAN) and a reconstruction run (no GAN), two steps each, on the
    procedural set."""
    root = tmp_path_factory.mktemp("timbre-runs")
    runs = {}
    for objective in ("transfer", "reconstruction"):
        runs[objective] = root / objective
        options = UNetTraining(objective=objective, adversarial=objective == "transfer")
        train = timbre_train_config(2, batch_size=2, progress=False)
        train_timbre(procedural_dir, runs[objective], train, "tiny", options)
    return runs


def test_run_info_reads_the_objective_budget_and_shared_notes(two_runs, procedural_dir, tmp_path):
    info = run_info(two_runs["reconstruction"], procedural_dir)
    assert info["objective"] == "reconstruction" and info["preset"] == "tiny"
    assert info["adversarial"] is False
    assert info["budget"] == {"steps": 2, "minutes": None, "batch_size": 2,
                              "segment_seconds": 0.128}  # fmt: skip
    assert info["trained_steps"] == 2 and info["train_seconds"] > 0
    assert info["shared_notes"] == 9 and info["shared_instruments"] == 3  # trained on them
    other = make_procedural_instruments(tmp_path / "other", n_instruments=2, pitches=(57, 62),
                                        seconds=0.4)  # fmt: skip
    held_out = run_info(two_runs["transfer"], other)
    assert held_out["objective"] == "transfer" and held_out["shared_notes"] == 0
    assert held_out["adversarial"] is True
    assert held_out["shared_instruments"] == 2  # procedural names repeat across sets
    renamed = make_procedural_instruments(tmp_path / "renamed", n_instruments=2, pitches=(57,),
                                          seconds=0.4, seed=1, prefix="heldout")  # fmt: skip
    assert run_info(two_runs["transfer"], renamed)["shared_instruments"] == 0
    bare = run_info(tmp_path, other)
    assert bare["objective"] is None and bare["shared_notes"] is None
    assert bare["adversarial"] is None


def test_evaluate_runs_labels_each_run_and_warns_when_pairs_were_seen(two_runs, procedural_dir):
    runs = [two_runs["transfer"], two_runs["reconstruction"]]
    with pytest.warns(UserWarning, match="not held out"):
        result = evaluate_runs(runs, procedural_dir, n_pairs=2, progress=False)
    assert result["kind"] == "timbre-eval" and result["n_pairs"] == 2
    assert [r["objective"] for r in result["runs"]] == ["transfer", "reconstruction"]
    for row in result["runs"]:
        assert row["pairs"] == 2 and np.isfinite(row["recon_si_sdr"])
        assert 0.0 <= row["pitch_accuracy"] <= 1.0
        assert len(row["style_gain_per_pair"]) == row["pairs"]
        assert np.mean(row["style_gain_per_pair"]) == pytest.approx(row["style_gain"])
        assert len(row["interval_per_pair"]) == row["pairs"]
        assert row["style_gain_by_interval"] == gain_by_interval(
            row["style_gain_per_pair"], row["interval_per_pair"]
        )
    reference = result["reference"]  # the targets as outputs: a perfect transfer
    assert reference["pairs"] == 2 and reference["style_gain"] == pytest.approx(1.0)
    assert reference["si_sdr"] > 100 and math.isnan(reference["recon_si_sdr"])
    md = evaluation_markdown(result)
    assert "| metric | transfer | reconstruction | target (perfect transfer) |" in md
    assert "| held out | no (9 notes in training) | no (9 notes in training) | - |" in md
    assert "| trained steps | 2 | 2 | - |" in md
    assert "| losses | GAN + mel + STFT | mel + STFT | - |" in md
    assert "| pairs | 2 | 2 | 2 |" in md and "| recon_si_sdr ↑ |" in md
    result["runs"][1]["mfcc_weight"] = 1.0  # a run trained with the MFCC-statistics term
    assert "| losses | GAN + mel + STFT | mel + STFT + 1 x MFCC stats | - |" in (
        evaluation_markdown(result)
    )
    json.dumps(result)  # what `eval timbre --json` writes


def test_gain_by_interval_groups_the_pairs_by_the_style_notes_distance():
    gains, intervals = [0.6, 0.4, 0.2, -0.1, 0.3], [2, -3, 7, -14, 12]
    bands = gain_by_interval(gains, intervals)
    assert [(b["lo"], b["hi"], b["pairs"]) for b in bands] == [(0, 4, 2), (5, 12, 2), (13, 127, 1)]
    assert [b["style_gain"] for b in bands] == pytest.approx([0.5, 0.25, -0.1])
    assert gain_by_interval([0.5], [1])[2]["style_gain"] is None  # an empty band
    new = {"name": "a", "pairs": 5, "style_gain": 0.28, "style_gain_by_interval": bands}
    result = {"runs": [new, {"name": "old", "pairs": 5, "style_gain": 0.1}]}  # saved before
    md = evaluation_markdown(result)
    assert "| style_gain, style 0-4 semitones away (2 pairs) ↑ | 0.500 | - |" in md
    assert "| style_gain, style > 12 semitones away (1 pairs) ↑ | -0.100 | - |" in md


def test_style_distance_ignores_level_and_sees_the_spectral_shape():
    """c0 is left out of the MFCC statistics: a copy 12 dB quieter is nearly the same
    timbre (not exactly: the log floor of near-empty mel bins moves with the level)."""
    dark, bright = _note(220.0, harmonics=SINE), _note(220.0, harmonics=BRIGHT)
    same = mfcc_statistics(bright, SR)
    assert same.shape == (38,)
    quieter = float((mfcc_statistics(0.25 * bright, SR) - same).norm())  # 3.4 here
    other = float((mfcc_statistics(dark, SR) - same).norm())  # 23.3 here
    assert quieter < 0.2 * other
