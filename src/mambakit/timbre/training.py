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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import Tensor, nn

from mambakit.pretrained import atomic_write_bytes
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

__all__ = [
    "timbre_gan",
    "save_timbre_gan",
    "make_loss",
    "reconstruction_loss",
    "train_timbre",
    "DISC_WIDTH",
]

DISC_NAME = "discriminator.safetensors"
TRAIN_INFO_NAME = "timbre_train.json"
# Discriminator width per preset (1.0 = HiFi-GAN's ~58 M parameters, as the seed used).
DISC_WIDTH = {"tiny": 1 / 16, "small": 1 / 4, "base": 1.0}


def timbre_gan(generator: TimbreUNet, discriminator: TimbreDiscriminator) -> nn.ModuleDict:
    """The module the Trainer trains: ``{"generator": ..., "discriminator": ...}``.

    A plain ``ModuleDict``: the Trainer trains any ``nn.Module`` and :func:`save_timbre_gan`
    writes its export. Its parameter names (``generator.*``, ``discriminator.*``) are those
    of the former ``TimbreGAN`` wrapper, so the ``trainer_state.pt`` of older runs resumes.
    """
    return nn.ModuleDict({"generator": generator, "discriminator": discriminator})


def save_timbre_gan(model: nn.Module, directory: Path, extra: dict[str, Any]) -> None:
    """The Trainer's ``save_fn`` for :func:`timbre_gan`: the *generator* as a regular
    ``TimbreUNet`` checkpoint (so ``TimbreUNet.from_pretrained(run)`` works) and the
    discriminator weights beside it in ``discriminator.safetensors`` (for fine-tuning; the
    trainer's own resume state holds both anyway)."""
    path = model["generator"].save_pretrained(directory, extra=extra)
    state = {
        k: v.detach().contiguous().cpu() for k, v in model["discriminator"].state_dict().items()
    }
    atomic_write_bytes(path / DISC_NAME, save(state))


