"""``mambakit eval early-training``: what the drum model sounds like after its first batches.

The seed claims usable samples after the first batch of size 2 and coherent ones within
50 batches. For each count ``k`` in ``batches`` (default 1, 2, 5, 10, 50, 200) a fresh
model is trained for exactly ``k`` optimizer steps of ``batch_size`` clips (same seed, so
run ``k`` sees the first ``k`` batches of the same data order; each run has its own
warmup + cosine schedule over its ``k`` steps, as a user training for ``k`` steps would),
then evaluated on the same requests as :mod:`mambakit.eval.ablations` does: the adherence,
tag-accuracy, diversity and memorisation scores of :func:`mambakit.eval.drums.evaluate_synth`
and the Figure-4 profile of :mod:`mambakit.eval.profiles`. The scaffold alone (sine anchor
x ADSR plus shaped noise, no network) is the reference line.

The verdicts on the two claims are rules in :mod:`mambakit.eval.claims`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mambakit.bench.common import write_json
from mambakit.eval.ablations import (
    STUDY_METRICS,
    DrumStudy,
    StudySettings,
    number_or_nan,
    save_figure,
)
from mambakit.results import lookup, markdown_table

DEFAULT_BATCHES = (1, 2, 5, 10, 50, 200)
RESULT_KIND = "early-training"

_PLOTTED_PATHS = {
    "scores.tag_accuracy", "scores.median_pitch_error_cents", "scores.envelope_correlation",
    "scores.diversity_ratio", "scores.memorisation_ratio", "profile.median_peak_db",
    "profile.percussive_rate", "profile.fundamental_fraction", "profile.spectrum_distance_db",
}  # fmt: skip
#: The study metrics tabulated and plotted against batches (besides the training loss).
PLOTTED = [metric for metric in STUDY_METRICS if metric[1] in _PLOTTED_PATHS]


def run_early_training(
    data: Any,
    out_dir: str | os.PathLike[str] = "out/early",
    settings: StudySettings = StudySettings(batch_size=2),  # noqa: B008  (frozen: safe)
    *,
    batches: Sequence[int] = DEFAULT_BATCHES,
    command: str | None = None,
) -> dict[str, Any]:
    """Train for each count of ``batches`` (of ``settings.batch_size`` clips), evaluate,
    save and return the result (``OUT/early.json``, ``early.md``, ``early.png``; runs in
    ``OUT/runs``).

    ``data``: a folder of one-shots or a ``DrumDataset``; ``settings``: the preset,
    held-out requests, training and scoring (:class:`~mambakit.eval.ablations.StudySettings`;
    batches of 2 clips by default).

    Returns ``{"kind": "early-training", "meta", "config", "rows": [...], "scaffold", "data"}``;
    each row has ``batches``, ``steps, seconds, final_loss, train_tail, peak_memory_mb``,
    ``scores`` (``DrumScores`` as a dict) and ``profile`` (``ProfileSummary`` as a dict).
    """
    counts = sorted({int(k) for k in batches})
    if not counts or counts[0] < 1:
        raise ValueError(f"batches must be positive counts, got {list(batches)}")
    study, result, out = DrumStudy.start(RESULT_KIND, data, settings, out_dir, command)
    result["config"]["batches"] = counts
    result["rows"] = []
    for k in counts:
        if settings.progress:
            print(f"early-training: {k} batch(es) of {study.batch_size} ...", flush=True)
        run_dir = out / "runs" / f"batches_{k}"
        result["rows"].append(study.run({"batches": k}, result, run_dir, study.base, steps=k))
        write_json(out / "early.json", result)  # keep what is done if interrupted
    (out / "early.md").write_text(early_markdown(result) + "\n")
    draw_early(result, out / "early.png")
    return result


def early_markdown(result: dict[str, Any]) -> str:
    """One row per batch count (plus the scaffold alone), one column per metric."""
    cfg = result["config"]
    metrics = [m for m in STUDY_METRICS if m[1] == "train_tail.loss"] + PLOTTED
    named = [(str(r["batches"]), r) for r in result["rows"]]
    if "scaffold" in result:
        named.append(("scaffold alone", result["scaffold"]))
    named.append(("data", result["data"]))
    rows = [{"batches": name} | {p: lookup(row, p) for _, p, _ in metrics} for name, row in named]
    columns = [("batches", "batches"), *((path, label, fmt) for label, path, fmt in metrics)]
    return (
        f"Batches of {cfg['batch_size']} clips, preset {cfg['preset']}, "
        f"{cfg['n_train_clips']} training clips; one fresh run per row.\n\n"
        + markdown_table(rows, columns, align="r" * len(columns))
    )


def draw_early(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Each metric against the number of batches (log axis), the scaffold alone as a
    dashed line and the real data (where it has the metric) as a dotted one; PNG."""
    from matplotlib.figure import Figure

    rows = result["rows"]
    cols = 3
    n_rows = math.ceil((len(PLOTTED) + 1) / cols)
    fig = Figure(figsize=(4.0 * cols, 2.8 * n_rows), dpi=90, layout="constrained")
    axes = np.atleast_1d(fig.subplots(n_rows, cols)).ravel()
    x = [r["batches"] for r in rows]
    panels = [("training loss (last 20 %)", "train_tail.loss", ""), *PLOTTED]
    references = (
        ("scaffold alone", result.get("scaffold"), "--"),
        ("data", result.get("data"), ":"),
    )
    for ax, (label, key, _) in zip(axes, panels):
        y = [number_or_nan(lookup(r, key)) for r in rows]
        ax.plot(x, y, marker="o", label="model")
        for name, source, ls in references:
            ref = number_or_nan(lookup(source or {}, key))
            if not math.isnan(ref):
                ax.axhline(ref, color="gray", ls=ls, lw=1.2, label=name)
        ax.set_xscale("log")
        ax.set_xticks(x, [str(k) for k in x])
        ax.minorticks_off()
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(f"batches of {result['config']['batch_size']}", fontsize=8)
    legend: dict[str, Any] = {}
    for ax in axes[: len(panels)]:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(name, handle)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    spare = axes[len(panels)] if len(axes) > len(panels) else axes[0]
    spare.legend(legend.values(), legend.keys(), loc="center", fontsize=9)
    return save_figure(fig, path)
