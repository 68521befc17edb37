"""The verdict rules on hand-made results with a known answer: their decisions and the
numbers they compared; and the one renderer that words evidence."""

import math

import pytest

from mambakit.eval.claims import (
    FAILS,
    HOLDS,
    UNMEASURED,
    Evidence,
    all_verdicts,
    coherent_claim,
    first_batch_claim,
    full_res_claim,
    hybrid_claim,
    lm_decode_memory_claim,
    logcascade_memory_claim,
    no_adsr_claim,
    no_sine_claim,
    verdicts_markdown,
    word,
)


def variant(name, loss=1.0, fundamental=0.5, cents=10.0, percussive=1.0, centroid=0.05,
            seconds_per_step=1.0, memory=100.0):  # fmt: skip
    return {
        "name": name,
        "seconds_per_step": seconds_per_step,
        "peak_memory_mb": memory,
        "train_tail": {"loss": loss},
        "scores": {"median_pitch_error_cents": cents},
        "profile": {
            "fundamental_fraction": fundamental,
            "percussive_rate": percussive,
            "median_energy_centroid_s": centroid,
        },
    }


def ablations(*variants):
    return {"kind": "ablations", "variants": list(variants)}


def test_no_sine_holds_only_with_lower_loss_and_a_worse_fundamental():
    full = variant("full")
    as_claimed = variant("no_sine", loss=0.8, fundamental=0.1, cents=300.0)
    assert no_sine_claim(ablations(full, as_claimed)).verdict == HOLDS
    higher_loss = variant("no_sine", loss=1.2, fundamental=0.1, cents=300.0)
    assert no_sine_claim(ablations(full, higher_loss)).verdict == FAILS
    fundamental_kept = variant("no_sine", loss=0.8, fundamental=0.6, cents=5.0)
    verdict = no_sine_claim(ablations(full, fundamental_kept))
    assert verdict.verdict == FAILS
    assert verdict.numbers["fundamental"] == 0.6 and verdict.numbers["fundamental_full"] == 0.5
    unpitched = variant("no_sine", loss=0.8, fundamental=0.1, cents=math.nan)
    assert no_sine_claim(ablations(full, unpitched)).verdict == UNMEASURED
    assert no_sine_claim(None).verdict == UNMEASURED


def test_no_adsr_holds_when_its_sounds_are_sustained():
    full = variant("full", percussive=0.9, centroid=0.05)
    sustained = variant("no_adsr", percussive=0.1, centroid=0.4)
    assert no_adsr_claim(ablations(full, sustained)).verdict == HOLDS
    still_percussive = variant("no_adsr", percussive=0.9, centroid=0.05)
    assert no_adsr_claim(ablations(full, still_percussive)).verdict == FAILS
    missing_run = no_adsr_claim(ablations(full))
    assert missing_run.verdict == UNMEASURED
    assert missing_run.numbers == {"lacking": "no no_adsr run in the ablations result"}


def test_full_res_needs_twice_the_time_and_the_memory():
    full = variant("full", seconds_per_step=1.0, memory=100.0)
    costly = variant("full_res", seconds_per_step=8.0, memory=900.0)
    verdict = full_res_claim(ablations(full, costly))
    assert verdict.verdict == HOLDS
    assert (verdict.numbers["time_ratio"], verdict.numbers["memory_ratio"]) == (8.0, 9.0)
    fast = variant("full_res", seconds_per_step=8.0, memory=150.0)
    assert full_res_claim(ablations(full, fast)).verdict == FAILS
    unmeasured_full = variant("full", seconds_per_step=0.0, memory=100.0)
    zero = full_res_claim(ablations(unmeasured_full, costly))
    assert zero.verdict == UNMEASURED
    assert zero.numbers == {"lacking": "full's time or memory measured as zero"}
    unmeasured = variant("full_res", seconds_per_step=8.0, memory=None)
    assert full_res_claim(ablations(full, unmeasured)).verdict == UNMEASURED


