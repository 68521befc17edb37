"""``mambakit report``: the latest JSON results gathered into ``docs/RESULTS.md``.

Each known result (:data:`SOURCES`) is looked up under the results folder (``out/`` by
default); the newest matching file is used. Every section starts with what its numbers
were measured on (platform, CPU count, torch version, GPU name or "CPU only"), the
command, the git commit and the date, read from the ``meta`` block the command saved.
A missing result gets one line saying which command makes it. The verdicts on the
seed's claims come from the rules in :mod:`mambakit.eval.claims`, applied to the same
JSON, so the report can be rebuilt at any time and never edited by hand.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ResultSource:
    """One kind of result: where its JSON lives under the results folder (a glob),
    the ``kind`` field it must carry (``None``: any), and the command that makes it.
    ``every``: render every matching file (one section each, e.g. one per evaluated run)
    instead of the newest only."""

    key: str
    title: str
    pattern: str
    kind: str | None
    command: str
    every: bool = False
    former_titles: tuple[str, ...] = ()  # what the report called it before (for carry-over)


def _bench_source(
    key: str, title: str, bench: str, options: str = "", json_name: str = "", pattern: str = ""
) -> ResultSource:
    """A ``mambakit bench BENCH`` result, made by ``make bench`` and saved as
    ``out/bench/<json_name>`` (default ``<bench>.json``; ``pattern``: the glob, default that
    file), so a bench's file name and its command are written once."""
    json_name = json_name or f"{bench}.json"
    command = f"make bench (mambakit bench {bench}{options} --json out/bench/{json_name})"
    return ResultSource(key, title, pattern or f"bench/{json_name}", None, command)


SOURCES: tuple[ResultSource, ...] = (
    ResultSource(
        "eval_drums", "Drum runs: control adherence on held-out clips", "**/eval_drums.json",
        "eval-drums", "mambakit eval drums RUN --real DIR --heldout DIR", every=True,
    ),
    ResultSource(
        "ablations", "Ablations: the seed's Figure 4", "ablations/*.json", "ablations",
        "mambakit eval ablations DATA --budget-minutes M --out out/ablations",
    ),
    ResultSource(
        "early", "Quality from the first batches", "early/*.json", "early-training",
        "mambakit eval early-training DATA --out out/early",
    ),
    _bench_source("bench_ssm", "SSM layers: speed and memory", "ssm"),
    _bench_source("bench_drums", "Drum model: LogCascade cost", "drums"),
    _bench_source("bench_lm", "Music LM: decoding speed and cache", "lm"),
    _bench_source(
        "bench_lm_batch", "Music LM: decoding speed at a larger batch", "lm", " --batch 8",
        json_name="lm_b8.json", pattern="bench/lm_b*.json",
    ),
    ResultSource(
        "lm_compare", "Music LM: backbones at matched parameters and equal steps",
        "lm-compare*/*.json", "lm-compare",
        "mambakit eval lm-compare TOKENS --budget-minutes M --out out/lm-compare", every=True,
    ),
    ResultSource(
        "drums_training", "Drum model: training steps per minute, old code vs this one",
        "bench/drums-training-*.json", "drums-training-speed",
        "OMP_NUM_THREADS=T python docs/results/bench/drums_training_side_by_side.py OLD T "
        "OUT.json", every=True,
    ),
    _bench_source("bench_timbre", "Timbre transfer: size, memory and speed", "timbre"),
    ResultSource(
        "eval_timbre", "Timbre transfer: runs side by side on held-out pairs",
        "timbre*/*.json", "timbre-eval",
        "mambakit eval timbre TRANSFER_RUN RECONSTRUCTION_RUN --pairs HELDOUT "
        "--json out/timbre/eval.json", every=True,
        former_titles=("Timbre transfer: transfer-trained vs reconstruction-only runs",),
    ),
)  # fmt: skip


def find_all(results_dir: str | os.PathLike[str], source: ResultSource) -> list[Path]:
    """Every JSON matching ``source`` under ``results_dir`` (right ``kind``), oldest first."""
    paths = [
        path
        for path in Path(results_dir).glob(source.pattern)
        if (payload := _read(path)) is not None
        and (source.kind is None or payload.get("kind") == source.kind)
    ]
    return sorted(paths, key=lambda p: (p.stat().st_mtime, str(p)))


