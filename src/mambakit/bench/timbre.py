"""``mambakit bench timbre``: MambaMuse's size, memory and transfer speed, measured, next to
the seed's figures.

The seed (``mambamuse-timbre-transfer``, section IV-C) claims 4.2 M parameters, that "the
forward and backward pass together require 275.25 MB" for a 2.1 s input, and "real-time"
one-shot transfer (measured on an A100). For each preset (``tiny``, ``small``, ``base``;
``base`` is the seed's size) with unidirectional and bidirectional Mamba blocks
(``TimbreConfig.bidirectional``), on one 16 kHz clip of ``clip_seconds`` (default 2.1 s),
batch 1, random weights and inputs (speed and memory do not depend on their values):

- ``params``: trainable parameters of the generator;
- ``train_peak_mb``: peak memory growth of one training step of the generator on
  ``(content, style)``: forward, the seed's reconstruction part of the generator loss
  (``45 L_mel + 10 L_STFT`` against a target clip, cheap next to the model) and backward.
  The discriminators and the GAN terms are left out: the seed's figure is the generator's;
- ``train_peak_ckpt_mb``: the same with gradient checkpointing of the Mamba blocks
  (:meth:`~mambakit.timbre.model.TimbreUNet.gradient_checkpointing_`);
- ``infer_peak_mb``: peak memory growth of one inference forward (``torch.no_grad``);
- ``summary_estimate_mb``: what a ``torchinfo`` summary prints as "Forward/backward pass
  size" for the same forward: twice the bytes of the outputs of every module that owns
  parameters. An estimate, not a measurement; the seed's 275.25 MB reads like this line
  (torchinfo's MB is 10^6 bytes, as here);
- ``x_realtime_clip`` / ``x_realtime_long``: speed of :meth:`TimbreTransfer.transfer` in
  times real time (:func:`~mambakit.timbre.pipeline.times_real_time`: audio seconds per
  wall second, > 1 = faster than real time) on one ``clip_seconds`` content clip (one
  chunk) and on a ``transfer_seconds`` (default 10 s) clip, which goes through the
  chunked any-length path (``chunks``).

Every model is built with ``segment_seconds = clip_seconds`` so all presets transfer in
chunks of the same length. Memory comes from :func:`~mambakit.bench.common.measure_peak_memory`
(on CPU the growth of the resident high-water mark: an upper bound that includes
allocator slack; on CUDA ``max_memory_allocated``), times from
:func:`~mambakit.bench.common.time_callable` (median of ``repeats`` after one warm-up).
MB here is 10^6 bytes, the seed's unit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from mambakit.bench.common import (
    measure_peak_memory,
    result_metadata,
    time_callable,
)
from mambakit.results import markdown_table
from mambakit.timbre.pipeline import times_real_time
from mambakit.utils import resolve_device

__all__ = [
    "SEED",
    "summary_estimate_bytes",
    "run_timbre_bench",
    "timbre_bench_markdown",
]

# The seed's figures (section IV-C), for the side-by-side columns.
SEED = {
    "params_m": 4.2,
    "train_mb": 275.25,
    "clip_seconds": 2.1,
    "sample_rate": 16000,
    "device": "one A100 (inference speed)",
}
SEED_PRESET = "base"  # the preset sized like the seed's model
FULL_PRESETS = ("tiny", "small", "base")
QUICK_PRESETS = ("tiny", "base")
MB = 1e6

COLUMNS = [
    ("preset", "preset"),
    ("mamba", "mamba"),
    ("params_m", "params M"),
    ("train_peak_mb", "fwd+bwd peak MB"),
    ("train_vs_seed", "fwd+bwd / seed's 275.25"),
    ("train_peak_ckpt_mb", "fwd+bwd peak MB, checkpointed"),
    ("summary_estimate_mb", "torchinfo-style estimate MB"),
    ("infer_peak_mb", "inference peak MB"),
    ("train_step_s", "fwd+bwd s"),
    ("infer_s", "inference s"),
    ("x_realtime_clip", "x real time, one chunk"),
    ("x_realtime_long", "x real time, 10 s (chunked)"),
    ("chunks", "chunks"),
]


def summary_estimate_bytes(model: nn.Module, *inputs: Any) -> int:
    """``torchinfo``'s "Forward/backward pass size" of ``model(*inputs)``, in bytes: twice
    (for the gradients) the bytes of every tensor output of the modules that own
    parameters directly (or through a parametrization such as weight norm)."""
    total = 0

    def count(module: nn.Module, args: Any, output: Any) -> None:
        nonlocal total
        outs = output if isinstance(output, (tuple, list)) else (output,)
        total += 2 * sum(t.numel() * t.element_size() for t in outs if isinstance(t, Tensor))

    owners = [
        m
        for m in model.modules()
        # a ParametrizationList holds the raw weight-norm tensors and "outputs" the weight
        if not isinstance(m, parametrize.ParametrizationList)
        and (parametrize.is_parametrized(m) or any(True for _ in m.parameters(recurse=False)))
    ]
    handles = [m.register_forward_hook(count) for m in owners]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return total


def _training_step(model: nn.Module, loss_fn: nn.Module, content, style, target) -> Callable:
    """One generator step: ``G(content, style)``, ``45 L_mel + 10 L_STFT``, backward;
    gradients are dropped after each call so repeats do not accumulate memory."""

    def run() -> None:
        loss, _ = loss_fn(model(content, style), target)
        loss.backward()
        model.zero_grad(set_to_none=True)

    return run


def _inference(model: nn.Module, content: Tensor, style: Tensor) -> Callable:
    def run() -> None:
        with torch.no_grad():
            model(content, style)

    return run


def _transfer(tt: Any, content: Tensor, style: Tensor, sr: int) -> Callable:
    """One whole :meth:`TimbreTransfer.transfer` call (input checks, chunking, crossfades)."""

    def run() -> None:
        tt.transfer(content, style, sr=sr)

    return run


def bench_case(
    preset: str,
    bidirectional: bool,
    clip_seconds: float = 2.1,
    transfer_seconds: float = 10.0,
    repeats: int = 3,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Measure one ``(preset, direction)``; returns one table row (see the module doc)."""
    from mambakit.timbre.losses import GeneratorLoss
    from mambakit.timbre.model import TimbreConfig, TimbreUNet
    from mambakit.timbre.pipeline import TimbreTransfer

    dev = resolve_device(device)
    torch.manual_seed(0)
    config = TimbreConfig.preset(preset, bidirectional=bidirectional, segment_seconds=clip_seconds)
    model = TimbreUNet(config).to(dev)
    sr = config.sample_rate
    g = torch.Generator().manual_seed(0)

    def clip(seconds: float) -> Tensor:  # (1, 1, T) at sr, peak 0.3
        return (0.1 * torch.randn(1, 1, int(round(seconds * sr)), generator=g)).clamp(-0.3, 0.3)

    content, style, target = (clip(clip_seconds).to(dev) for _ in range(3))
    loss_fn = GeneratorLoss(sr).to(dev)

    model.train()
    step = _training_step(model, loss_fn, content, style, target)
    train_time = time_callable(step, warmup=1, repeats=repeats, device=dev)
    train_peak = measure_peak_memory(step, dev)
    model.gradient_checkpointing_(True)
    train_peak_ckpt = measure_peak_memory(step, dev)
    model.gradient_checkpointing_(False)
    model.eval()
    forward = _inference(model, content, style)
    infer_time = time_callable(forward, warmup=1, repeats=repeats, device=dev)
    infer_peak = measure_peak_memory(forward, dev)
    estimate = summary_estimate_bytes(model, content, style)

    tt = TimbreTransfer(model, device=dev, progress=False)
    style_clip = style[0].cpu()  # (1, T): transfer takes [C, T]
    speeds = {}
    for key, seconds in (("clip", clip_seconds), ("long", transfer_seconds)):
        transfer = _transfer(tt, clip(seconds)[0], style_clip, sr)
        timing = time_callable(transfer, warmup=1, repeats=repeats, device=dev)
        speeds[f"x_realtime_{key}"] = times_real_time(seconds, timing.median_s)
        speeds[f"transfer_{key}_s"] = timing.median_s
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    train_mb = None if train_peak is None else train_peak / MB
    return {
        "preset": preset,
        "mamba": "bi" if bidirectional else "uni",
        "bidirectional": bidirectional,
        "params": params,
        "params_m": params / 1e6,
        "clip_seconds": clip_seconds,
        "transfer_seconds": transfer_seconds,
        "train_peak_mb": train_mb,
        "train_vs_seed": None if train_mb is None else train_mb / SEED["train_mb"],
        "train_peak_ckpt_mb": None if train_peak_ckpt is None else train_peak_ckpt / MB,
        "infer_peak_mb": None if infer_peak is None else infer_peak / MB,
        "summary_estimate_mb": estimate / MB,
        "train_step_s": train_time.median_s,
        "infer_s": infer_time.median_s,
        "chunks": tt.last_report.chunks,  # of the long clip, transferred last
        **speeds,
    }


