"""``mambakit eval drums`` end to end on a run of two steps: the report and its labels."""

import json

from mambakit.cli import main


def test_eval_drums_writes_scores_with_machine_and_training_labels(tmp_path, capsys):
    from mambakit.drums import train_drums
    from mambakit.drums.procedural import write_corpus
    from mambakit.drums.training import drums_train_config

    write_corpus(tmp_path / "corpus", n_per_tag=2, tags=("kick", "snare", "closed_hat"))
    train_drums(
        tmp_path / "corpus", tmp_path / "run", drums_train_config(2, batch_size=2, progress=False)
    )
    code = main(["eval", "drums", str(tmp_path / "run"), "--real", str(tmp_path / "corpus"),
                 "--limit", "3", "--steps", "1", "--out", str(tmp_path / "eval")])  # fmt: skip
    assert code == 0
    payload = json.loads((tmp_path / "eval" / "eval_drums.json").read_text())
    assert payload["kind"] == "eval-drums" and payload["heldout"] is None
    assert payload["training"]["steps"] == 2 and payload["training"]["seconds"] > 0
    assert payload["meta"]["machine"]["cpu_cores"] >= 1 and payload["meta"]["date_utc"]
    assert payload["tag_classifier"] == {  # tag/x.wav folders: one kit, nothing to leave out
        "l2": 0.1, "clips": 6, "kits": 1, "leave_one_kit_out_accuracy": None
    }  # fmt: skip
    assert [s["name"] for s in payload["scores"]] == ["model", "scaffold", "real"]
    assert all(s["n"] == 3 for s in payload["scores"])
    model, _, real = payload["scores"]
    tags = ["closed_hat", "kick", "snare"]
    for scores in (model, real):  # the comb per tag and its median, the decay ratio per tag
        assert sorted(scores["per_tag_comb_db"]) == tags and abs(scores["comb_db"]) < 60
        assert sorted(scores["per_tag_decay_ratio"]) == tags
        assert scores["decay_ratio_worst"] in scores["per_tag_decay_ratio"].values()
    assert sorted(model["per_tag_diversity_ratio"]) == tags
    assert real["tag_accuracy"] == 1.0  # the classifier knows the clips it was fitted on
    assert (tmp_path / "eval" / "sheet.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "| tag accuracy |" in out and "| comb at 689 Hz multiples (dB, median) |" in out