def test_logcascade_memory_claim_reads_the_drums_bench():
    def bench(ratio):
        return {"rows": [{"model": "mamba2_20hz", "pass": "fwd+bwd", "mem_ratio": ratio}]}

    assert logcascade_memory_claim(bench(300.0)).verdict == HOLDS
    assert logcascade_memory_claim(bench(40.0)).verdict == FAILS
    assert logcascade_memory_claim({"rows": []}).verdict == UNMEASURED
    forward_only = {"rows": [{"model": "mamba2_20hz", "pass": "fwd", "mem_ratio": 390.0}]}
    verdict = logcascade_memory_claim(forward_only)
    assert verdict.verdict == HOLDS and verdict.numbers == {"ratio": 390.0, "pass": "fwd"}
    both = {"rows": [*bench(40.0)["rows"], *forward_only["rows"]]}
    assert logcascade_memory_claim(both).verdict == FAILS  # fwd+bwd wins when measured


def row(batches, peak=-6.0, corr=0.9, percussive=1.0, cents=20.0, accuracy=0.8):
    return {
        "batches": batches,
        "scores": {
            "envelope_correlation": corr,
            "median_pitch_error_cents": cents,
            "tag_accuracy": accuracy,
        },
        "profile": {"median_peak_db": peak, "percussive_rate": percussive},
    }


def early(*rows, scaffold_accuracy=0.5, batch_size=2):
    return {
        "kind": "early-training",
        "config": {"batch_size": batch_size},
        "rows": list(rows),
        "scaffold": {"scores": {"tag_accuracy": scaffold_accuracy}},
    }


def test_first_batch_is_usable_when_audible_shaped_and_on_pitch():
    assert first_batch_claim(early(row(1))).verdict == HOLDS
    silent = first_batch_claim(early(row(1, peak=-90.0)))
    assert silent.verdict == FAILS and silent.numbers["peak_db"] == -90.0
    assert len(silent.wording) == 1 and "median peak" in silent.wording[0]  # the one failure
    assert first_batch_claim(early(row(1, cents=math.nan))).verdict == HOLDS  # no tonal request
    assert first_batch_claim(early(row(1, cents=700.0))).verdict == FAILS
    assert first_batch_claim(early(row(2))).verdict == UNMEASURED
    assert "batches of 4" in first_batch_claim(early(row(1), batch_size=4)).claim


def test_coherent_within_fifty_batches_compares_with_the_scaffold():
    late = early(row(1, accuracy=0.2), row(50, accuracy=0.6), row(200, accuracy=0.9))
    verdict = coherent_claim(late)
    assert verdict.verdict == HOLDS and verdict.numbers["batches"] == 50
    never = early(row(10, accuracy=0.2), row(50, accuracy=0.4), row(200, accuracy=0.9))
    assert coherent_claim(never).verdict == FAILS
    assert coherent_claim(early(row(10, accuracy=0.2))).verdict == UNMEASURED


def test_all_verdicts_without_results_are_not_measured_and_render_as_a_table():
    verdicts = all_verdicts({})
    assert len(verdicts) >= 7 and {v.verdict for v in verdicts} == {UNMEASURED}
    assert hybrid_claim(None).claim in {v.claim for v in verdicts}
    md = verdicts_markdown(verdicts)
    assert md.count("**not measured here**") == len(verdicts) and "| seed claim |" in md


def compare(hybrid_losses, transformer_losses, part="codec"):
    """An lm-compare result with the given per-seed losses on ``part``."""
    from mambakit.eval.lm_compare import summarize_runs

    runs = [
        {"backbone": backbone, "seed": seed, "n_parameters": params, "loss": loss}
        for backbone, losses, params in (
            ("transformer", transformer_losses, 1000),
            ("hybrid", hybrid_losses, 990),
        )
        for seed, loss in enumerate(losses)
    ]
    data = {"runs": runs, "summary": summarize_runs(runs, ["loss"])}
    other = {"runs": [], "summary": []}
    return {
        "kind": "lm-compare",
        "config": {"split": "val"},
        "codec": data if part == "codec" else None,
        "probes": data if part == "probes" else other,
    }


def test_hybrid_claim_needs_a_margin_larger_than_the_seed_spread():
    # means 5.0 vs 5.3, ranges 0.2 and 0.1: margin 0.3 > spread 0.2
    verdict = hybrid_claim(compare([4.9, 5.0, 5.1], [5.25, 5.3, 5.35]))
    assert verdict.verdict == HOLDS
    numbers = verdict.numbers
    assert numbers["where"] == "on codec tokens (val split)" and numbers["seeds"] == 3
    assert numbers["margin"] == pytest.approx(0.3) and numbers["spread"] == pytest.approx(0.2)
    assert numbers["parameter_ratio"] == pytest.approx(0.99)
    # lower on average, but by less than the spread of the seeds
    assert hybrid_claim(compare([4.9, 5.2, 5.5], [5.25, 5.3, 5.35])).verdict == FAILS
    assert hybrid_claim(compare([5.4, 5.5], [5.0, 5.1])).verdict == FAILS  # the hybrid is worse