def run_timbre_bench(
    quick: bool = False,
    presets: Sequence[str] | None = None,
    clip_seconds: float = 2.1,
    transfer_seconds: float = 10.0,
    repeats: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Every preset in ``presets`` (default: all three; ``quick``: ``tiny`` and ``base``)
    with unidirectional and bidirectional Mamba blocks.

    ``repeats`` defaults to 3 (1 with ``quick``). Returns ``{"kind": "bench-timbre",
    "rows", "seed", "config", "meta"}``.
    """
    presets = tuple(presets or (QUICK_PRESETS if quick else FULL_PRESETS))
    repeats = repeats if repeats is not None else (1 if quick else 3)
    rows = []
    for preset in presets:
        for bidirectional in (False, True):
            if progress:
                print(f"bench timbre: {preset} {'bi' if bidirectional else 'uni'} ...", flush=True)
            rows.append(
                bench_case(preset, bidirectional, clip_seconds, transfer_seconds, repeats, device)
            )
    return {
        "kind": "bench-timbre",
        "rows": rows,
        "seed": SEED,
        "config": {
            "presets": list(presets),
            "clip_seconds": clip_seconds,
            "transfer_seconds": transfer_seconds,
            "sample_rate": SEED["sample_rate"],
            "repeats": repeats,
            "batch": 1,
            "quick": quick,
            "train_loss": "45 L_mel + 10 L_STFT (generator only, no discriminator)",
        },
        "meta": result_metadata(device=device),
    }


def timbre_bench_markdown(result: dict[str, Any]) -> str:
    """The rows as a Markdown table, with a line giving the seed's figures and the setup."""
    seed, config = result.get("seed", SEED), result.get("config", {})
    device = ((result.get("meta") or {}).get("machine") or {}).get("device", "?")
    note = (
        f"Batch 1, {config.get('clip_seconds', '?')} s clips at "
        f"{config.get('sample_rate', '?')} Hz on `{device}`; x real time = audio s / wall s "
        f"(> 1 faster than real time), long clip {config.get('transfer_seconds', '?')} s. "
        f"Seed: {seed['params_m']} M parameters, {seed['train_mb']} MB forward+backward at "
        f"{seed['clip_seconds']} s, real-time transfer on {seed['device']}. MB = 10^6 bytes."
    )
    return markdown_table(result["rows"], COLUMNS) + "\n\n" + note
