"""The SSM bench end to end at a tiny length, and its comparison columns."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch

from mambakit.bench import ssm as bench_ssm
from mambakit.bench.flops import mamba2_flops

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
# Compiling takes minutes on a busy 2-core CPU: the compiled rows are covered by a test
# that swaps the compiler for the identity (test_compiled_rows_report_their_compile_time).
EAGER_IMPLS = tuple(i for i in bench_ssm.IMPLEMENTATIONS if i not in bench_ssm.COMPILED)
TINY = dict(
    impls=EAGER_IMPLS,
    end_to_end=False,
    seqlens=(256,),
    d_models=(64,),
    warmup=1,
    repeats=1,
    naive_seqlen=64,
    roofline_size=128,
    progress=False,
    step_layers=1,
    step_d_model=32,
)


def _layers_available(*impls: str) -> bool:
    try:
        for impl in impls:
            bench_ssm.build_layer(impl, 64)
    except bench_ssm.SkipImplementation:
        return False
    return True


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "ssm.json"
    result = bench_ssm.run_ssm_bench(quick=True, json_path=path, **TINY)
    return result, path


def test_json_has_meta_config_and_one_row_per_case(tiny_result):
    result, path = tiny_result
    saved = json.loads(path.read_text())
    assert saved["bench"] == "ssm" and saved["complete"] is True
    assert set(saved["meta"]) >= {"machine", "command", "git_commit", "date_utc"}
    assert saved["roofline_gflops"] > 0
    assert saved["config"]["seqlens"] == [256] and saved["config"]["quick"] is True
    rows = saved["rows"]
    cases = {(r["impl"], r["seqlen"], r["mode"]) for r in rows}
    assert cases == {(i, 256, m) for i in EAGER_IMPLS for m in ("fwd", "fwd+bwd")}
    expected_keys = {
        "impl", "d_model", "seqlen", "mode", "time_s", "peak_mem_mb", "gflop", "gflops",
        "roofline_frac", "vs_hf", "vs_hf_default", "params", "note", "compile_s",
        "compile_share_10min", "compile_overhead_1000_calls",
    }  # fmt: skip
    for row in rows:
        assert set(row) == expected_keys
        if row["time_s"] is None:
            assert row["note"].startswith("skipped:"), row
        else:
            assert row["time_s"] > 0
            assert row["gflops"] == pytest.approx(row["gflop"] / row["time_s"])
            frac = row["gflops"] / saved["roofline_gflops"]
            assert row["roofline_frac"] == pytest.approx(frac)


def test_mamba2_rows_carry_the_analytic_flops_of_the_algorithm_run(tiny_result):
    from mambakit.ssm import cpu_kernel

    rows = {(r["impl"], r["mode"]): r for r in tiny_result[0]["rows"]}
    fwd = mamba2_flops(256, 64, **bench_ssm.MAMBA2_KWARGS)["total"] / 1e9
    assert rows[("mamba2_torch", "fwd")]["gflop"] == pytest.approx(fwd)
    assert rows[("mamba2_torch", "fwd+bwd")]["gflop"] == pytest.approx(3 * fwd)
    # the shipped layer runs the fused C kernel, a per-step recurrence, forward and backward,
    # where it can be built
    scan = "recurrent" if cpu_kernel.available() else "chunked"
    fwd_shipped = mamba2_flops(256, 64, **bench_ssm.MAMBA2_KWARGS, scan=scan)["total"] / 1e9
    assert rows[("mamba2", "fwd")]["gflop"] == pytest.approx(fwd_shipped)
    assert rows[("mamba2", "fwd+bwd")]["gflop"] == pytest.approx(3 * fwd_shipped)


def test_compiled_rows_report_their_compile_time(monkeypatch):
    from mambakit.ssm import mamba2, ops

    switch = []
    monkeypatch.setattr(mamba2, "compiled", lambda fn: switch.append(ops.get_compile()) or fn)
    kw = {**TINY, "impls": ("mamba2_compiled", "hf_mamba2_mixer", "hf_mamba2_mixer_q256")}
    rows = bench_ssm.run_ssm_bench(quick=True, **kw)["rows"]
    assert switch and set(switch) == {True}  # timed with the switch on, and only those rows
    assert ops.get_compile() is False  # restored afterwards
    for row in rows:
        if row["impl"] == "mamba2_compiled":
            assert row["compile_s"] is not None and row["compile_s"] >= 0
            assert row["compile_share_10min"] == pytest.approx(row["compile_s"] / 600)
        else:
            assert row["compile_s"] is None


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="transformers not installed (the [bench] extra)")
def test_hf_mixer_is_the_speedup_baseline(tiny_result):
    rows = tiny_result[0]["rows"]
    for mode in ("fwd", "fwd+bwd"):
        base = next(r for r in rows if r["impl"] == "hf_mamba2_mixer" and r["mode"] == mode)
        assert base["time_s"] > 0 and base["vs_hf"] == pytest.approx(1.0)
        for r in rows:
            if r["mode"] == mode and r["time_s"]:
                assert r["vs_hf"] == pytest.approx(base["time_s"] / r["time_s"])


def test_missing_transformers_is_a_skipped_row_with_the_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    row = bench_ssm.run_case(bench_ssm.BenchCase("hf_mamba2_mixer", 64, 256, False))
    assert row["time_s"] is None
    assert row["note"].startswith("skipped: transformers is not installed")
    assert "mambakit[bench]" in row["note"]


@pytest.mark.skipif(not _layers_available("mamba2", "mamba"), reason="mambakit.ssm layers missing")
@pytest.mark.parametrize("impl", ["mamba2_naive", "mamba_naive"])
def test_naive_rows_really_run_the_reference_loop_and_are_extrapolated(impl):
    layer = bench_ssm.build_layer(impl, 64)
    x = torch.randn(1, 12, 64)
    with bench_ssm.reference_scan(layer, impl) as calls:
        y_ref = layer(x)
    assert calls[0] >= 1
    y_fast = layer(x)  # the swap is undone on exit
    assert torch.allclose(y_ref, y_fast, atol=1e-4)
    row = bench_ssm.run_case(bench_ssm.BenchCase(impl, 64, 256, False), naive_seqlen=64, repeats=1)
    assert row["note"] == "extrapolated x4.0 from L=64"


def test_unknown_implementation_is_rejected():
    with pytest.raises(ValueError, match="unknown implementation"):
        bench_ssm.run_ssm_bench(**{**TINY, "impls": ("mamba3",)})


def test_step_timing_is_reported_against_its_linear_floor(tiny_result):
    result, path = tiny_result
    (step,) = json.loads(path.read_text())["step"]  # quick: without MLPs only
    assert (step["kind"], step["n_layers"], step["d_model"], step["batch"]) == ("mamba2", 1, 32, 1)
    assert 0 < step["step_min_ms"] <= step["step_ms"]
    # a step runs every Linear once plus the recurrence, so it cannot beat the Linears alone
    assert step["step_min_ms"] > 0.5 * step["linear_ms"] > 0
    assert "step(): mamba2 Backbone, 1 layers, d_model 32" in bench_ssm.format_ssm_table(result)


def test_step_reports_the_fused_c_step_beside_fp32_with_its_error():
    from mambakit.ssm import cpu_decode

    step = bench_ssm.measure_step(2, 32, mlp_ratio=2.0, steps=3, warmup=1)
    if step["c_unavailable"] is not None:
        assert step["step_c_int8_ms"] is None and cpu_decode.available() is not None
        return
    assert step["c_fp32_rel_err"] < 1e-5  # same weights, sums in another order
    for fmt in ("bf16", "int8"):
        assert step[f"step_c_{fmt}_ms"] > 0
        assert 0 < step[f"c_{fmt}_rel_err"] < 0.05
    table = bench_ssm.format_ssm_table({"roofline_gflops": 1.0, "rows": [], "step": [step]})
    assert "fused C step: fp32" in table


def test_quick_mode_skips_only_the_listed_slow_cases(monkeypatch):
    monkeypatch.setattr(bench_ssm, "QUICK_SKIP_ABOVE", 100)  # make L=256 count as "long"
    kw = {**TINY, "impls": ("attention", "mamba"), "seqlens": (256,)}
    rows = bench_ssm.run_ssm_bench(quick=True, **kw)["rows"]
    skipped = {(r["impl"], r["mode"]) for r in rows if r["time_s"] is None}
    assert skipped == {("attention", "fwd+bwd")}
    assert all(r["note"].startswith("skipped: --quick") for r in rows if r["time_s"] is None)
    full = bench_ssm.run_ssm_bench(quick=False, **kw)
    assert all(r["time_s"] for r in full["rows"]) and len(full["step"]) == 2


def test_scan_backend_switch_reaches_every_ssm_layer():
    from mambakit.ssm import Backbone

    model = Backbone("hybrid", 4, 32, mamba_kind="mamba2")
    bench_ssm._set_scan_backend(model, "torch")
    backends = [m.backend for m in model.modules() if hasattr(m, "backend")]
    assert len(backends) == 3 and set(backends) == {"torch"}  # layer 3 is attention


def test_drums_training_compares_the_torch_scans_with_the_c_scans(monkeypatch):
    from mambakit.ssm import cpu_kernel

    backends = []
    real = bench_ssm._set_scan_backend
    monkeypatch.setattr(
        bench_ssm, "_set_scan_backend", lambda m, b: backends.append(b) or real(m, b)
    )
    drums = bench_ssm.measure_drums_training(batch=1, repeats=1, seconds=0.02)
    assert backends == ["torch", "auto"]  # one copy per path, compiled only when asked
    assert set(drums["step_s"]) == {"torch", "auto"}
    for name, seconds in drums["step_s"].items():
        assert drums["steps_per_min"][name] == pytest.approx(60.0 / seconds)
    assert drums["speedup"] == pytest.approx(drums["step_s"]["torch"] / drums["step_s"]["auto"])
    line = bench_ssm._drums_training_line(drums)
    assert f"{drums['steps_per_min']['auto']:.1f} on the C scans" in line
    assert "compiled" not in line
    if cpu_kernel.available():
        calls = []
        real_backward = cpu_kernel._scan_backward

        def counting(kind, *args, **kwargs):
            calls.append(kind)
            return real_backward(kind, *args, **kwargs)

        monkeypatch.setattr(cpu_kernel, "_scan_backward", counting)
        bench_ssm.measure_drums_training(batch=1, repeats=1, seconds=0.02)
        assert calls  # the shipped path trains through the C backward


def test_full_length_rows_of_a_group_take_turns(monkeypatch):
    calls = []
    real = bench_ssm.forward_fn

    def spy(layer, x, *, backward):
        run = real(layer, x, backward=backward)
        return lambda: calls.append((layer.backend, x.shape[1])) or run()

    monkeypatch.setattr(bench_ssm, "forward_fn", spy)
    cases = [bench_ssm.BenchCase(impl, 64, 1500, True) for impl in ("mamba2", "mamba2_torch")]
    rows = bench_ssm.run_cases(cases, warmup=1, repeats=2)
    assert [r["impl"] for r in rows] == ["mamba2", "mamba2_torch"]
    assert all(r["time_s"] > 0 for r in rows)
    timed = [backend for backend, length in calls if length == 1500]
    assert timed == ["auto", "torch", "auto", "torch"]  # interleaved, after short warm-ups
    with pytest.raises(ValueError, match="one"):
        bench_ssm.run_cases([cases[0], bench_ssm.BenchCase("mamba2", 64, 256, True)])
