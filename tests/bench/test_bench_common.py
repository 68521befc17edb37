"""Timing, memory, machine facts and reporting helpers of mambakit.bench.common."""

from __future__ import annotations

import json
import sys
import time

import pytest
import torch

from mambakit.bench.common import (
    forward_fn,
    machine_info,
    measure_matmul_flops,
    measure_peak_memory,
    result_metadata,
    time_callable,
    write_json,
)
from mambakit.results import markdown_table


def test_time_callable_reports_median_of_repeats():
    calls = []
    delays = iter([0.0, 0.03, 0.001, 0.012])  # first is the warm-up

    def fn():
        calls.append(1)
        time.sleep(next(delays))

    timing = time_callable(fn, warmup=1, repeats=3)
    assert len(calls) == 4 and len(timing.times_s) == 3
    assert timing.min_s < timing.median_s < max(timing.times_s)
    assert 0.010 <= timing.median_s < 0.03
    with pytest.raises(ValueError, match="repeats"):
        time_callable(fn, repeats=0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux-only")
def test_peak_memory_sees_a_temporary_allocation_and_not_old_ones():
    held = torch.ones(16 * 2**20 // 4)  # 16 MiB allocated *before*: must not be counted
    mib = 2**20

    def allocate_64_mib():
        x = torch.ones(64 * mib // 4)  # touched pages, then freed on return
        return float(x[-1])

    peak = measure_peak_memory(allocate_64_mib)
    assert peak is not None
    assert 60 * mib <= peak < 100 * mib
    # a second measurement starts from a fresh baseline: same answer, not the old peak
    assert measure_peak_memory(lambda: None) < 8 * mib
    del held


def test_forward_fn_no_grad_and_backward():
    layer = torch.nn.Linear(3, 2)
    x = torch.randn(1, 4, 3)
    forward_fn(layer, x, backward=False)()
    assert layer.weight.grad is None
    seen = {}
    hook = layer.weight.register_hook(lambda g: seen.setdefault("grad", g.clone()))
    forward_fn(layer, x, backward=True)()
    hook.remove()
    # d(sum(W x + b))/dW = sum over positions of x, per output row
    assert torch.allclose(seen["grad"], x.sum(dim=(0, 1)).expand(2, 3))
    assert layer.weight.grad is None  # cleared so repeats do not accumulate memory


def test_matmul_rate_is_positive_and_machine_info_complete():
    assert measure_matmul_flops(128, repeats=2) > 0
    info = machine_info()
    assert info["device"] == "cpu" and info["torch"] == torch.__version__
    assert info["torch_threads"] >= 1 and info["cpu"]
    meta = result_metadata(command="mambakit bench ssm")
    assert meta["command"] == "mambakit bench ssm"
    assert set(meta) == {"machine", "command", "git_commit", "date_utc"}


def test_write_json_round_trip(tmp_path):
    path = write_json(tmp_path / "a" / "b.json", {"rows": [{"x": 1.5, "y": None}]})
    assert json.loads(path.read_text()) == {"rows": [{"x": 1.5, "y": None}]}
    with pytest.raises(TypeError, match="cannot write object"):
        write_json(tmp_path / "c.json", {"bad": object()})


def test_markdown_table_layout():
    table = markdown_table(
        [{"name": "a", "t": 0.01234, "big": 1234.5}, {"name": "b", "t": None, "big": 2.0}],
        [("name", "impl"), ("t", "time"), ("big", "GFLOP")],
    )
    lines = table.splitlines()
    assert lines[0] == "| impl | time | GFLOP |"
    assert lines[1] == "|---|---|---|"
    assert lines[2] == "| a | 0.0123 | 1234 |"
    assert lines[3] == "| b | - | 2.00 |"