def test_hybrid_claim_says_which_data_and_when_it_cannot_tell():
    on_probes = hybrid_claim(compare([1.0, 1.01], [2.0, 2.02], part="probes"))
    assert on_probes.verdict == HOLDS
    assert on_probes.numbers["where"] == "on the synthetic probes only"
    one_seed = hybrid_claim(compare([1.0], [2.0]))
    assert one_seed.verdict == UNMEASURED and one_seed.numbers["lacking"].endswith(
        "need 2 for a spread"
    )
    no_hybrid = compare([1.0, 1.1], [2.0, 2.1])
    no_hybrid["codec"]["summary"] = no_hybrid["codec"]["summary"][:1]
    assert hybrid_claim(no_hybrid).numbers["lacking"].startswith("no hybrid runs on codec tokens")
    assert hybrid_claim(None).verdict == UNMEASURED


def lm_bench(mamba_steps, attn_steps, mamba_cache=(2.1, 2.1), attn_cache=(3.5, 162.0)):
    """A bench-lm result: step ms and cache MiB at 1 s and 60 s of context."""
    rows = []
    for backbone, steps, caches in (("mamba2", mamba_steps, mamba_cache),
                                    ("transformer", attn_steps, attn_cache)):  # fmt: skip
        for seconds, step, cache in zip((60.0, 1.0), steps[::-1], caches[::-1]):  # unsorted
            rows.append({"backbone": backbone, "context_seconds": seconds, "step_ms": step,
                         "tokens_per_s": 9000 / step, "cache_mb": cache})  # fmt: skip
    return {"batch_size": 1, "rows": rows}


def test_lm_decode_memory_claim_needs_a_flat_cache_and_step_time():
    verdict = lm_decode_memory_claim(lm_bench((15.0, 16.5), (15.0, 26.0)))
    assert verdict.verdict == HOLDS
    assert verdict.numbers["step_growth"] == pytest.approx(1.1)
    assert verdict.numbers["attention_cache_long"] == 162.0
    assert lm_decode_memory_claim(lm_bench((15.0, 19.5), (15.0, 26.0))).verdict == FAILS  # 1.3x
    growing = lm_bench((15.0, 15.0), (15.0, 26.0), mamba_cache=(2.1, 4.2))
    assert lm_decode_memory_claim(growing).verdict == FAILS
    assert lm_decode_memory_claim(None).verdict == UNMEASURED
    assert lm_decode_memory_claim({"rows": lm_bench((1, 1), (1, 1))["rows"][:2]}).verdict == (
        UNMEASURED  # no transformer rows
    )


def test_lm_decode_memory_claim_reads_the_fp32_rows_of_a_bench_with_decode_weights():
    result = lm_bench((15.0, 16.5), (15.0, 26.0))
    for r in result["rows"]:
        r["weights"] = "fp32"
    faster_short = {1.0: 4.0, 60.0: 1.0}  # int8 steps 4x faster at 1 s only
    int8 = [r | {"weights": "int8", "step_ms": r["step_ms"] / faster_short[r["context_seconds"]]}
            for r in result["rows"]]  # fmt: skip
    verdict = lm_decode_memory_claim({"rows": int8 + result["rows"]})
    assert verdict.verdict == HOLDS  # the int8 rows alone would grow 4.4x
    assert verdict.numbers["step_growth"] == pytest.approx(1.1)


def test_word_formats_every_clause_and_reads_none_as_missing():
    evidence = Evidence(
        "a claim", HOLDS, "cmd", {"ratio": 2.345, "where": "here", "estimate": None},
        ("ratio {ratio:.1f}x {where}", "; estimate {estimate:.0f} MB"),
    )  # fmt: skip
    assert word(evidence) == evidence.why == "ratio 2.3x here; estimate missing MB"
    assert "| a claim | **holds** | ratio 2.3x here; estimate missing MB | `cmd` |" in (
        verdicts_markdown([evidence])
    )
