"""``mambakit eval lm-compare`` end to end on a tiny token store, its seed statistics, the
step budget, and ``mambakit bench lm`` (= ``lm bench``) with ``--batch``."""

import json
import math

import pytest
import torch

from mambakit.cli import build_parser, main
from mambakit.eval import lm_compare
from mambakit.eval.lm_compare import common_step_count, summarize_runs, summarize_seeds


@pytest.fixture
def one_thread():
    """One torch thread: on a busy 2-core machine two threads wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_lm_compare_end_to_end(noise_token_store, tmp_path, capsys, one_thread) -> None:
    tokens, out = noise_token_store, tmp_path / "cmp"
    argv = [
        "eval", "lm-compare", str(tokens), "--steps", "2", "--seeds", "0,1",
        "--preset", "tiny", "--seq-len", "16", "--batch-size", "2", "--max-windows", "2",
        "--probe-gap", "4", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "**Codec tokens**" in printed and "**Synthetic probes**" in printed
    assert "1:3 hybrid beats a transformer" in printed and "on codec tokens" in printed

    result = json.loads((out / "lm_compare.json").read_text())
    assert result["kind"] == "lm-compare"
    assert {"machine", "command", "git_commit", "date_utc"} <= set(result["meta"])
    assert result["config"]["steps"] == 2 and result["config"]["budget"] is None
    backbones = ["transformer", "hybrid", "mamba2"]
    for part in ("codec", "probes"):
        runs = result[part]["runs"]
        assert sorted((r["backbone"], r["seed"]) for r in runs) == sorted(
            (b, s) for b in backbones for s in (0, 1)
        )
        assert all(r["steps"] == 2 for r in runs)
        assert [r["backbone"] for r in result[part]["summary"]] == backbones
    codec_runs = result["codec"]["runs"]
    assert all(len(r["per_codebook"]) == 3 and math.isfinite(r["loss"]) for r in codec_runs)
    assert all(math.isclose(r["perplexity"], math.exp(r["loss"])) for r in codec_runs)
    # the summary is the statistics of the runs it lists
    hybrid = [r["loss"] for r in codec_runs if r["backbone"] == "hybrid"]
    row = result["codec"]["summary"][1]
    assert row["loss"]["mean"] == pytest.approx(sum(hybrid) / 2)
    assert (row["loss"]["min"], row["loss"]["max"]) == (min(hybrid), max(hybrid))
    # seeds differ, backbones are parameter-matched
    assert codec_runs[0]["loss"] != codec_runs[3]["loss"]  # transformer seed 0 vs seed 1
    counts = [r["n_parameters"] for r in result["codec"]["summary"]]
    assert max(counts) / min(counts) < 1.05
    assert (out / "runs" / "hybrid-seed1" / "model.safetensors").is_file()
    assert "| hybrid |" in (out / "lm_compare.md").read_text()


def test_lm_compare_time_budget_gives_every_backbone_the_same_steps(tmp_path, one_thread):
    result = lm_compare.run_lm_compare(
        None, tmp_path, minutes=1e-4, backbones=["transformer", "mamba2"], seeds=[3],
        probe_gap=2, progress=False,
    )  # fmt: skip
    budget = result["config"]["budget"]
    assert budget["timed_on"] == "probes" and set(budget["seconds_per_step"]) == {
        "transformer",
        "mamba2",
    }
    assert result["codec"] is None and budget["steps"] == result["config"]["steps"] == 1
    assert [(r["backbone"], r["steps"]) for r in result["probes"]["runs"]] == [
        ("transformer", 1),
        ("mamba2", 1),
    ]
    assert "not measured (no token store given)" in lm_compare.lm_compare_markdown(result)
    with pytest.raises(ValueError, match="one budget"):
        lm_compare.run_lm_compare(None, tmp_path, steps=2, minutes=1.0)


def test_common_step_count_divides_the_budget_by_the_slowest_step(monkeypatch):
    # "models" here are their own step times in seconds
    monkeypatch.setattr(lm_compare, "seconds_per_train_step", lambda model, batch: model)
    budget = common_step_count(1.0, {"fast": 0.5, "slow": 2.0, "mid": 1.0}, None, False)
    assert budget["slowest"] == "slow" and budget["steps"] == 30  # 60 s / 2 s
    assert common_step_count(1e-3, {"slow": 2.0}, None, False)["steps"] == 1  # at least one
    with pytest.raises(ValueError, match="positive"):
        common_step_count(0.0, {"slow": 2.0}, None, False)


def test_summarize_seeds_against_hand_computed_values():
    s = summarize_seeds([1.0, 2.0, 4.0])
    # mean 7/3; sample variance ((4/3)^2 + (1/3)^2 + (5/3)^2) / 2 = 7/3
    assert s["n"] == 3 and s["mean"] == pytest.approx(7 / 3)
    assert s["std"] == pytest.approx(math.sqrt(7 / 3)) and (s["min"], s["max"]) == (1.0, 4.0)
    assert summarize_seeds([5.0]) == {"n": 1, "mean": 5.0, "std": None, "min": 5.0, "max": 5.0}
    with pytest.raises(ValueError):
        summarize_seeds([])


def test_summarize_runs_groups_by_backbone_and_codebook():
    def run(backbone, seed, loss, cb0):
        per_codebook = [{"loss": cb0, "top1": 0.5, "top5": 1.0}]
        return {"backbone": backbone, "seed": seed, "n_parameters": 10, "loss": loss,
                "per_codebook": per_codebook}  # fmt: skip

    runs = [run("b", 0, 3.0, 1.0), run("a", 0, 1.0, 2.0), run("b", 1, 5.0, 3.0)]
    rows = summarize_runs(runs, ["loss"])
    assert [(r["backbone"], r["seeds"]) for r in rows] == [("b", [0, 1]), ("a", [0])]
    assert rows[0]["loss"] == {"n": 2, "mean": 4.0, "std": pytest.approx(math.sqrt(2)),
                               "min": 3.0, "max": 5.0}  # fmt: skip
    assert rows[0]["per_codebook"][0]["loss"]["mean"] == 2.0
    assert rows[1]["loss"]["std"] is None


def test_bench_lm_is_lm_bench_with_a_batch(tmp_path, capsys, one_thread):
    parser = build_parser()
    issue, old = parser.parse_args(["bench", "lm"]), parser.parse_args(["lm", "bench"])
    assert issue.func is old.func and issue.batch == old.batch == 1
    path = tmp_path / "lm.json"
    argv = ["bench", "lm", "--backbones", "mamba2", "--preset", "tiny", "--contexts", "0.01",
            "--steps", "1", "--batch", "3", "--json", str(path)]  # fmt: skip
    assert main(argv) == 0
    assert "batch 3" in capsys.readouterr().out
    report = json.loads(path.read_text())
    assert report["batch_size"] == 3 and "meta" in report
    assert report["rows"][0]["tokens_per_s"] > 0


def test_bench_lm_times_each_decode_weight_format_on_the_same_context(
    tmp_path, capsys, one_thread
):
    path = tmp_path / "lm.json"
    argv = ["bench", "lm", "--backbones", "mamba2", "--preset", "tiny", "--contexts", "0.01,0.02",
            "--steps", "2", "--weights", "fp32,bf16", "--json", str(path)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = json.loads(path.read_text())["rows"]
    assert [(r["context_seconds"], r["weights"]) for r in rows] == [
        (0.01, "fp32"), (0.01, "bf16"), (0.02, "fp32"), (0.02, "bf16"),
    ]  # fmt: skip
    assert rows[0]["context_steps"] == rows[1]["context_steps"]  # one context, both formats
    assert all(r["tokens_per_s"] > 0 for r in rows)
    assert "| mamba2 | bf16 |" in out  # the growth table keeps the formats apart


@pytest.mark.parametrize(
    "argv",
    [["bench", "lm", "--weights", "fp16"], ["bench", "lm", "--weights", ","],
     ["lm", "generate", "run", "--decode-weights", "fp32,int8"]],
)  # fmt: skip
def test_unknown_decode_weight_formats_are_user_errors(argv, capsys, monkeypatch):
    from mambakit.lm import generate

    monkeypatch.setattr(generate.MusicGenerator, "from_pretrained", lambda *a, **k: None)
    assert main(argv) == 2
    assert "give one" in capsys.readouterr().err


def test_bench_lm_reports_a_format_it_cannot_time_and_times_the_rest(monkeypatch, one_thread):
    from mambakit.bench import lm as bench_lm

    def no_int8(model, fmt):
        raise RuntimeError(f"no {fmt} kernel here")

    monkeypatch.setattr(bench_lm, "decode_weights_", no_int8)
    report = bench_lm.run_lm_bench(["mamba2"], context_seconds=[0.01], n_steps=1,
                                   weights=["fp32", "int8"])  # fmt: skip
    assert [r["weights"] for r in report["rows"]] == ["fp32"]
    assert report["skipped_weights"] == {"int8": "no int8 kernel here"}
    assert "int8 weights not timed: no int8 kernel here" in bench_lm.lm_bench_markdown(report)
