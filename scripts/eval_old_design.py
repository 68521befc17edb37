"""Evaluate a run of the drum model as it was before issue 14 (the patch-grid band decoder)
with today's ``eval drums`` (comb, decay, sheet): the "before" column of the model card.

Usage: python scripts/eval_old_design.py OLD_MODEL_PY RUN REAL HELDOUT OUT [LIMIT]
where OLD_MODEL_PY is ``src/mambakit/drums/model.py`` of commit 654532a (git show
654532a:src/mambakit/drums/model.py > /tmp/old_model.py).
"""

import importlib.util
import json
import sys
from dataclasses import asdict
from pathlib import Path

from mambakit.drums.data import load_corpus
from mambakit.drums.pipeline import DrumSynth, load_defaults
from mambakit.eval.drums import evaluate_synth, per_tag_markdown, save_report, scores_markdown


def main() -> None:
    old_py, run, real, heldout, out = sys.argv[1:6]
    limit = int(sys.argv[6]) if len(sys.argv) > 6 else 66
    spec = importlib.util.spec_from_file_location("old_drum_model", old_py)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    synth = DrumSynth(old.DrumDiffusionModel.from_pretrained(run), load_defaults(run))
    scores = evaluate_synth(
        synth,
        load_corpus(real, workers=0),
        load_corpus(heldout, workers=0),
        limit=limit,
        sheet=Path(out) / "sheet.png",
    )
    save_report(scores, Path(out), {"kind": "eval-drums-old-design", "run": run})
    print(scores_markdown(scores) + "\n\n" + per_tag_markdown(scores))
    print(json.dumps(asdict(scores[0]))[:200])


if __name__ == "__main__":
    main()
