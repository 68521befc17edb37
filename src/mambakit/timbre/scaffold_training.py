"""Train the ``scaffold`` engine (:class:`~mambakit.timbre.scaffold.ScaffoldTimbre`) with the
shared :class:`~mambakit.train.Trainer`.

Batches are :class:`~mambakit.timbre.data.PairedNotes` triples: content = note p of
instrument A, style = another note of instrument B, target = note p of B (a share
``reconstruction_ratio`` are self-reconstructions, style = target = content). The model
hears only the content's f0 and loudness and the style's embedding, and is scored against
the target with

    L = L_STFT (multi-resolution: 2048 .. 128 points) + L_mel + w L_spectrum + v L_MFCC

(spectral convergence + log-magnitude L1, :class:`mambakit.dsp.MultiResolutionSTFTLoss`;
log-mel L1, as :class:`mambakit.dsp.MelLoss`; ``L_spectrum``, optional: L1 between the
log-mel spectra averaged over time, the long-term spectrum that timbre statistics such as
MFCC means describe, which frame-by-frame terms weigh no more than any one frame;
``L_MFCC``, optional: the Euclidean distance between the clips' MFCC statistics, the mean
and std over time of c1..c19, :func:`mambakit.dsp.mfcc_statistics`, which is the distance
``eval timbre``'s style gain is made of). No discriminators: the synthesiser cannot make
the broadband artefacts they exist to remove.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from mambakit.dsp import MultiResolutionSTFTLoss, mel_spectrogram, mfcc_statistics
from mambakit.timbre.data import PairedNotes
from mambakit.timbre.scaffold import ScaffoldConfig, ScaffoldTimbre
from mambakit.timbre.training import TRAIN_INFO_NAME
from mambakit.train import FitSummary, TrainConfig, Trainer

__all__ = ["ScaffoldLoss", "ScaffoldData", "train_scaffold", "DEFAULT_TRAIN"]

# The shipped run's optimiser settings (the steps are the caller's budget).
DEFAULT_TRAIN = TrainConfig(
    lr=1e-3, betas=(0.9, 0.99), weight_decay=0.01, warmup_steps=50, max_steps=1500,
    min_lr_ratio=0.1, grad_clip=1.0, batch_size=16, log_every=10, ckpt_every=100,
)  # fmt: skip


@dataclass(frozen=True)
class ScaffoldData:
    """Which pairs to train on.

    Attributes:
        reconstruction_ratio: share of self-reconstruction triples.
        segment_seconds: crop length (``None``: the model config's).
        max_start_seconds: crops start uniformly within this much of each note's start.
        style_notes: style clips of this many notes of the target instrument (a palette,
            :class:`~mambakit.timbre.data.PairedNotes`).
    """

    reconstruction_ratio: float = 0.2
    segment_seconds: float | None = None
    max_start_seconds: float = 1.0
    style_notes: int = 1


class ScaffoldLoss(nn.Module):
    """``L_STFT + L_mel + spectrum_weight L_spectrum + mfcc_weight L_MFCC`` of an output
    against its target, both ``[B, 1, T]`` (module docstring)."""

    def __init__(
        self, sample_rate: int, spectrum_weight: float = 0.0, mfcc_weight: float = 0.0
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.mfcc_weight = mfcc_weight
        self.stft = MultiResolutionSTFTLoss(fft_sizes=(2048, 1024, 512, 256, 128))
        self.mel_kwargs = dict(sr=sample_rate, n_fft=1024, hop_length=256, n_mels=80)
        self.spectrum_weight = spectrum_weight

    def forward(self, pred: Tensor, target: Tensor) -> tuple[Tensor, dict[str, float]]:
        stft = self.stft(pred, target)
        mel_pred = mel_spectrogram(pred, **self.mel_kwargs)  # [B, n_mels, frames], log
        mel_target = mel_spectrogram(target, **self.mel_kwargs)
        mel = (mel_pred - mel_target).abs().mean()
        total, terms = stft + mel, {"stft": stft.item(), "mel": mel.item()}
        if self.spectrum_weight > 0:
            spectrum = (mel_pred.mean(dim=-1) - mel_target.mean(dim=-1)).abs().mean()
            total = total + self.spectrum_weight * spectrum
            terms["spectrum"] = spectrum.item()
        if self.mfcc_weight > 0:
            sr = self.sample_rate
            diff = mfcc_statistics(pred, sr) - mfcc_statistics(target, sr)  # [B, 38]
            mfcc = diff.norm(dim=-1).mean()  # per clip, as eval timbre's mfcc_dist
            total = total + self.mfcc_weight * mfcc
            terms["mfcc"] = mfcc.item()
        return total, terms


def _loss_fn(loss: ScaffoldLoss):
    def loss_fn(model: ScaffoldTimbre, batch: dict[str, Tensor], stage: str):
        pred = model(batch["content"], batch["style"])
        total, terms = loss(pred, batch["target"])
        return total, terms

    return loss_fn


def train_scaffold(
    data: str | os.PathLike[str] | PairedNotes,
    out_dir: str | os.PathLike[str],
    config: ScaffoldConfig | str = "small",
    train: TrainConfig = DEFAULT_TRAIN,
    pairs: ScaffoldData = ScaffoldData(),
    spectrum_weight: float = 0.0,
    mfcc_weight: float = 0.0,
    init_from: str | os.PathLike[str] | None = None,
) -> FitSummary:
    """Train a scaffold engine on an NSynth-layout folder into ``out_dir``.

    Args:
        data: NSynth-layout folder (or a ready :class:`PairedNotes`).
        out_dir: run directory; ``TimbreTransfer.from_pretrained(out_dir)`` loads it.
        config: a :class:`ScaffoldConfig` or a preset name (``"tiny"``, ``"small"``).
        train: optimiser, budget (``max_steps`` and optionally ``max_minutes``), batch size.
        pairs: how the triples are drawn.
        spectrum_weight: weight of the long-term spectrum term of :class:`ScaffoldLoss`.
        mfcc_weight: weight of its MFCC-statistics term.
        init_from: a scaffold run (or packaged model name) whose weights start the run
            (fine-tuning). With a preset name as ``config`` the run's own config is used; a
            :class:`ScaffoldConfig` must have the run's parameter shapes.

    Returns:
        The trainer's :class:`~mambakit.train.FitSummary`.
    """
    preset = config if isinstance(config, str) else "custom"
    start = ScaffoldTimbre.from_pretrained(init_from) if init_from is not None else None
    if start is not None and isinstance(config, str):
        config = start.config
    config = ScaffoldConfig.preset(config) if isinstance(config, str) else config
    segment = pairs.segment_seconds or config.segment_seconds
    dataset = PairedNotes.from_source(
        data,
        sample_rate=config.sample_rate,
        segment_seconds=segment,
        max_start_seconds=pairs.max_start_seconds,
        reconstruction_ratio=pairs.reconstruction_ratio,
        style_notes=pairs.style_notes,
    )
    torch.manual_seed(train.seed)
    model = ScaffoldTimbre(config)
    if start is not None:
        try:
            model.load_state_dict(start.state_dict())
        except RuntimeError as exc:
            raise ValueError(f"{init_from}: its weights do not fit this config ({exc})") from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "engine": "scaffold",
        "objective": "transfer",
        "reconstruction_ratio": pairs.reconstruction_ratio,
        "preset": preset,
        "adversarial": False,
        "spectrum_weight": spectrum_weight,
        "mfcc_weight": mfcc_weight,
        "init_from": str(init_from) if init_from is not None else None,
        "data": str(data) if not isinstance(data, PairedNotes) else None,
        "notes": len(dataset),
        "instruments": len(dataset.instruments),
        "parameters": model.parameter_count(),
        "budget": {
            "steps": train.max_steps,
            "minutes": train.max_minutes,
            "batch_size": train.batch_size,
            "segment_seconds": segment,
        },
        "train_config": asdict(train),
    }
    (out / TRAIN_INFO_NAME).write_text(json.dumps(info, indent=2))
    loss = ScaffoldLoss(config.sample_rate, spectrum_weight, mfcc_weight)
    trainer = Trainer(model, _loss_fn(loss), dataset, train, out)
    return trainer.fit()
