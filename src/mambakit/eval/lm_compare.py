"""``mambakit eval lm-compare``: the music-LM backbones compared fairly, over several seeds.

The seed's blog compares a 162M transformer with a 116M Jamba-style hybrid (1 attention :
3 Mamba-1) after one training run each. Here every backbone gets

- its parameter-matched preset (:func:`mambakit.lm.model.preset`: within 5 % of the
  transformer's count at the same scale),
- the same data, the same optimizer settings and the *same number of optimizer steps*,
- several seeds (seed ``s`` fixes the initial weights and the batch order; every backbone
  sees the same batches for a given seed),

and is scored on two kinds of data:

- **codec tokens** (when a token store from ``mambakit lm tokenize`` is given): trained by
  :func:`mambakit.lm.training.train_lm` (the shared Trainer) and scored by
  :func:`mambakit.eval.lm.evaluate_model` on fixed windows of the validation split:
  per-codebook cross-entropy without label smoothing, mean loss, perplexity, top-1 / top-5;
- **synthetic probes**, always (:func:`mambakit.lm.probes.run_probe`): the held-out loss on
  local (Markov) and recall (repeated motif) positions, with the same seeds and step count.

Each metric is reported per backbone as the mean over seeds with its spread (sample standard
deviation, min and max; :func:`summarize_seeds`).

A time budget (``minutes``) becomes one common step count: every backbone is timed for a
few training steps on batches of the data it will be trained on (codec tokens when given,
else probes), and ``steps = floor(minutes * 60 / slowest seconds per step)``; so each codec
run takes at most about ``minutes`` and all get equal steps (a per-run time budget would
give the fast backbones more steps). The probe runs use the same step count on top.

The verdict on the blog's claim is a rule in :mod:`mambakit.eval.claims`.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from mambakit.bench.common import result_metadata, write_json
from mambakit.results import markdown_table
from mambakit.utils import resolve_device

RESULT_KIND = "lm-compare"
DEFAULT_BACKBONES = ("transformer", "hybrid", "mamba2")
CODEC_METRICS = ("loss", "perplexity", "top1", "top5")
CODEBOOK_METRICS = ("loss", "top1", "top5")
PROBE_METRICS = ("loss", "loss_local", "loss_recall", "final_train_loss")
TIMED_STEPS = 3  # timed training steps per backbone for a time budget (after one untimed)
PROBE_BATCH_SIZE = 16  # run_probe's batch size, also what a probes-only budget is timed on


def summarize_seeds(values: Sequence[float]) -> dict[str, Any]:
    """Mean and spread of one metric over seeds: ``{"n", "mean", "std", "min", "max"}``.

    ``std`` is the sample standard deviation (``n - 1`` in the denominator; ``None`` for a
    single seed, where no spread is measurable).
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summarize_seeds needs at least one value")
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "min": min(values),
        "max": max(values),
    }


