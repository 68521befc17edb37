"""The timbre verdict rules (memory, real time, transfer vs reconstruction) on hand-made
results with a known answer, and the report sections that show those results."""

from __future__ import annotations

import json
import os

import pytest

from mambakit.eval.claims import (
    FAILS,
    HOLDS,
    UNMEASURED,
    all_verdicts,
    timbre_memory_claim,
    timbre_realtime_claim,
    timbre_transfer_claim,
)
from mambakit.eval.timbre import METRICS
from mambakit.report import build_report

CPU_META = {
    "machine": {"platform": "Linux-x", "cpu_cores": 2, "cpu": "Some CPU", "torch": "2.13",
                "device": "cpu"},
    "command": "mambakit bench timbre --json out/bench/timbre.json",
    "git_commit": "0123456789abcdef",
    "date_utc": "2026-01-01T00:00:00+00:00",
}  # fmt: skip


def bench_row(preset="base", mamba="uni", peak=300.0, rtf=3.0, clip=2.1):
    return {
        "preset": preset, "mamba": mamba, "bidirectional": mamba == "bi", "params": 4167298,
        "params_m": 4.167298, "clip_seconds": clip, "transfer_seconds": 10.0,
        "train_peak_mb": peak, "train_vs_seed": None if peak is None else peak / 275.25,
        "infer_peak_mb": 80.0, "summary_estimate_mb": 250.0, "train_step_s": 1.5,
        "infer_s": 0.4, "chunks": 5, "x_realtime_clip": 4.0, "transfer_clip_s": 0.5,
        "x_realtime_long": rtf, "transfer_long_s": 10.0 / rtf if rtf else None,
    }  # fmt: skip


def bench(*rows, meta=CPU_META):
    config = {"clip_seconds": 2.1, "sample_rate": 16000, "transfer_seconds": 10.0}
    return {"kind": "bench-timbre", "rows": list(rows), "meta": meta, "config": config}


def test_memory_claim_holds_within_one_and_a_half_times_the_seed():
    verdict = timbre_memory_claim(bench(bench_row(peak=300.0)))
    assert verdict.verdict == HOLDS
    numbers = verdict.numbers
    assert numbers["peak_mb"] == 300.0 and numbers["ratio"] == pytest.approx(300.0 / 275.25)
    assert numbers["device"] == "CPU (2 cores, Some CPU)" and numbers["estimate_mb"] == 250.0
    assert timbre_memory_claim(bench(bench_row(peak=1.5 * 275.25))).verdict == HOLDS  # the edge
    assert timbre_memory_claim(bench(bench_row(peak=500.0))).verdict == FAILS  # 1.82x
    # the bidirectional base row is not the seed's model
    only_bi = bench(bench_row(mamba="bi", peak=300.0), bench_row("tiny", peak=10.0))
    assert timbre_memory_claim(only_bi).verdict == UNMEASURED
    assert timbre_memory_claim(bench(bench_row(peak=None))).verdict == UNMEASURED
    assert timbre_memory_claim(None).verdict == UNMEASURED
    short = timbre_memory_claim(bench(bench_row(peak=100.0, clip=1.0)))
    assert short.verdict == HOLDS and "(measured at 1 s)" in short.claim


def test_realtime_claim_needs_more_audio_than_wall_seconds_and_names_the_device():
    verdict = timbre_realtime_claim(bench(bench_row(rtf=3.0)))
    assert verdict.verdict == HOLDS
    numbers = verdict.numbers
    assert numbers["x_realtime"] == 3.0 and numbers["device"] == "CPU (2 cores, Some CPU)"
    assert (numbers["seconds"], numbers["chunks"]) == (10.0, 5)
    assert timbre_realtime_claim(bench(bench_row(rtf=0.4))).verdict == FAILS
    assert timbre_realtime_claim(bench(bench_row(rtf=1.0))).verdict == FAILS  # exactly real time
    assert timbre_realtime_claim(bench(bench_row(rtf=None))).verdict == UNMEASURED
    assert timbre_realtime_claim({"rows": []}).verdict == UNMEASURED
    gpu = {**CPU_META, "machine": {**CPU_META["machine"], "gpu": "NVIDIA H200"}}
    assert timbre_realtime_claim(bench(bench_row(), meta=gpu)).numbers["device"] == "NVIDIA H200"


