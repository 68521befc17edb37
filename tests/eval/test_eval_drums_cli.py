"""``mambakit eval drums`` end to end on a run of two steps: the report and its labels."""

import json

from mambakit.cli import main


def test_eval_drums_writes_scores_with_machine_and_training_labels(tmp_path, capsys):
    from mambakit.drums import train_drums
    from mambakit.drums.procedural import write_corpus

    write_corpus(tmp_path / "corpus", n_per_tag=1, tags=("kick", "snare", "closed_hat"))
    train_drums(tmp_path / "corpus", tmp_path / "run", steps=2, batch_size=2, progress=False)
    code = main(["eval", "drums", str(tmp_path / "run"), "--real", str(tmp_path / "corpus"),
                 "--limit", "3", "--steps", "1", "--out", str(tmp_path / "eval")])  # fmt: skip
    assert code == 0
    payload = json.loads((tmp_path / "eval" / "eval_drums.json").read_text())
    assert payload["kind"] == "eval-drums" and payload["heldout"] is None
    assert payload["training"]["steps"] == 2 and payload["training"]["seconds"] > 0
    assert payload["meta"]["machine"]["cpu_cores"] >= 1 and payload["meta"]["date_utc"]
    assert [s["name"] for s in payload["scores"]] == ["model", "scaffold"]
    assert all(s["n"] == 3 for s in payload["scores"])
    assert "| tag accuracy |" in capsys.readouterr().out
