"""``mambakit bench ...`` and ``mambakit demo`` wiring."""

from __future__ import annotations

import json

import pytest

from mambakit.bench import ssm as bench_ssm
from mambakit.cli import bench as cli_bench
from mambakit.cli import build_parser, main


@pytest.fixture
def tiny_bench(monkeypatch):
    """Make every ssm bench run tiny (L=256, two implementations) so the CLI test is fast."""
    real = bench_ssm.run_ssm_bench

    def tiny(quick=False, json_path=None, **kw):
        return real(
            quick, json_path, seqlens=(256,), d_models=(64,), impls=("hf_mamba2_mixer",),
            repeats=1, roofline_size=128, progress=False, device=kw.get("device"),
            step_layers=1, step_d_model=32, end_to_end=False,
        )  # fmt: skip

    monkeypatch.setattr(bench_ssm, "run_ssm_bench", tiny)


def test_bench_ssm_arguments():
    args = build_parser().parse_args(["bench", "ssm", "--quick", "--json", "r.json"])
    assert (
        args.quick and args.json == "r.json" and args.device is None
    )  # None: the CPU (resolve_device)
    assert args.func is cli_bench._bench_ssm
    defaults = build_parser().parse_args(["bench", "ssm"])
    assert defaults.json == cli_bench.DEFAULT_SSM_JSON and not defaults.quick


def test_bench_without_a_name_prints_help(capsys):
    assert main(["bench"]) == 2
    assert "ssm" in capsys.readouterr().out


def test_bench_ssm_runs_and_saves_json(tiny_bench, tmp_path, capsys):
    path = tmp_path / "ssm.json"
    assert main(["bench", "ssm", "--quick", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| impl | d | L | pass |" in out and f"saved {path}" in out
    assert [r["impl"] for r in json.loads(path.read_text())["rows"]] == ["hf_mamba2_mixer"] * 2


def test_every_listed_bench_parses_with_its_defaults_whatever_was_imported():
    parser = build_parser()
    for name in cli_bench.BENCHES:
        args = parser.parse_args(["bench", name])
        assert callable(args.func), name
    assert parser.parse_args(["bench", "ssm"]).func is cli_bench._bench_ssm
    # `mambakit bench lm` and `mambakit lm bench` are one implementation
    assert parser.parse_args(["bench", "lm"]).func is parser.parse_args(["lm", "bench"]).func


def test_bench_ssm_rejects_zero_repeats_as_a_user_error(capsys):
    assert main(["bench", "ssm", "--repeats", "0"]) == 2
    assert "mambakit: error: --repeats must be >= 1" in capsys.readouterr().err