def eval_row(name, objective, style_gain=0.3, pitch=0.95, loudness=0.97, budget=None,
             shared_notes=0):  # fmt: skip
    row = {name: 0.0 for name in METRICS}
    row.update(
        run=f"out/timbre/{name}", name=name, objective=objective, preset="small",
        budget=budget or {"steps": None, "minutes": 30.0, "batch_size": 8},
        train_data="out/timbre/train", trained_steps=900, train_seconds=1800.0,
        shared_notes=shared_notes, shared_instruments=0, pairs=32, style_gain=style_gain,
        pitch_corr=pitch, loudness_corr=loudness,
    )  # fmt: skip
    return row


def evaluation(*rows):
    return {"kind": "timbre-eval", "pairs_dir": "out/timbre/heldout", "n_pairs": 32,
            "alpha": None, "seed": 0, "runs": list(rows), "meta": CPU_META}  # fmt: skip


def test_transfer_claim_compares_style_gain_and_needs_the_content_kept():
    recon = eval_row("recon", "reconstruction", style_gain=0.05)
    verdict = timbre_transfer_claim(evaluation(eval_row("xfer", "transfer"), recon))
    assert verdict.verdict == HOLDS
    numbers = verdict.numbers
    assert (numbers["gain"], numbers["name"]) == (0.3, "xfer")
    assert (numbers["gain_baseline"], numbers["name_baseline"]) == (0.05, "recon")
    assert "budget" not in numbers and "not_held_out" not in numbers
    worse_style = eval_row("xfer", "transfer", style_gain=0.01)
    assert timbre_transfer_claim(evaluation(worse_style, recon)).verdict == FAILS
    lost_pitch = eval_row("xfer", "transfer", pitch=0.85)
    verdict = timbre_transfer_claim(evaluation(lost_pitch, recon))
    assert verdict.verdict == FAILS and verdict.numbers["pitch"] == 0.85
    lost_loudness = eval_row("xfer", "transfer", loudness=0.5)
    assert timbre_transfer_claim(evaluation(lost_loudness, recon)).verdict == FAILS
    assert verdict.numbers["pitch_reference"] is None  # no reference row in this result
    assert not any("perfect transfer" in clause for clause in verdict.wording)


def test_transfer_claim_asks_no_more_loudness_agreement_than_a_perfect_transfer_has():
    recon = eval_row("recon", "reconstruction", style_gain=0.05)
    result = evaluation(eval_row("xfer", "transfer", loudness=0.5), recon)
    result["reference"] = eval_row("target", None, style_gain=1.0, pitch=0.99, loudness=0.4)
    verdict = timbre_transfer_claim(result)
    assert verdict.verdict == HOLDS  # 0.5 >= the targets' own 0.4
    numbers = verdict.numbers
    assert (numbers["pitch_reference"], numbers["loudness_reference"]) == (0.99, 0.4)
    assert (numbers["pitch_needed"], numbers["loudness_needed"]) == (0.9, 0.4)
    result["runs"][0] = eval_row("xfer", "transfer", loudness=0.3)  # less than the targets
    assert timbre_transfer_claim(result).verdict == FAILS
    result["runs"][0] = eval_row("xfer", "transfer", pitch=0.8)  # the notes are not kept
    assert timbre_transfer_claim(result).verdict == FAILS
    result["reference"] = eval_row("target", None, loudness=0.97)  # never above 0.9 needed
    result["runs"][0] = eval_row("xfer", "transfer", loudness=0.92)
    assert timbre_transfer_claim(result).verdict == HOLDS
    # the same cap for pitch: the tracker can disagree with itself across timbres
    result["reference"] = eval_row("target", None, pitch=0.8, loudness=0.2)
    result["runs"][0] = eval_row("xfer", "transfer", pitch=0.84, loudness=0.8)
    assert timbre_transfer_claim(result).verdict == HOLDS
    result["runs"][0] = eval_row("xfer", "transfer", pitch=0.7, loudness=0.8)
    assert timbre_transfer_claim(result).verdict == FAILS


