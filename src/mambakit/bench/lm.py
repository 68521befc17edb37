"""Generation throughput and cache memory of each backbone vs context length (CPU by default).

For every backbone (parameter-matched preset) and context length (seconds of codec frames),
the model prefills a random context once and then decodes ``n_steps`` single steps with its
caches. Reported per step: wall time (median over steps), tokens/s (``n_streams`` tokens per
step, e.g. 9 for DAC with the delay pattern) and the bytes held by the recurrent caches. For
Mamba layers the step time and cache are constant in the context; attention grows linearly.
Each decode-weight format asked for (``weights``: fp32, bf16, int8; see
:func:`mambakit.ssm.decode_weights_`) is a copy of the same model, timed right after the
fp32 one on the same context.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from tqdm.auto import tqdm

from mambakit.bench.common import time_callable
from mambakit.lm.model import MusicLM, preset
from mambakit.results import markdown_table
from mambakit.ssm import count_parameters, decode_weights_
from mambakit.utils import resolve_device

__all__ = ["cache_nbytes", "lm_bench_markdown", "run_lm_bench"]


def cache_nbytes(cache: Any) -> int:
    """Bytes of every tensor reachable from a (nested dataclass / list) cache."""
    if isinstance(cache, torch.Tensor):
        return cache.numel() * cache.element_size()
    if dataclasses.is_dataclass(cache):
        return sum(cache_nbytes(getattr(cache, f.name)) for f in dataclasses.fields(cache))
    if isinstance(cache, (list, tuple)):
        return sum(cache_nbytes(c) for c in cache)
    if isinstance(cache, dict):
        return sum(cache_nbytes(c) for c in cache.values())
    return 0


def decode_timings(
    model: MusicLM, tokens: torch.Tensor, cache: Any, n_steps: int, device: torch.device
) -> tuple[float, float]:
    """Seconds of one prefill of ``tokens [B, n_streams, S]`` and the median of ``n_steps``
    greedy decode steps after it, device-synchronised (:func:`time_callable`)."""
    state: dict[str, torch.Tensor] = {}

    def prefill() -> None:
        state["logits"] = model.prefill(tokens, cache)

    def step() -> None:
        state["logits"] = model.step(state["logits"].argmax(-1), cache)  # argmax: [B, n_streams]

    prefill_s = time_callable(prefill, warmup=0, repeats=1, device=device).median_s
    return prefill_s, time_callable(step, warmup=0, repeats=n_steps, device=device).median_s


@torch.no_grad()
def run_lm_bench(
    backbones: tuple[str, ...] | list[str] = ("transformer", "mamba", "mamba2", "hybrid"),
    context_seconds: tuple[float, ...] | list[float] = (1.0, 10.0, 60.0),
    scale: str = "tiny",
    n_steps: int = 16,
    frame_rate: float = 86.1328125,
    n_codebooks: int = 9,
    codebook_size: int = 1024,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    seed: int = 0,
    weights: tuple[str, ...] | list[str] = ("fp32",),
) -> dict[str, Any]:
    """Decode-step time, tokens/s and cache bytes per backbone, context length and
    decode-weight format.

    ``context_seconds`` are converted to frames at ``frame_rate`` (DAC: 44100 / 512 Hz);
    with the delay pattern the sequence holds ``frames + K - 1`` steps.
    """
    device = resolve_device(device)
    rows, skipped = [], {}
    for backbone in tqdm(backbones, desc="lm bench"):
        torch.manual_seed(seed)
        config = preset(backbone, scale, n_codebooks=n_codebooks, codebook_size=codebook_size)
        model = MusicLM(config).to(device).eval()
        models = {"fp32": model} if "fp32" in weights else {}
        for fmt in (w for w in weights if w != "fp32"):
            try:
                models[fmt] = decode_weights_(copy.deepcopy(model), fmt)
            except RuntimeError as e:  # e.g. int8 without the CPU's int8 kernel
                skipped[fmt] = str(e)
        pattern = model.pattern
        for seconds in context_seconds:
            frames = max(1, round(seconds * frame_rate))
            codes = torch.randint(
                0, codebook_size, (batch_size, n_codebooks, frames), device=device
            )
            tokens = pattern.build(codes)
            for fmt, m in models.items():
                cache = m.allocate_cache(batch_size, tokens.shape[-1] + n_steps + 2, device)
                prefill_s, step_s = decode_timings(m, tokens, cache, n_steps, device)
                rows.append(
                    {
                        "backbone": backbone,
                        "weights": fmt,
                        "n_parameters": count_parameters(model),
                        "context_seconds": seconds,
                        "context_steps": tokens.shape[-1],
                        "prefill_s": prefill_s,
                        "step_ms": 1000 * step_s,
                        "tokens_per_s": batch_size * pattern.n_streams / step_s,
                        "cache_mb": cache_nbytes(cache) / 2**20,
                    }
                )
    return {
        "device": str(device),
        "scale": scale,
        "threads": torch.get_num_threads(),
        "n_steps": n_steps,
        "batch_size": batch_size,
        "rows": rows,
        "skipped_weights": skipped,  # format -> why it could not be timed here
    }


BENCH_COLUMNS = [
    ("backbone", "backbone"), ("weights", "weights"), ("n_parameters", "params", "{:,}"),
    ("context_seconds", "context (s)", "{:g}"), ("context_steps", "steps"),
    ("prefill_s", "prefill (s)", "{:.2f}"), ("step_ms", "step (ms)", "{:.2f}"),
    ("tokens_per_s", "tokens/s", "{:.0f}"), ("cache_mb", "cache (MiB)", "{:.2f}"),
]  # fmt: skip


def lm_bench_markdown(report: dict[str, Any]) -> str:
    """The bench rows as Markdown, plus each backbone's step-time growth (longest/shortest)."""
    lines = [
        f"LM decode on {report['device']} ({report['threads']} threads), preset "
        f"{report['scale']}, batch {report['batch_size']}",
        "",
        markdown_table(report["rows"], BENCH_COLUMNS, align="ll" + "r" * 7),
        "",
        *(f"{fmt} weights not timed: {why}\n" for fmt, why in
          report.get("skipped_weights", {}).items()),
    ]  # fmt: skip
    growth = []
    for backbone, fmt in dict.fromkeys(
        (r["backbone"], r.get("weights", "fp32")) for r in report["rows"]
    ):
        rows = [
            r for r in report["rows"]
            if r["backbone"] == backbone and r.get("weights", "fp32") == fmt
        ]  # fmt: skip
        lo = min(rows, key=lambda r: r["context_seconds"])
        hi = max(rows, key=lambda r: r["context_seconds"])
        growth.append(
            {"backbone": backbone, "weights": fmt, "growth": hi["step_ms"] / lo["step_ms"]}
        )
    columns = [
        ("backbone", "backbone"),
        ("weights", "weights"),
        ("growth", "step time longest / shortest context", "{:.2f}x"),
    ]
    return "\n".join([*lines, markdown_table(growth, columns, align="llr")])
