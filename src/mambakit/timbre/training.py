"""Train MambaMuse as a GAN with the shared :class:`~mambakit.train.Trainer`.

Every optimizer step runs two stages (HiFi-GAN's recipe), in this order:

- ``"disc"``: ``L_D`` (least squares) on the target vs the generator output (the output
  computed without a graph: the discriminators alone are updated);
- ``"gen"``: ``L_G = 45 L_mel + 10 L_STFT + L_adv + 2 L_fm`` against the target.

Objective ``"transfer"`` (default): batches are :class:`PairedNotes` triples, the generator
is run as ``G(content, style)`` and compared with the *target* (note p of instrument B),
so AdaIN transfer is trained; a fraction ``reconstruction_ratio`` of the triples are
self-reconstructions (style = target = content). Objective ``"reconstruction"`` is the
seed's setup and the baseline: ``G(content)`` without style, target = content.

Optimiser: AdamW, lr 2e-4 with betas (0.8, 0.99) (HiFi-GAN's; the seed's beta1 = 0.6 is
unexplained and this repo's trainer already handles warmup), linear warmup then the
trainer's cosine decay instead of the seed's per-epoch exponential decay (the run length is
given in steps or minutes, not epochs).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import Tensor, nn

from mambakit.pretrained import PretrainedMixin, atomic_write_bytes
from mambakit.timbre.data import PairedNotes
from mambakit.timbre.discriminators import TimbreDiscriminator
from mambakit.timbre.losses import (
    DEFAULT_WEIGHTS,
    GeneratorLoss,
    LossWeights,
    discriminator_loss,
)
from mambakit.timbre.model import TimbreConfig, TimbreUNet
from mambakit.train import FitSummary, TrainConfig, Trainer

__all__ = ["TimbreGAN", "make_loss", "reconstruction_loss", "train_timbre", "DISC_WIDTH"]

DISC_NAME = "discriminator.safetensors"
TRAIN_INFO_NAME = "timbre_train.json"
# Discriminator width per preset (1.0 = HiFi-GAN's ~58 M parameters, as the seed used).
DISC_WIDTH = {"tiny": 1 / 16, "small": 1 / 4, "base": 1.0}


class TimbreGAN(nn.Module, PretrainedMixin):
    """Generator + discriminator in one module, as the Trainer wants one model.

    ``save_pretrained(dir)`` writes the *generator* as a regular ``TimbreUNet`` checkpoint
    (so ``TimbreUNet.from_pretrained(run)`` works) and the discriminator weights beside it
    in ``discriminator.safetensors`` (for fine-tuning; the trainer's own resume state holds
    both anyway).
    """

    config_class = TimbreConfig
    model_type = "timbre"

    def __init__(self, generator: TimbreUNet, discriminator: TimbreDiscriminator) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.config = generator.config

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        return self.generator(*args, **kwargs)

    def save_pretrained(self, directory: str | os.PathLike[str], extra: dict | None = None) -> Path:
        path = self.generator.save_pretrained(directory, extra=extra)
        state = {
            k: v.detach().contiguous().cpu() for k, v in self.discriminator.state_dict().items()
        }
        atomic_write_bytes(path / DISC_NAME, save(state))
        return path


def make_loss(
    objective: str,
    sample_rate: int,
    weights: LossWeights = DEFAULT_WEIGHTS,
    adversarial: bool = True,
):
    """``loss_fn(model: TimbreGAN, batch, stage)`` for the two-stage Trainer (stages
    ``"disc"`` and ``"gen"``); with ``adversarial=False`` only ``"gen"`` is used and its loss
    is ``45 L_mel + 10 L_STFT`` (no discriminator is run)."""
    if objective not in ("transfer", "reconstruction"):
        raise ValueError(f"objective must be 'transfer' or 'reconstruction', got {objective!r}")
    gen_loss = GeneratorLoss(sample_rate, weights)

    def generate(model: TimbreGAN, batch: dict[str, Tensor]) -> Tensor:
        if objective == "reconstruction":
            return model.generator(batch["content"])
        return model.generator(batch["content"], batch["style"])

    def loss_fn(model: TimbreGAN, batch: dict[str, Tensor], stage: str):
        target = batch["content"] if objective == "reconstruction" else batch["target"]
        if stage == "disc":
            with torch.no_grad():
                fake = generate(model, batch)
            loss = discriminator_loss(model.discriminator(target), model.discriminator(fake))
            return loss, {"d_loss": loss.item()}
        pred = generate(model, batch)
        fake = real = None  # without discriminators: the mel + STFT terms alone
        if adversarial:
            fake, real = model.discriminator(pred), model.discriminator(target)
        loss, terms = gen_loss(pred, target, fake=fake, real=real)
        return loss, {f"g_{k}": v.item() for k, v in terms.items()}

    return loss_fn


@torch.no_grad()
def reconstruction_loss(
    generator: TimbreUNet,
    batch: dict[str, Tensor],
    objective: str = "transfer",
    weights: LossWeights = DEFAULT_WEIGHTS,
) -> float:
    """``45 L_mel + 10 L_STFT`` of the generator on a batch (the non-adversarial part of
    ``L_G``), e.g. to check that training lowers the transfer loss."""
    loss = GeneratorLoss(generator.config.sample_rate, weights)
    if objective == "reconstruction":
        pred, target = generator(batch["content"]), batch["content"]
    else:
        pred, target = generator(batch["content"], batch["style"]), batch["target"]
    return float(loss(pred, target)[0])


def train_timbre(
    data_dir: str | os.PathLike[str] | PairedNotes,
    out_dir: str | os.PathLike[str],
    preset: str | TimbreConfig = "small",
    steps: int | None = None,
    minutes: float | None = None,
    objective: str = "transfer",
    reconstruction_ratio: float = 0.2,
    batch_size: int = 8,
    segment_seconds: float | None = None,
    lr: float = 2e-4,
    betas: tuple[float, float] = (0.8, 0.99),
    disc_width: float | None = None,
    weights: LossWeights = DEFAULT_WEIGHTS,
    adversarial: bool = True,
    gradient_checkpointing: bool = False,
    bidirectional: bool | None = None,
    device: str | None = None,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
) -> FitSummary:
    """Train a timbre-transfer generator on an NSynth-layout folder into ``out_dir``.

    Args:
        data_dir: NSynth-layout folder (or a ready :class:`PairedNotes`).
        out_dir: run directory; ``TimbreTransfer.from_pretrained(out_dir)`` loads the result.
        preset: ``"tiny" | "small" | "base"`` or a :class:`TimbreConfig`.
        steps, minutes: run length; give either or both (whichever ends first). With
            ``minutes`` alone the learning rate stays constant after warmup.
        objective: ``"transfer"`` or ``"reconstruction"`` (the seed's baseline).
        reconstruction_ratio: share of self-reconstruction triples in ``"transfer"``.
        segment_seconds: length of the training crops (default: the config's 2.1 s
            segment). Shorter crops make a CPU step several times cheaper (0.5 s: ~4x);
            inference still runs in ``config.segment_seconds`` chunks, and AdaIN's
            statistics are per clip whatever its length.
        disc_width: discriminator width multiplier (default per preset, :data:`DISC_WIDTH`).
        bidirectional: override the preset's Mamba direction switch.
        adversarial: train with the discriminators (the seed's GAN). ``False`` trains on
            the mel + STFT terms alone: no discriminator passes, so a step costs about half,
            which suits a short CPU budget; the discriminator is still saved (untrained).
        gradient_checkpointing: recompute the generator's Mamba blocks in the backward
            pass (:meth:`TimbreUNet.gradient_checkpointing_`): about half the memory for
            ~20 % more time; the trained weights are the same.

    Returns:
        The trainer's :class:`~mambakit.train.FitSummary`.
    """
    if isinstance(preset, TimbreConfig):
        config, preset_name = preset, "custom"
    else:
        config, preset_name = TimbreConfig.preset(preset), preset
    if bidirectional is not None:
        config = config.with_(bidirectional=bidirectional)
    if isinstance(data_dir, PairedNotes):
        dataset = data_dir
    else:
        dataset = PairedNotes(
            data_dir,
            sample_rate=config.sample_rate,
            segment_seconds=segment_seconds or config.segment_seconds,
            objective=objective,
            reconstruction_ratio=reconstruction_ratio,
        )
    torch.manual_seed(seed)
    width = disc_width if disc_width is not None else DISC_WIDTH.get(preset_name, 1 / 4)
    generator = TimbreUNet(config).gradient_checkpointing_(gradient_checkpointing)
    model = TimbreGAN(generator, TimbreDiscriminator(width=width))
    loss_fn = make_loss(objective, config.sample_rate, weights, adversarial)
    batch_size = min(batch_size, len(dataset))
    if steps is None and minutes is None:
        raise ValueError("give steps=..., minutes=... or both")
    # A time budget alone cannot place a cosine schedule (the step rate depends on the
    # machine and its load; a timed first step over-estimates it), so it trains at a
    # constant rate after warmup, as the drums do.
    time_only = steps is None
    steps = steps if steps is not None else 10**7
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "objective": objective,
        "reconstruction_ratio": reconstruction_ratio,
        "preset": preset_name,
        "disc_width": width,
        "adversarial": adversarial,
        "data": str(data_dir) if not isinstance(data_dir, PairedNotes) else None,
        "notes": len(dataset),
        "instruments": len(dataset.instruments),
        # the requested run length, so that evaluations can check equal budgets
        "budget": {
            "steps": None if time_only else steps,
            "minutes": minutes,
            "batch_size": batch_size,
            "segment_seconds": segment_seconds or config.segment_seconds,
        },
    }
    (out / TRAIN_INFO_NAME).write_text(json.dumps(info, indent=2))
    train_config = TrainConfig(
        lr=lr,
        betas=betas,
        weight_decay=0.01,
        max_steps=steps,
        max_minutes=minutes,
        # a CPU time budget may be a few hundred steps: a 200-step warmup would eat it all
        warmup_steps=20 if time_only else min(200, max(1, steps // 20)),
        min_lr_ratio=1.0 if time_only else 0.1,
        batch_size=batch_size,
        ckpt_every=100 if time_only else max(50, steps // 10),
        log_every=max(1, min(25, steps // 20)),
        grad_clip=10.0,  # large: only guards against a blow-up (HiFi-GAN does not clip)
        seed=seed,
        resume=resume,
        device=device,
        progress=progress,
    )
    trainer = Trainer(
        model,
        loss_fn,
        dataset,
        train_config,
        out,
        optimizers=(
            {"disc": model.discriminator, "gen": model.generator}
            if adversarial
            else {"gen": model.generator}
        ),
    )
    return trainer.fit()