def find_latest(results_dir: str | os.PathLike[str], source: ResultSource) -> Path | None:
    """The most recently written JSON matching ``source`` under ``results_dir``, or None."""
    paths = find_all(results_dir, source)
    return paths[-1] if paths else None


def _read(path: Path) -> dict[str, Any] | None:
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def machine_label(payload: dict[str, Any], command_hint: str) -> str:
    """One line naming the machine, command, commit and date of a result (its ``meta``)."""
    from mambakit.results import Meta

    meta = Meta.read(payload)
    if meta is None:
        return (
            "_Machine, command, commit and date were not recorded with this result; "
            f"rerun `{command_hint}` to record them._"
        )
    return meta.label()


def _ablations_section(payload: dict[str, Any], img_dir: Path) -> tuple[str, list[Path]]:
    from mambakit.eval.ablations import ablations_markdown, draw_ablations

    image = draw_ablations(payload, img_dir / "ablations.png")
    return ablations_markdown(payload), [image]


def _early_section(payload: dict[str, Any], img_dir: Path) -> tuple[str, list[Path]]:
    from mambakit.eval.early import draw_early, early_markdown

    image = draw_early(payload, img_dir / "early_training.png")
    return early_markdown(payload), [image]


def _ssm_section(payload: dict[str, Any], img_dir: Path) -> tuple[str, list[Path]]:
    from mambakit.bench.ssm import format_ssm_table

    return format_ssm_table(payload), []


def _drums_section(payload: dict[str, Any], img_dir: Path) -> tuple[str, list[Path]]:
    from mambakit.bench.drums import drums_bench_markdown

    return drums_bench_markdown(payload), []


def _lm_section(payload: dict[str, Any], img_dir: Path) -> tuple[str, list[Path]]:
    from mambakit.bench.lm import lm_bench_markdown

    return lm_bench_markdown(payload), []


def _lm_compare_section(payload: dict[str, Any], img_dir: Path) -> tuple[str, list[Path]]:
    from mambakit.eval.lm_compare import lm_compare_markdown

    return lm_compare_markdown(payload), []


def _eval_drums_section(payload: dict[str, Any], img_dir: Path) -> tuple[str, list[Path]]:
    from mambakit.eval.drums import DrumScores, per_tag_markdown, scores_markdown

    training = payload.get("training") or {}
    trained = (
        f"trained {training['steps']} steps in {training['seconds'] / 60:.1f} min"
        if training.get("steps") is not None and training.get("seconds") is not None
        else "training length not recorded"
    )
    heading = (
        f"Run `{payload.get('run')}` ({trained}); requests from "
        f"`{payload.get('heldout') or payload.get('real')}`, classifier, diversity and "
        f"memorisation references from `{payload.get('real')}`; model vs the scaffold alone "
        "(and the request clips themselves, `real`, where a measure applies to them)."
    )
    scores = [DrumScores(**s) for s in payload["scores"]]
    per_tag = per_tag_markdown(scores)
    tail = "\n\nPer tag:\n\n" + per_tag if per_tag else ""
    return heading + "\n\n" + scores_markdown(scores) + tail, []


def _drums_training_section(payload: dict[str, Any], img_dir: Path) -> tuple[str, list[Path]]:
    from mambakit.results import markdown_table

    table = markdown_table(
        payload.get("rows", []),
        [("code", "code"), ("threads", "threads", "{:d}"),
         ("steps_per_min_median", "steps/min (median)", "{:.1f}"),
         ("step_cpu_s_median", "CPU s per step (median)", "{:.3f}")],
        "lrrr",
    )  # fmt: skip
    head = (
        f"Tiny preset, batch {payload.get('batch', '?')}, {payload.get('threads', '?')} "
        f"thread(s), steps interleaved in one process; outputs of the two agree to "
        f"{payload.get('max_abs_output_diff', float('nan')):.1e} (scale "
        f"{payload.get('output_scale', float('nan')):.2f})."
    )
    tail = (
        f"Speed-up: **{payload.get('speedup_median', float('nan')):.2f}x** (median wall "
        f"time), {payload.get('speedup_cpu_time_median', float('nan')):.2f}x (CPU time)."
    )
    return head + "\n\n" + table + "\n\n" + tail, []


