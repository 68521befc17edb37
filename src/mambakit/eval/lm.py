"""Evaluate LM runs on a token store: the per-codebook table of seed 001, without smoothing.

For every codebook ``k``: cross-entropy (nats), top-1 and top-5 accuracy over the code
positions of fixed, non-overlapping windows of the split (no randomness, so two runs are
scored on exactly the same tokens); overall: mean loss and perplexity ``exp(mean loss)``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from mambakit.lm.model import MusicLM, count_parameters
from mambakit.lm.store import TokenStore
from mambakit.results import markdown_table

__all__ = ["evaluate_model", "evaluate_run", "evaluate_runs", "runs_markdown"]


@torch.no_grad()
def evaluate_model(
    model: MusicLM,
    store: TokenStore,
    split: str = "val",
    seq_len: int = 512,
    max_windows: int | None = 256,
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, Any]:
    """Per-codebook cross-entropy / top-1 / top-5 of ``model`` on windows of ``seq_len``
    frames of ``split`` (files shorter than one window are scored whole)."""
    K = store.codec["n_codebooks"]
    if (K, store.codec["codebook_size"]) != (model.config.n_codebooks, model.config.codebook_size):
        raise ValueError(
            f"{store.directory}: tokens are {K} x {store.codec['codebook_size']}, the model "
            f"expects {model.config.n_codebooks} x {model.config.codebook_size}"
        )
    windows = []
    for entry in store.files(split):
        length = min(seq_len, entry["frames"])
        for start in range(0, entry["frames"] - length + 1, length):
            windows.append((entry, start, start + length))
    if not windows:
        raise ValueError(f"{store.directory}: the {split!r} split holds no files")
    windows = windows[:max_windows] if max_windows else windows
    device = model.start.device
    model.eval()
    pattern = model.pattern
    nll_sum = torch.zeros(K, dtype=torch.float64)
    top1 = torch.zeros(K, dtype=torch.float64)
    top5 = torch.zeros(K, dtype=torch.float64)
    count = torch.zeros(K, dtype=torch.float64)
    # equal-length windows batch together; the remainder (short files) runs one by one
    groups: dict[int, list[torch.Tensor]] = {}
    for entry, lo, hi in windows:
        groups.setdefault(hi - lo, []).append(store.codes(entry, lo, hi))
    batches = [
        torch.stack(codes[i : i + batch_size])
        for codes in groups.values()
        for i in range(0, len(codes), batch_size)
    ]
    for codes in tqdm(batches, desc="eval", disable=not progress, leave=False):
        codes = codes.to(device)  # [B, K, T]
        tokens = pattern.build(codes)
        logits = model(tokens).float()  # [B, n, S, V]
        # scores per frame and codebook: log-probs of the true code, and its rank
        log_probs = logits.log_softmax(-1)
        targets = model.targets(tokens)
        valid = targets != -100
        safe = targets.clamp_min(0)
        nll = -log_probs.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # [B, n, S]
        true_logit = logits.gather(-1, safe.unsqueeze(-1))
        rank = (logits > true_logit).sum(-1)  # ids strictly better than the true one
        per_code = torch.stack([nll, (rank < 1).double(), (rank < 5).double()], dim=0)
        # map token positions back to (codebook, frame) with the pattern's exact inverse
        for metric, acc in zip(per_code, (nll_sum, top1, top5), strict=True):
            filled = torch.where(valid, metric.double(), torch.zeros((), dtype=torch.float64))
            acc += _per_codebook(pattern, filled).sum(dim=(0, 2)).cpu()
        count += codes.shape[0] * codes.shape[-1]
    per_codebook = [
        {
            "codebook": k,
            "loss": float(nll_sum[k] / count[k]),
            "top1": float(top1[k] / count[k]),
            "top5": float(top5[k] / count[k]),
        }
        for k in range(K)
    ]
    mean_loss = float(nll_sum.sum() / count.sum())
    return {
        "split": split,
        "n_windows": len(windows),
        "n_frames": int(count[0]),
        "per_codebook": per_codebook,
        "loss": mean_loss,
        "perplexity": math.exp(mean_loss),
        "top1": float(top1.sum() / count.sum()),
        "top5": float(top5.sum() / count.sum()),
    }


def _per_codebook(pattern: Any, values: torch.Tensor) -> torch.Tensor:
    """Token-layout values ``[B, n_streams, S]`` -> ``[B, K, T]`` (codebook, frame), by
    reversing the layout on the values themselves (flat ids carry offsets, values do not)."""
    if pattern.name == "flat":
        B, _, S = values.shape
        return values.reshape(B, S // pattern.n_codebooks, pattern.n_codebooks).transpose(1, 2)
    if pattern.name == "parallel":
        return values
    T = pattern.n_frames(values.shape[-1])
    return torch.stack([values[:, k, k : k + T] for k in range(pattern.n_codebooks)], dim=1)


def evaluate_run(
    run: str | Path,
    tokens: str | Path | None = None,
    split: str = "val",
    seq_len: int | None = None,
    max_windows: int | None = 256,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Evaluate the checkpoint in ``run`` on ``tokens`` (default: the store it was trained on,
    from ``run/lm_run.json``) without label smoothing."""
    run = Path(run)
    info_path = run / "lm_run.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    tokens = tokens or info.get("tokens")
    if tokens is None:
        raise ValueError(f"{run}: no --tokens given and no lm_run.json naming the token store")
    model = MusicLM.from_pretrained(run, device=device)
    result = evaluate_model(
        model,
        TokenStore(tokens),
        split=split,
        seq_len=seq_len or info.get("seq_len", 512),
        max_windows=max_windows,
    )
    return {
        "run": str(run),
        "backbone": model.config.backbone,
        "n_parameters": count_parameters(model),
        "label_smoothing_in_training": info.get("label_smoothing"),
        **result,
    }


def evaluate_runs(runs: list[str | Path], **kwargs: Any) -> list[dict[str, Any]]:
    """:func:`evaluate_run` for every run, same tokens and windows."""
    return [evaluate_run(run, **kwargs) for run in runs]


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.2f}%"


RUN_COLUMNS = [
    ("run", "run"), ("n_parameters", "params", "{:,}"), ("loss", "loss", "{:.3f}"),
    ("perplexity", "ppl", "{:.1f}"), ("top1", "top-1", _percent), ("top5", "top-5", _percent),
]  # fmt: skip


def _codebook_cell(scores: dict[str, float]) -> str:
    return f"{scores['loss']:.3f} / {_percent(scores['top1'])} / {_percent(scores['top5'])}"


def runs_markdown(results: list[dict[str, Any]]) -> str:
    """Side-by-side Markdown: a summary row per run, then per-codebook loss / top-1 / top-5."""
    names = [Path(r["run"]).name + f" ({r['backbone']})" for r in results]
    summary = markdown_table(
        [{**r, "run": name} for name, r in zip(names, results, strict=True)],
        RUN_COLUMNS, align="lrrrrr",
    )  # fmt: skip
    keys = [f"r{i}" for i in range(len(results))]
    per_codebook = [
        {"codebook": k} | {key: r["per_codebook"][k] for key, r in zip(keys, results)}
        for k in range(len(results[0]["per_codebook"]))
    ]
    columns = [(key, f"{n} loss / top-1 / top-5", _codebook_cell) for key, n in zip(keys, names)]
    return summary + "\n\n" + markdown_table(per_codebook, [("codebook", "codebook"), *columns])
