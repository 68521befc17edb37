"""``mambakit bench drums`` runs end to end on a tiny clip and reports ratios."""

from mambakit.bench.drums import drums_bench_markdown, run_drums_bench


def test_drums_bench_rows_and_ratios():
    result = run_drums_bench(
        seconds=0.02, repeats=1, progress=False, generation=False, large_state_backward=True
    )
    rows = result["rows"]
    assert {(r["model"], r["pass"]) for r in rows} == {
        (m, p) for m in ("logcascade", "full_res", "mamba2_20hz") for p in ("fwd", "fwd+bwd")
    }
    for r in rows:
        assert r["time_s"] > 0
        if r["model"] == "logcascade":
            assert r["time_ratio"] == 1.0
    md = drums_bench_markdown(result)
    assert "| model | pass |" in md and "mamba2_20hz" in md


def test_drums_bench_skips_the_slow_large_state_backward_by_default():
    result = run_drums_bench(seconds=0.02, repeats=1, progress=False, generation=False)
    passes = {(r["model"], r["pass"]) for r in result["rows"]}
    assert ("mamba2_20hz", "fwd") in passes and ("mamba2_20hz", "fwd+bwd") not in passes
    assert ("full_res", "fwd+bwd") in passes