def _timbre_bench_section(payload: dict[str, Any], img_dir: Path) -> tuple[str, list[Path]]:
    from mambakit.bench.timbre import timbre_bench_markdown

    return timbre_bench_markdown(payload), []


def _timbre_eval_section(payload: dict[str, Any], img_dir: Path) -> tuple[str, list[Path]]:
    from mambakit.eval.timbre import evaluation_markdown

    pairs = f"Held-out pairs from `{payload['pairs_dir']}` (seed {payload.get('seed', '?')})."
    return pairs + "\n\n" + evaluation_markdown(payload), []


_SECTIONS: dict[str, Callable[[dict[str, Any], Path], tuple[str, list[Path]]]] = {
    "eval_drums": _eval_drums_section,
    "ablations": _ablations_section,
    "early": _early_section,
    "bench_ssm": _ssm_section,
    "bench_drums": _drums_section,
    "bench_lm": _lm_section,
    "bench_lm_batch": _lm_section,
    "lm_compare": _lm_compare_section,
    "drums_training": _drums_training_section,
    "bench_timbre": _timbre_bench_section,
    "eval_timbre": _timbre_eval_section,
}


CARRIED_NOTE = (
    "_Carried over from the previous report: its result JSON is not under the results "
    "folder of this checkout; rerun the command to measure it again._"
)


CARRIED = "(carried over)"


