"""``mambakit eval early-training`` end to end on one and two batches."""

import json

from mambakit.eval.early import early_markdown


def test_one_fresh_run_per_batch_count_scored_against_the_scaffold(early_result, results_dir):
    out = results_dir / "early"
    saved = json.loads((out / "early.json").read_text())
    assert saved["kind"] == "early-training" and "git_commit" in saved["meta"]
    assert saved["config"]["batches"] == [1, 2] and saved["config"]["batch_size"] == 2
    assert [r["batches"] for r in saved["rows"]] == [1, 2]
    assert [r["steps"] for r in saved["rows"]] == [1, 2]
    for row in saved["rows"]:
        assert row["scores"]["n"] == 3 and row["profile"]["n"] == 3
    assert saved["scaffold"]["scores"]["name"] == "scaffold"
    assert (out / "early.png").stat().st_size > 20_000
    md = early_markdown(saved)
    assert "| 1 |" in md and "| scaffold alone |" in md and "tag accuracy" in md
