"""``mambakit eval ablations`` end to end at a few steps, and its pieces on known inputs."""

import json
import math

import pytest

from mambakit.eval.ablations import VARIANTS, ablations_markdown, run_ablations, training_tail

META_FIELDS = {"machine", "command", "git_commit", "date_utc"}


def test_every_variant_is_trained_scored_and_profiled(ablation_result, results_dir, tiny_corpus):
    out = results_dir / "ablations"
    saved = json.loads((out / "ablations.json").read_text())
    assert saved["kind"] == "ablations" and set(saved["meta"]) >= META_FIELDS
    assert {"platform", "cpu_cores", "torch"} <= set(saved["meta"]["machine"])
    assert [v["name"] for v in saved["variants"]] == list(VARIANTS)
    for row in saved["variants"]:
        assert row["steps"] == 2 and row["seconds_per_step"] > 0
        assert row["train_tail"]["loss"] > 0 and "stft" in row["train_tail"]
        assert row["scores"]["n"] == 3
        assert row["profile"]["n"] == 3  # the profiled clips are the scored ones
        assert len(row["profile"]["energy_curve"]) == 40
        assert math.isfinite(row["profile"]["spectrum_distance_db"])
        config = json.loads((out / "runs" / row["name"] / "config.json").read_text())["config"]
        for switch in ("no_sine", "no_adsr", "full_res"):
            assert bool(config.get(switch)) == (switch == row["name"]), (row["name"], switch)
    assert saved["scaffold"]["scores"]["name"] == "scaffold"
    assert saved["data"]["profile"]["n"] == len(tiny_corpus)
    assert (out / "figure4.png").stat().st_size > 20_000


def test_markdown_has_a_column_per_variant_plus_scaffold_and_data(ablation_result):
    md = ablations_markdown(ablation_result)
    assert "| metric | full | no_sine | no_adsr | full_res | scaffold | data |" in md
    assert "fundamental fraction" in md and "seconds per step" in md


def test_training_tail_averages_the_last_fifth_of_the_log(tmp_path):
    lines = [
        {"step": i, "loss": float(i), "logs": {"l1": 10.0 * i, "stft": 1.0}} for i in range(10)
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    tail = training_tail(tmp_path)
    assert tail == {"loss": 8.5, "l1": 85.0, "stft": 1.0}
    assert training_tail(tmp_path / "missing") == {}


def test_a_budget_and_known_variants_are_required(tiny_corpus, tmp_path):
    with pytest.raises(ValueError, match="budget"):
        run_ablations(tiny_corpus, tmp_path)
    with pytest.raises(ValueError, match="unknown variant"):
        run_ablations(tiny_corpus, tmp_path, steps=1, variants=["no_cascade"])