def previous_report(path: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """An existing ``RESULTS.md`` cut into its result sections by title (``"## title"`` up to
    the next heading; a title may hold several) and its claims table rows by claim."""
    sections: dict[str, list[str]] = {}
    rows: dict[str, list[str]] = {}
    if not path.is_file():
        return sections, rows
    chunks = ("\n" + path.read_text()).split("\n## ")[1:]
    for chunk in chunks:
        title, _, body = chunk.partition("\n")
        if title == "The seed's claims":
            for line in body.splitlines():
                cells = line.split(" | ")
                if line.startswith("| ") and len(cells) >= 4 and not line.startswith("| seed"):
                    rows.setdefault(cells[0][2:], []).append(line)
        elif title != "Not measured yet":
            body = body.replace(CARRIED_NOTE, "").strip("\n")
            sections.setdefault(title, []).append(body)
    return sections, rows


def _source_of(section: str) -> str | None:
    """The result JSON a rendered section names on its ``Source:`` line."""
    match = re.search(r"^Source: `([^`]+)`\.", section, flags=re.M)
    return match.group(1) if match else None


def _carry_verdicts(table: str, old_rows: dict[str, list[str]]) -> str:
    """The claims table with each unmeasured claim's rows taken from the previous report
    when it had measured them. A claim that another result measures now keeps only its
    measured rows (an unmeasured row beside them says nothing), and a previous row that
    is one of them is not carried again: regenerating the report never grows it."""
    from mambakit.eval.claims import UNMEASURED

    lines = table.splitlines()
    claim_of = lambda line: line[2:].split(" | ")[0]  # noqa: E731
    unmeasured = lambda line: f"**{UNMEASURED}**" in line  # noqa: E731
    measured_now = {claim_of(line) for line in lines if not unmeasured(line)}
    current = set(lines)
    out, carried = [], set()
    for line in lines:
        claim = claim_of(line)
        previous = old_rows.get(claim, [])
        if unmeasured(line) and claim in measured_now:
            continue
        if unmeasured(line) and previous and not any(unmeasured(row) for row in previous):
            if claim not in carried:
                for row in previous:
                    if row.replace(f" {CARRIED}", "") in current:
                        continue
                    row = row if CARRIED in row else row.replace(" | `", f" {CARRIED} | `", 1)
                    if row not in out:
                        out.append(row)
                carried.add(claim)
            continue
        out.append(line)
    return "\n".join(out)


#: Where results are looked for: what the commands write, and the records kept in git.
RESULTS_DIRS = ("out", "docs/results")


def _newest(dirs: Sequence[Path], source: ResultSource) -> list[tuple[Path, dict[str, Any]]]:
    """The loaded results of ``source`` in ``dirs``, oldest first: all of them for an
    ``every`` source, else the newest only."""
    paths = sorted((p for d in dirs for p in find_all(d, source)), key=lambda p: p.stat().st_mtime)
    if not source.every:
        paths = paths[-1:]
    return [(path, payload) for path in paths if (payload := _read(path)) is not None]


def _section(source: ResultSource, path: Path | None, payload: Any, img_dir: Path) -> list[str]:
    """The Markdown lines of one section; ``path`` None: ``payload`` is carried-over text."""
    if path is None:
        return ["", f"## {source.title}", "", CARRIED_NOTE, payload]
    try:
        body, images = _SECTIONS[source.key](payload, img_dir)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        body = f"Could not read `{path}` ({type(e).__name__}: {e}); rerun `{source.command}`."
        images = []
    lines = ["", f"## {source.title}", "", machine_label(payload, source.command)]
    lines += [f"Source: `{path}`.", "", body]
    for image in images:
        lines += ["", f"![{source.title}](img/{image.name})"]
    return lines


def build_report(
    results_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] = RESULTS_DIRS,
    docs_dir: str | os.PathLike[str] = "docs",
    carry_over: bool = True,
) -> Path:
    """Write ``DOCS/RESULTS.md`` (and its plots in ``DOCS/img/``) from the newest results
    under ``results_dir`` (one folder or several); returns the path of the Markdown file.
    ``docs/results/`` holds the result JSON kept in git (copies of what the commands wrote
    under ``out/``), so a fresh checkout can rebuild the report.

    ``carry_over``: a result whose JSON is not found keeps its sections (and its verdicts)
    from the ``RESULTS.md`` being replaced, marked as carried over, instead of dropping to
    "not measured yet"; a fresh checkout holds the report but not every run's JSON.
    """
    from mambakit.bench.common import git_commit
    from mambakit.eval.claims import all_verdicts, verdicts_markdown

    dirs = (
        [Path(results_dir)]
        if isinstance(results_dir, (str, os.PathLike))
        else [Path(d) for d in results_dir]
    )
    where = ", ".join(f"`{d}`" for d in dirs)
    docs = Path(docs_dir)
    img_dir = docs / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    old_sections, old_rows = previous_report(docs / "RESULTS.md") if carry_over else ({}, {})
    found: dict[str, dict[str, Any]] = {}  # the newest of each, for the claims
    every: dict[str, list[dict[str, Any]]] = {}  # all of an `every` source, oldest first
    # (source, JSON path, payload), or (source, None, Markdown) for a carried-over section
    sections: list[tuple[ResultSource, Path | None, Any]] = []
    missing: list[str] = []
    for source in SOURCES:
        loaded = _newest(dirs, source)
        old = [
            body for t in (source.title, *source.former_titles) for body in old_sections.get(t, [])
        ]
        if loaded:
            found[source.key] = loaded[-1][1]
            sections += [(source, path, payload) for path, payload in loaded]
            if source.every:  # one section per result: keep those of results not re-read
                every[source.key] = [payload for _, payload in loaded]
                new_paths = {str(path) for path, _ in loaded}
                sections += [(source, None, b) for b in old if _source_of(b) not in new_paths]
        elif old:
            sections += [(source, None, body) for body in old]
        else:
            missing.append(
                f"- {source.title}: no `{source.pattern}` under {where}; made by `{source.command}`"
            )

    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    verdicts = verdicts_markdown(all_verdicts(found, every))
    parts = [
        "# Results",
        "",
        f"Generated by `mambakit report` from the JSON results under {where} on {now} "
        f"(report commit `{(git_commit() or 'unknown')[:10]}`). Each section names the machine, "
        "command, commit and date its numbers were measured with. Do not edit by hand: rerun "
        "the commands, then `mambakit report`.",
        "",
        "## The seed's claims",
        "",
        "Verdicts by the rules in `src/mambakit/eval/claims.py`, applied to the results below "
        "(a claim tested by several comparisons gets a verdict for each).",
        "",
        _carry_verdicts(verdicts, old_rows),
    ]
    if missing:
        parts += ["", "## Not measured yet", "", *missing]
    for source, path, payload in sections:
        parts += _section(source, path, payload, img_dir)
    out = docs / "RESULTS.md"
    out.write_text("\n".join(parts) + "\n")
    return out