def test_transfer_claim_needs_the_paired_gain_difference_above_its_noise():
    transfer = eval_row("xfer", "transfer", style_gain=0.2)
    recon = eval_row("recon", "reconstruction", style_gain=0.1)
    transfer["style_gain_per_pair"] = [0.3, 0.1, 0.25, 0.15]
    recon["style_gain_per_pair"] = [0.1, 0.1, 0.1, 0.1]  # diffs .2, 0, .15, .05: SE 0.0456
    verdict = timbre_transfer_claim(evaluation(transfer, recon))
    assert verdict.verdict == HOLDS  # 0.1 > 2 x 0.0456
    numbers = verdict.numbers
    assert numbers["difference"] == pytest.approx(0.1) and numbers["share_higher"] == 0.75
    assert numbers["se"] == pytest.approx(0.0456, abs=1e-4)
    transfer["style_gain_per_pair"] = [0.5, -0.1, 0.4, 0.0]  # same mean, noisier: SE 0.15
    assert timbre_transfer_claim(evaluation(transfer, recon)).verdict == FAILS
    transfer["style_gain_per_pair"] = [0.3]  # unequal lengths: the means decide
    verdict = timbre_transfer_claim(evaluation(transfer, recon))
    assert verdict.verdict == HOLDS and "difference" not in verdict.numbers


def test_transfer_claim_reads_the_objective_of_each_run():
    transfer = eval_row("xfer", "transfer")
    missing = timbre_transfer_claim(evaluation(transfer, eval_row("other", "transfer")))
    assert missing.verdict == UNMEASURED
    assert missing.numbers["lacking"] == "no run trained with objective reconstruction"
    unlabelled = eval_row("old", None)  # a run without timbre_train.json
    assert timbre_transfer_claim(evaluation(transfer, unlabelled)).verdict == UNMEASURED
    assert timbre_transfer_claim(None).verdict == UNMEASURED
    no_numbers = eval_row("recon", "reconstruction", style_gain=float("nan"))
    assert timbre_transfer_claim(evaluation(transfer, no_numbers)).verdict == UNMEASURED


def test_transfer_claim_flags_unequal_budgets_and_pairs_seen_in_training():
    transfer = eval_row("xfer", "transfer", shared_notes=12)
    recon = eval_row("recon", "reconstruction", style_gain=0.0,
                     budget={"steps": None, "minutes": 5.0, "batch_size": 8})  # fmt: skip
    numbers = timbre_transfer_claim(evaluation(transfer, recon)).numbers
    assert numbers["not_held_out"] == "xfer"
    assert numbers["budget"]["minutes"] == 30.0 and numbers["budget_baseline"]["minutes"] == 5.0


def test_all_verdicts_judge_the_timbre_results():
    results = {
        "bench_timbre": bench(bench_row(peak=300.0, rtf=0.5)),
        "eval_timbre": evaluation(eval_row("xfer", "transfer"),
                                  eval_row("recon", "reconstruction", style_gain=0.0)),
    }  # fmt: skip
    by_claim = {v.claim: v.verdict for v in all_verdicts(results)}
    assert by_claim[timbre_memory_claim(None).claim] == HOLDS
    assert by_claim[timbre_realtime_claim(None).claim] == FAILS
    assert by_claim[timbre_transfer_claim(None).claim] == HOLDS
    unmeasured = {v.claim: v.verdict for v in all_verdicts({})}
    assert unmeasured[timbre_transfer_claim(None).claim] == UNMEASURED