def summarize_runs(runs: Sequence[dict[str, Any]], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """One row per backbone (in order of first appearance): its parameter count, seeds and
    :func:`summarize_seeds` of each of ``metrics``; ``per_codebook`` too when the runs have it."""
    rows = []
    for backbone in dict.fromkeys(r["backbone"] for r in runs):
        mine = [r for r in runs if r["backbone"] == backbone]
        row: dict[str, Any] = {
            "backbone": backbone,
            "n_parameters": mine[0]["n_parameters"],
            "seeds": [r["seed"] for r in mine],
        }
        row.update({m: summarize_seeds([r[m] for r in mine]) for m in metrics})
        if "per_codebook" in mine[0]:
            row["per_codebook"] = [
                {
                    "codebook": k,
                    **{
                        m: summarize_seeds([r["per_codebook"][k][m] for r in mine])
                        for m in CODEBOOK_METRICS
                    },
                }
                for k in range(len(mine[0]["per_codebook"]))
            ]
        rows.append(row)
    return rows


# ----------------------------------------------------------------- the step budget


def seconds_per_train_step(model: Any, batch: torch.Tensor, steps: int = TIMED_STEPS) -> float:
    """Wall seconds of one training step of ``model`` on ``batch`` (pattern tokens
    ``[B, n_streams, S]`` or probe tokens ``[B, S]``), after one untimed step: the AdamW loop
    of :func:`mambakit.lm.probes.train_tokens`, i.e. the Trainer's own step without
    checkpoints. The model's weights change; time a throwaway copy."""
    from mambakit.lm.probes import train_tokens

    train_tokens(model, batches=[batch], steps=1)  # lazy init, allocator, thread pools
    started = time.perf_counter()
    train_tokens(model, batches=[batch], steps=steps)  # returns a float: the device synced
    return (time.perf_counter() - started) / steps


def common_step_count(
    minutes: float,
    models: dict[str, Any],
    batch: torch.Tensor,
    progress: bool = True,
) -> dict[str, Any]:
    """The step count every backbone can train in ``minutes``: ``floor(minutes * 60 /``
    the slowest backbone's :func:`seconds_per_train_step`), at least 1. ``models``: backbone
    name -> a freshly built model. Returns ``{"minutes", "steps", "slowest",
    "seconds_per_step": {backbone: s}}``."""
    if minutes <= 0:
        raise ValueError(f"the budget must be positive, got {minutes} minutes")
    seconds = {
        name: seconds_per_train_step(model, batch)
        for name, model in tqdm(models.items(), desc="time steps", disable=not progress)
    }
    slowest = max(seconds, key=seconds.__getitem__)
    return {
        "minutes": minutes,
        "steps": max(1, math.floor(minutes * 60 / seconds[slowest])),
        "slowest": slowest,
        "seconds_per_step": seconds,
    }


# ------------------------------------------------------------------ the comparison


def run_lm_compare(
    tokens: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] = "out/lm-compare",
    *,
    steps: int | None = None,
    minutes: float | None = None,
    backbones: Sequence[str] = DEFAULT_BACKBONES,
    preset: str = "tiny",
    seeds: Sequence[int] = (0, 1, 2),
    seq_len: int = 512,
    batch_size: int = 8,
    lr: float = 3e-4,
    warmup: int | None = None,
    split: str = "val",
    max_windows: int | None = 256,
    probe_gap: int = 64,
    device: str | None = None,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Train and score every backbone for every seed at one step count; save and return
    the result (``OUT/lm_compare.json``, ``lm_compare.md``; codec runs in ``OUT/runs``).

    ``tokens``: a token store (``None``: probes only); ``steps`` or ``minutes``: the budget
    (exactly one; ``minutes`` is turned into steps by :func:`common_step_count`); ``seq_len``
    (frames per crop), ``batch_size``, ``lr`` and ``warmup`` (default: 10 % of the steps) are
    those of the codec runs; the probes keep :func:`~mambakit.lm.probes.run_probe`'s own batch
    and learning rate. Every codec run starts from scratch (no resume), so a rerun never
    mixes step counts.

    Returns ``{"kind": "lm-compare", "meta", "config", "codec", "probes"}``; ``codec`` (``None``
    without tokens) and ``probes`` each hold ``runs`` (one per backbone and seed) and
    ``summary`` (:func:`summarize_runs`).
    """
    from mambakit.lm.model import MusicLM, count_parameters
    from mambakit.lm.probes import ProbeCorpus, probe_preset, run_probe
    from mambakit.lm.store import TokenDataset, TokenStore
    from mambakit.lm.training import codec_preset

    if (steps is None) == (minutes is None):
        raise ValueError("give one budget: --steps N or --budget-minutes M")
    if not backbones or not seeds:
        raise ValueError("give at least one backbone and one seed")
    store = TokenStore(tokens) if tokens is not None else None
    if store is not None and not store.files(split):
        raise ValueError(f"{store.directory}: the {split!r} split holds no files to score on")
    corpus = ProbeCorpus(gap=probe_gap)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    budget = None
    if minutes is not None:
        torch.manual_seed(seeds[0])
        if store is not None:
            crops = TokenDataset(store, "train", seq_len)
            codes = torch.stack([crops[i % len(crops)] for i in range(batch_size)])
            configs = {b: codec_preset(store.codec, b, preset, seq_len=seq_len) for b in backbones}
            batch = configs[backbones[0]].codebook_pattern.build(codes)
        else:
            configs = {b: probe_preset(corpus, b, preset) for b in backbones}
            batch = corpus.sample(PROBE_BATCH_SIZE, torch.Generator().manual_seed(seeds[0]))
        models = {b: MusicLM(c).to(resolve_device(device)) for b, c in configs.items()}
        budget = common_step_count(minutes, models, batch, progress)
        budget["timed_on"] = "codec tokens" if store is not None else "probes"
        steps = budget["steps"]
        del models
    assert steps is not None
    warmup = round(0.1 * steps) if warmup is None else warmup

    result: dict[str, Any] = {
        "kind": RESULT_KIND,
        "meta": result_metadata(command, device),
        "config": {
            "backbones": list(backbones),
            "preset": preset,
            "seeds": list(seeds),
            "steps": steps,
            "budget": budget,
            "tokens": None if tokens is None else str(tokens),
            "codec": None if store is None else store.codec,
            "seq_len": seq_len,
            "batch_size": batch_size,
            "lr": lr,
            "warmup": warmup,
            "split": split,
            "max_windows": max_windows,
        },
        "codec": None if store is None else {"runs": [], "summary": []},
        "probes": {"corpus": asdict(corpus), "reference": None, "runs": [], "summary": []},
    }
    parts = ("codec", "probes") if store is not None else ("probes",)
    jobs = [(data, b, s) for data in parts for s in seeds for b in backbones]
    bar = tqdm(jobs, desc="lm-compare", disable=not progress)
    for data, backbone, seed in bar:
        bar.set_postfix_str(f"{data} {backbone} seed {seed}")
        if data == "codec":
            assert store is not None and tokens is not None
            model, row = _train_codec_run(
                tokens, out / "runs" / f"{backbone}-seed{seed}", backbone, seed,
                preset=preset, steps=steps, seq_len=seq_len, batch_size=batch_size, lr=lr,
                warmup=warmup, device=device, progress=progress,
            )  # fmt: skip
            row.update(_codec_scores(model, store, split, seq_len, max_windows, batch_size))
            row["n_parameters"] = count_parameters(model)
            result["codec"]["runs"].append(row)
            result["codec"]["summary"] = summarize_runs(result["codec"]["runs"], CODEC_METRICS)
        else:
            probe = run_probe(
                [backbone], steps=steps, corpus=corpus, scale=preset, seed=seed,
                batch_size=PROBE_BATCH_SIZE, device=device, progress=False,
            )  # fmt: skip
            result["probes"]["reference"] = probe["reference"]
            result["probes"]["runs"].append({**probe["results"][0], "seed": seed})
            result["probes"]["summary"] = summarize_runs(result["probes"]["runs"], PROBE_METRICS)
        write_json(out / "lm_compare.json", result)  # keep what is done if interrupted
    (out / "lm_compare.md").write_text(lm_compare_markdown(result) + "\n")
    return result


def _train_codec_run(
    tokens: str | os.PathLike[str],
    run_dir: Path,
    backbone: str,
    seed: int,
    *,
    preset: str,
    steps: int,
    seq_len: int,
    batch_size: int,
    lr: float,
    warmup: int,
    device: str | None,
    progress: bool,
) -> tuple[Any, dict[str, Any]]:
    """One codec-token run from scratch with :func:`~mambakit.lm.training.train_lm`."""
    from mambakit.lm.training import train_lm
    from mambakit.train import TrainConfig

    (run_dir / "metrics.jsonl").unlink(missing_ok=True)  # a fresh run, not appended to
    config = TrainConfig(
        lr=lr, warmup_steps=warmup, max_steps=steps, batch_size=batch_size, seed=seed,
        ckpt_every=steps, log_every=max(1, steps // 50), resume=False, device=device,
        progress=progress,
    )  # fmt: skip
    torch.manual_seed(seed)  # the initial weights; the Trainer derives the batches from seed
    model, summary = train_lm(
        tokens, run_dir, backbone=backbone, scale=preset, seq_len=seq_len, train_config=config
    )
    row = {
        "backbone": backbone,
        "seed": seed,
        "steps": summary.steps,
        "seconds": summary.seconds,
        "seconds_per_step": summary.seconds / max(1, summary.steps),
        "final_train_loss": summary.final_loss,
        "run": str(run_dir),
    }
    return model, row


def _codec_scores(
    model: Any, store: Any, split: str, seq_len: int, max_windows: int | None, batch_size: int
) -> dict[str, Any]:
    from mambakit.eval.lm import evaluate_model

    scores = evaluate_model(
        model, store, split=split, seq_len=seq_len, max_windows=max_windows,
        batch_size=batch_size, progress=False,
    )  # fmt: skip
    return {k: scores[k] for k in ("n_windows", "n_frames", "per_codebook", *CODEC_METRICS)}


# ------------------------------------------------------------------------ reporting


def format_spread(summary: dict[str, Any] | None, spec: str = ".3f", scale: float = 1.0) -> str:
    """``mean ± std [min, max]`` (values times ``scale``), or ``mean`` for one seed."""
    if not summary:
        return "-"
    mean, lo, hi = (scale * summary[k] for k in ("mean", "min", "max"))
    if summary.get("std") is None:
        return format(mean, spec)
    std = scale * summary["std"]
    return f"{mean:{spec}} ± {std:{spec}} [{lo:{spec}}, {hi:{spec}}]"


def _spread_of(spec: str, scale: float = 1.0) -> Callable[[dict[str, Any]], str]:
    return lambda summary: format_spread(summary, spec, scale)


CODEC_COLUMNS = [
    ("backbone", "backbone"), ("n_parameters", "params", "{:,}"), ("loss", "loss", format_spread),
    ("perplexity", "perplexity", _spread_of(".1f")), ("top1", "top-1 (%)", _spread_of(".2f", 100)),
    ("top5", "top-5 (%)", _spread_of(".2f", 100)),
]  # fmt: skip
PROBE_COLUMNS = [
    ("backbone", "backbone"), ("n_parameters", "params", "{:,}"),
    ("loss", "mean loss", format_spread), ("loss_local", "local loss", format_spread),
    ("loss_recall", "recall loss", format_spread),
]  # fmt: skip


def _per_codebook_table(summary: list[dict[str, Any]]) -> str:
    """One row per codebook, one column of held-out loss per backbone."""
    keys = [f"b{i}" for i in range(len(summary))]
    rows = [
        {"codebook": k} | {key: r["per_codebook"][k]["loss"] for key, r in zip(keys, summary)}
        for k in range(len(summary[0]["per_codebook"]))
    ]
    columns = [(key, f"{r['backbone']} loss", format_spread) for key, r in zip(keys, summary)]
    return markdown_table(rows, [("codebook", "codebook"), *columns], align="l" + "r" * len(keys))


def lm_compare_markdown(result: dict[str, Any]) -> str:
    """The comparison as Markdown: codec-token metrics (when measured), per codebook, and
    the probes; each cell ``mean ± std [min, max]`` over seeds."""
    config = result["config"]
    budget = config.get("budget")
    how = f"{config['steps']} optimizer steps each"
    if budget:
        how += (
            f" (a {budget['minutes']:g}-minute budget at the slowest backbone's "
            f"{budget['seconds_per_step'][budget['slowest']]:.3f} s/step, "
            f"{budget['slowest']}, timed on {budget['timed_on']})"
        )
    lines = [
        f"Backbones at the parameter-matched `{config['preset']}` preset, {how}, seeds "
        f"{', '.join(str(s) for s in config['seeds'])}. Cells: mean ± std [min, max] over seeds.",
    ]
    codec = result.get("codec")
    if codec and codec.get("summary"):
        info = config.get("codec") or {}
        lines += [
            "",
            f"**Codec tokens** (`{config['tokens']}`, codec `{info.get('id', '?')}`, "
            f"{info.get('n_codebooks', '?')} x {info.get('codebook_size', '?')}): "
            f"{config['split']} split, crops of {config['seq_len']} frames, batch "
            f"{config['batch_size']}, lr {config['lr']:g}; cross-entropy in nats, no label "
            "smoothing.",
            "",
            markdown_table(codec["summary"], CODEC_COLUMNS, align="lrrrrr"),
            "",
            _per_codebook_table(codec["summary"]),
        ]
    else:
        lines += ["", "**Codec tokens**: not measured (no token store given)."]
    probes = result.get("probes") or {}
    if probes.get("summary"):
        from mambakit.lm.probes import probe_floors, probe_setup

        floors = probe_floors(probes.get("reference") or {})
        lines += [
            "",
            f"**Synthetic probes** ({probe_setup(probes['corpus'])}): held-out loss in nats; "
            f"floors: {floors}.",
            "",
            markdown_table(probes["summary"], PROBE_COLUMNS, align="lrrrr"),
        ]
    return "\n".join(lines)
