"""Train a :class:`~mambakit.lm.model.MusicLM` on a token store with the shared Trainer.

AdamW, linear warmup + cosine decay, gradient clipping, accumulation, bf16 autocast on CUDA,
DDP under ``torchrun`` and exact resume all come from :class:`mambakit.train.Trainer`. This
module adds the LM loss (label smoothing optional and for the *objective only*: the logged
``ce`` and the validation numbers are always unsmoothed, unlike the seed) and the run layout.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mambakit.pretrained import atomic_write_bytes
from mambakit.train import FitSummary, TrainConfig, Trainer, unwrap_model

from .model import MusicLM, MusicLMConfig, count_parameters, preset, token_cross_entropy
from .store import TokenDataset, TokenStore

__all__ = ["codec_preset", "lm_loss", "train_lm"]

RUN_INFO = "lm_run.json"


def lm_loss(
    model: nn.Module, codes: torch.Tensor, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of a batch of ``codes [B, K, T]``: the (optionally smoothed) objective, and logs
    with the unsmoothed mean cross-entropy ``ce`` and per-codebook ``ce_k``.

    ``model`` may be the DDP wrapper: the forward pass goes through ``model(...)`` so
    gradients are synchronised.
    """
    lm = unwrap_model(model)
    assert isinstance(lm, MusicLM)
    tokens = lm.pattern.build(codes)
    targets = lm.targets(tokens)
    logits = model(tokens)
    loss, _ = token_cross_entropy(logits, targets, label_smoothing)
    with torch.no_grad():
        ce, per_stream = token_cross_entropy(logits.detach(), targets)
    logs = {"ce": float(ce)}
    if lm.pattern.n_streams > 1:
        logs.update({f"ce_{k}": float(v) for k, v in enumerate(per_stream)})
    return loss, logs


def codec_preset(
    codec: dict[str, Any],
    backbone: str,
    scale: str = "small",
    pattern: str = "delay",
    seq_len: int = 512,
    **overrides: Any,
) -> MusicLMConfig:
    """The parameter-matched :func:`preset` of ``backbone`` at ``scale`` for a token store's
    ``codec`` (its ``manifest["codec"]``: K, codebook size, frame rate, id), with KV caches
    long enough for crops of ``seq_len`` frames. What :func:`train_lm` trains."""
    config = preset(
        backbone,
        scale,
        pattern=pattern,
        n_codebooks=codec["n_codebooks"],
        codebook_size=codec["codebook_size"],
        frame_rate=codec["frame_rate"],
        codec_id=codec["id"],
        **overrides,
    )
    return replace(
        config, max_seqlen=max(config.max_seqlen, config.codebook_pattern.seq_len(seq_len))
    )


def train_lm(
    tokens: str | Path,
    out: str | Path,
    backbone: str = "hybrid",
    scale: str = "small",
    pattern: str = "delay",
    seq_len: int = 512,
    label_smoothing: float = 0.0,
    train_config: TrainConfig | None = None,
    model_overrides: dict[str, Any] | None = None,
) -> tuple[MusicLM, FitSummary]:
    """Train ``backbone`` at ``scale`` (a parameter-matched :func:`preset`) on the token store
    ``tokens``; checkpoints, ``metrics.jsonl`` and ``lm_run.json`` go to ``out``.

    ``seq_len`` is in codec frames per training crop. Validation (unsmoothed cross-entropy on
    fixed val crops) is logged at each checkpoint when the store has a val split. Resumes from
    ``out`` when it holds a checkpoint (``TrainConfig.resume``).
    """
    store = TokenStore(tokens)
    codec = store.codec
    config = codec_preset(codec, backbone, scale, pattern, seq_len, **(model_overrides or {}))
    model = MusicLM(config)
    train_data = TokenDataset(store, "train", seq_len)
    train_config = train_config or TrainConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "tokens": str(Path(tokens).resolve()),
        "codec": codec,
        "seq_len": seq_len,
        "label_smoothing": label_smoothing,
        "n_parameters": count_parameters(model),
        "backbone": backbone,
        "scale": scale,
    }
    atomic_write_bytes(out / RUN_INFO, json.dumps(info, indent=2).encode())

    eval_fn = None
    if store.files("val"):
        eval_fn = _validation_fn(store, seq_len, train_config.batch_size)

    trainer = Trainer(
        model,
        lambda m, batch, stage: lm_loss(m, batch, label_smoothing),
        train_data,
        config=train_config,
        out_dir=out,
        eval_fn=eval_fn,
    )
    summary = trainer.fit()
    return model, summary


def _validation_fn(store: TokenStore, seq_len: int, batch_size: int, n_batches: int = 4):
    """Unsmoothed validation cross-entropy on crops fixed once (seeded), for every checkpoint."""
    try:
        data = TokenDataset(store, "val", seq_len)
    except ValueError:
        return None
    state = torch.random.get_rng_state()
    torch.manual_seed(1234)
    crops = [data[i % len(data)] for i in range(batch_size * n_batches)]
    torch.random.set_rng_state(state)
    batches = [torch.stack(crops[i : i + batch_size]) for i in range(0, len(crops), batch_size)]

    @torch.no_grad()
    def evaluate(model: nn.Module, step: int) -> dict[str, float]:
        lm = unwrap_model(model)
        was_training = lm.training
        lm.eval()
        device = lm.start.device
        total = sum(float(lm.loss(lm.pattern.build(b.to(device)))[0]) for b in batches)
        lm.train(was_training)
        return {"val_ce": total / len(batches)}

    return evaluate
