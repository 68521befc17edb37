"""``mambakit bench timbre``: every row measured at tiny sizes, and the arithmetic of its
columns on fake timings and memory."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from mambakit.bench import timbre as bench_timbre
from mambakit.bench.common import Timing
from mambakit.cli import main

NUMBERS = (
    "params", "params_m", "train_peak_mb", "train_vs_seed", "infer_peak_mb",
    "summary_estimate_mb", "train_step_s", "infer_s", "x_realtime_clip", "x_realtime_long",
    "transfer_clip_s", "transfer_long_s",
)  # fmt: skip


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CPU peak memory is Linux-only")
def test_quick_bench_at_tiny_size_writes_every_row_with_positive_numbers(tmp_path, capsys):
    path = tmp_path / "bench" / "timbre.json"
    argv = ["bench", "timbre", "--quick", "--presets", "tiny", "--clip-seconds", "0.128",
            "--transfer-seconds", "0.4", "--json", str(path)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| preset | mamba | params M | fwd+bwd peak MB |" in out and f"saved {path}" in out
    result = json.loads(path.read_text())
    assert result["kind"] == "bench-timbre" and result["config"]["repeats"] == 1
    assert set(result["meta"]) == {"machine", "command", "git_commit", "date_utc"}
    assert result["seed"]["train_mb"] == 275.25 and result["seed"]["params_m"] == 4.2
    rows = result["rows"]
    assert [(r["preset"], r["mamba"]) for r in rows] == [("tiny", "uni"), ("tiny", "bi")]
    for row in rows:
        for key in NUMBERS:
            assert row[key] is not None and row[key] > 0, (row["mamba"], key, row[key])
        assert row["train_peak_ckpt_mb"] is not None and row["train_peak_ckpt_mb"] >= 0
        assert row["chunks"] > 1  # 0.4 s of content in 0.128 s chunks: the chunked path
        assert row["clip_seconds"] == 0.128 and row["transfer_seconds"] == 0.4
    uni, bi = rows
    assert bi["params"] > uni["params"]  # a second, time-reversed Mamba per block


def test_quick_and_full_preset_lists(monkeypatch):
    seen = []

    def fake_case(preset, bidirectional, *args):
        seen.append((preset, bidirectional))
        return {"preset": preset, "mamba": "bi" if bidirectional else "uni"}

    monkeypatch.setattr(bench_timbre, "bench_case", fake_case)
    quick = bench_timbre.run_timbre_bench(quick=True, progress=False)
    assert seen == [("tiny", False), ("tiny", True), ("base", False), ("base", True)]
    assert quick["config"]["repeats"] == 1
    seen.clear()
    full = bench_timbre.run_timbre_bench(progress=False)
    assert [p for p, _ in seen] == ["tiny", "tiny", "small", "small", "base", "base"]
    assert full["config"]["repeats"] == 3


def test_times_real_time_is_audio_seconds_per_wall_second():
    assert bench_timbre.times_real_time(10.0, 2.5) == 4.0  # 4x faster than real time
    assert bench_timbre.times_real_time(2.1, 4.2) == 0.5  # twice slower
    assert math.isnan(bench_timbre.times_real_time(10.0, 0.0))


def test_columns_follow_the_fake_timing_and_memory(monkeypatch):
    """With every timed call taking 2 s and every peak 137.625 MB, the columns are known."""
    monkeypatch.setattr(
        bench_timbre, "time_callable", lambda fn, **kw: fn() or Timing(2.0, 1.5, (2.0,))
    )
    monkeypatch.setattr(bench_timbre, "measure_peak_memory", lambda fn, device=None: 137_625_000)
    row = bench_timbre.bench_case("tiny", False, clip_seconds=0.128, transfer_seconds=0.4)
    assert row["x_realtime_clip"] == pytest.approx(0.128 / 2.0)
    assert row["x_realtime_long"] == pytest.approx(0.4 / 2.0)
    assert row["train_step_s"] == row["infer_s"] == row["transfer_long_s"] == 2.0
    assert row["train_peak_mb"] == pytest.approx(137.625) and row["infer_peak_mb"] == 137.625
    assert row["train_peak_ckpt_mb"] == pytest.approx(137.625)
    assert row["train_vs_seed"] == pytest.approx(0.5)  # half of the seed's 275.25 MB
    assert row["params"] == 19370  # the tiny preset (4 levels, unidirectional)


def test_summary_estimate_counts_twice_the_outputs_of_modules_with_parameters():
    mlp = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    # Linear outputs [4, 5] and [4, 2] float32; ReLU and Sequential own no parameters
    assert bench_timbre.summary_estimate_bytes(mlp, torch.randn(4, 3)) == 2 * 4 * (20 + 8)
    conv = weight_norm(nn.Conv1d(1, 2, 3))  # its weight comes from a parametrization
    assert bench_timbre.summary_estimate_bytes(conv, torch.randn(1, 1, 10)) == 2 * 4 * 16


def test_markdown_names_the_seed_figures_and_the_device():
    row = {"preset": "base", "mamba": "uni", "params_m": 4.17, "train_peak_mb": 900.0,
           "x_realtime_long": 0.4, "chunks": 5}  # fmt: skip
    config = {"clip_seconds": 2.1, "sample_rate": 16000, "transfer_seconds": 10.0}
    meta = {"machine": {"device": "cpu"}}
    result = {"rows": [row], "seed": bench_timbre.SEED, "meta": meta, "config": config}
    md = bench_timbre.timbre_bench_markdown(result)
    assert "| base | uni | 4.17 | 900 |" in md
    assert "275.25 MB forward+backward" in md and "on `cpu`" in md and "10.0 s" in md