def test_report_renders_the_timbre_sections_and_verdicts(tmp_path):
    out = tmp_path / "out"
    (out / "bench").mkdir(parents=True)
    (out / "timbre").mkdir()
    rows = [bench_row("tiny", peak=12.0, rtf=30.0), bench_row(peak=300.0, rtf=2.5)]
    (out / "bench" / "timbre.json").write_text(json.dumps(bench(*rows)))
    result = evaluation(eval_row("xfer", "transfer"),
                        eval_row("recon", "reconstruction", style_gain=0.0))  # fmt: skip
    (out / "timbre" / "eval.json").write_text(json.dumps(result))
    (out / "timbre" / "other.json").write_text(json.dumps({"kind": "something-else"}))
    text = build_report(out, tmp_path / "docs").read_text()
    assert "## Timbre transfer: size, memory and speed" in text
    assert "| tiny | uni | 4.17 | 12.00 |" in text and "| base | uni | 4.17 | 300 |" in text
    assert "command `mambakit bench timbre --json out/bench/timbre.json`" in text
    assert "## Timbre transfer: runs side by side on held-out pairs" in text
    assert "Held-out pairs from `out/timbre/heldout`" in text
    assert "| metric | xfer | recon |" in text
    assert "| objective | transfer | reconstruction |" in text
    assert "| style_gain ↑ | 0.300 | 0.000 |" in text and "| held out | yes | yes |" in text
    assert "| **holds** | base preset (4.17 M parameters): measured peak 300 MB" in text
    assert "| **holds** | base preset: 2.50x real time" in text
    assert "| **holds** | pairs `out/timbre/heldout`: style gain 0.300 (xfer, transfer)" in text

    # every evaluation gets its own section and its own verdict, oldest first
    (out / "timbre-nogan").mkdir()
    newer = evaluation(eval_row("xfer2", "transfer", style_gain=-0.1),
                       eval_row("recon2", "reconstruction", style_gain=0.0))  # fmt: skip
    newer["pairs_dir"] = "out/other-heldout"
    for row in newer["runs"]:
        row["adversarial"] = False
    (out / "timbre-nogan" / "eval.json").write_text(json.dumps(newer))
    stamp = (out / "timbre" / "eval.json").stat().st_mtime
    os.utime(out / "timbre-nogan" / "eval.json", (stamp + 10, stamp + 10))
    text = build_report(out, tmp_path / "docs").read_text()
    assert text.count("## Timbre transfer: runs side by side on held-out pairs") == 2
    assert "| metric | xfer | recon |" in text and "| metric | xfer2 | recon2 |" in text
    first = text.index("| **holds** | pairs `out/timbre/heldout`: style gain 0.300 (xfer")
    second = text.index("| **does not hold** | pairs `out/other-heldout`: style gain -0.100")
    assert first < second < text.index("## Timbre transfer: size")
    assert "losses: mel + STFT (transfer), mel + STFT (reconstruction)" in text
    assert text.count("losses: ") == 1  # the older rows do not record it


def _engine_result(gain=0.6, pitch=0.98, speed=80.0, shared=0, unet=True):
    scaffold = {"name": "gm-timbre", "engine": "scaffold", "objective": "transfer",
                "shared_notes": shared, "style_gain": gain, "pitch_accuracy": pitch,
                "x_realtime": speed, "speed_seconds": 10.0,
                "style_gain_per_pair": [gain + 0.1, gain - 0.1, gain]}  # fmt: skip
    runs = [scaffold]
    if unet:
        runs.append({"name": "unet", "engine": "unet", "objective": "transfer", "shared_notes": 0,
                     "style_gain": 0.17, "pitch_accuracy": 0.975, "x_realtime": 12.8,
                     "style_gain_per_pair": [0.2, 0.1, 0.2]})  # fmt: skip
    return {"kind": "timbre-eval", "pairs_dir": "heldout", "runs": runs}


def test_engine_claim_applies_the_three_targets():
    from mambakit.eval.claims import timbre_engine_claim

    assert timbre_engine_claim(_engine_result()).verdict == HOLDS
    for miss in ({"gain": 0.49}, {"pitch": 0.96}, {"speed": 49.0}, {"shared": 3}):
        assert timbre_engine_claim(_engine_result(**miss)).verdict == FAILS, miss
    why = timbre_engine_claim(_engine_result()).why
    assert "U-Net unet: style gain 0.170" in why and "paired style-gain difference +0.433" in why
    assert "no U-Net run" in timbre_engine_claim(_engine_result(unet=False)).why
    assert timbre_engine_claim({"runs": [{"engine": "unet"}]}).verdict == UNMEASURED
    scale = {**_engine_result(), "style_notes": 3}  # not the one-note pairs
    assert timbre_engine_claim(scale).verdict == UNMEASURED
    assert "style clips of 3 notes" in timbre_engine_claim(scale).why


def test_a_scaffold_only_comparison_is_not_read_as_transfer_vs_reconstruction():
    verdicts = all_verdicts({"eval_timbre": _engine_result(unet=False)})
    transfer = [v for v in verdicts if v.claim.startswith("Transfer training beats")]
    engine = [v for v in verdicts if v.claim.startswith("The scaffold engine")]
    assert [v.verdict for v in transfer] == [UNMEASURED] and [v.verdict for v in engine] == [HOLDS]