def make_loss(
    objective: str,
    sample_rate: int,
    weights: LossWeights = DEFAULT_WEIGHTS,
    adversarial: bool = True,
):
    """``loss_fn(model, batch, stage)`` for the two-stage Trainer, ``model`` a
    :func:`timbre_gan` (stages
    ``"disc"`` and ``"gen"``); with ``adversarial=False`` only ``"gen"`` is used and its loss
    is ``45 L_mel + 10 L_STFT`` (no discriminator is run)."""
    if objective not in ("transfer", "reconstruction"):
        raise ValueError(f"objective must be 'transfer' or 'reconstruction', got {objective!r}")
    gen_loss = GeneratorLoss(sample_rate, weights)

    def generate(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        if objective == "reconstruction":
            return model["generator"](batch["content"])
        return model["generator"](batch["content"], batch["style"])

    def loss_fn(model: nn.Module, batch: dict[str, Tensor], stage: str):
        target = batch["content"] if objective == "reconstruction" else batch["target"]
        if stage == "disc":
            with torch.no_grad():
                fake = generate(model, batch)
            disc = model["discriminator"]
            loss = discriminator_loss(disc(target), disc(fake))
            return loss, {"d_loss": loss.item()}
        pred = generate(model, batch)
        fake = real = None  # without discriminators: the mel + STFT terms alone
        if adversarial:
            fake, real = model["discriminator"](pred), model["discriminator"](target)
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


@dataclass(frozen=True)
class UNetTraining:
    """What a U-Net run trains on and with, beside its budget and optimiser.

    Attributes:
        objective: ``"transfer"`` or ``"reconstruction"`` (the seed's baseline).
        reconstruction_ratio: share of self-reconstruction triples in ``"transfer"``.
        segment_seconds: length of the training crops (default: the config's 2.1 s
            segment). Shorter crops make a CPU step several times cheaper; inference still
            runs in ``config.segment_seconds`` chunks, and AdaIN's statistics are per clip
            whatever its length.
        disc_width: discriminator width multiplier (default per preset, :data:`DISC_WIDTH`).
        weights: the loss weights.
        adversarial: train with the discriminators (the seed's GAN). ``False`` trains on
            the mel + STFT terms alone: no discriminator passes, so a step costs about half,
            which suits a short CPU budget; the discriminator is still saved (untrained).
        gradient_checkpointing: recompute the generator's Mamba blocks in the backward
            pass (:meth:`TimbreUNet.gradient_checkpointing_`): about half the memory for a
            little more time; the trained weights are the same.
        bidirectional: override the preset's Mamba direction switch.
    """

    objective: str = "transfer"
    reconstruction_ratio: float = 0.2
    segment_seconds: float | None = None
    disc_width: float | None = None
    weights: LossWeights = DEFAULT_WEIGHTS
    adversarial: bool = True
    gradient_checkpointing: bool = False
    bidirectional: bool | None = None


def timbre_train_config(
    steps: int | None = None, minutes: float | None = None, **fields: Any
) -> TrainConfig:
    """The U-Net's training settings for a budget of ``steps``, ``minutes`` or both
    (:meth:`TrainConfig.from_budget`): AdamW at lr 2e-4 with betas (0.8, 0.99) as HiFi-GAN,
    batches of 8, a warmup of 1/20 of the run (at most 200 steps; 20 for a time budget,
    which on a CPU may be a few hundred steps), gradients clipped only against a blow-up.
    ``fields`` override any :class:`TrainConfig` field."""
    defaults: dict[str, Any] = {
        "lr": 2e-4, "betas": (0.8, 0.99), "weight_decay": 0.01, "batch_size": 8,
        "grad_clip": 10.0, "resume": False,
    }  # fmt: skip
    return TrainConfig.from_budget(
        steps, minutes, warmup_divisor=20, max_warmup=200, time_only_warmup=20,
        **{**defaults, **fields},
    )  # fmt: skip


def train_timbre(
    data_dir: str | os.PathLike[str] | PairedNotes,
    out_dir: str | os.PathLike[str],
    train: TrainConfig,
    preset: str | TimbreConfig = "small",
    options: UNetTraining = UNetTraining(),  # noqa: B008  (frozen: safe as a default)
) -> FitSummary:
    """Train a timbre-transfer U-Net on an NSynth-layout folder (or a ready
    :class:`PairedNotes`) into ``out_dir`` with the budget and optimiser of ``train`` (e.g.
    :func:`timbre_train_config`; its ``seed`` also draws the initial weights, its batch size
    is capped at the number of notes) and the objective and losses of ``options``.
    ``preset``: ``"tiny" | "small" | "base"`` or a :class:`TimbreConfig`.
    ``TimbreTransfer.from_pretrained(out_dir)`` loads the result; returns the trainer's
    :class:`~mambakit.train.FitSummary`.
    """
    opt = options
    if isinstance(preset, TimbreConfig):
        config, preset_name = preset, "custom"
    else:
        config, preset_name = TimbreConfig.preset(preset), preset
    if opt.bidirectional is not None:
        config = config.with_(bidirectional=opt.bidirectional)
    segment_seconds = opt.segment_seconds or config.segment_seconds
    dataset = PairedNotes.from_source(
        data_dir, sample_rate=config.sample_rate, segment_seconds=segment_seconds,
        objective=opt.objective, reconstruction_ratio=opt.reconstruction_ratio,
    )  # fmt: skip
    torch.manual_seed(train.seed)
    width = opt.disc_width if opt.disc_width is not None else DISC_WIDTH.get(preset_name, 1 / 4)
    generator = TimbreUNet(config).gradient_checkpointing_(opt.gradient_checkpointing)
    model = timbre_gan(generator, TimbreDiscriminator(width=width))
    loss_fn = make_loss(opt.objective, config.sample_rate, opt.weights, opt.adversarial)
    train = replace(train, batch_size=min(train.batch_size, len(dataset)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "objective": opt.objective,
        "reconstruction_ratio": opt.reconstruction_ratio,
        "preset": preset_name,
        "disc_width": width,
        "adversarial": opt.adversarial,
        "data": str(data_dir) if not isinstance(data_dir, PairedNotes) else None,
        "notes": len(dataset),
        "instruments": len(dataset.instruments),
        # the requested run length, so that evaluations can check equal budgets
        "budget": {
            "steps": train.max_steps,
            "minutes": train.max_minutes,
            "batch_size": train.batch_size,
            "segment_seconds": segment_seconds,
        },
    }
    (out / TRAIN_INFO_NAME).write_text(json.dumps(info, indent=2))
    trainer = Trainer(
        model,
        loss_fn,
        dataset,
        train,
        out,
        optimizers=(
            {"disc": model["discriminator"], "gen": generator}
            if opt.adversarial
            else {"gen": generator}
        ),
        save_fn=save_timbre_gan,
    )
    return trainer.fit()
