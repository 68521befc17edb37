"""Losses of MambaMuse (seed section III-E, HiFi-GAN's formulation).

Least-squares GAN (seed equation 3), summed over the sub-discriminators k:

    L_D = sum_k E[(D_k(y) - 1)^2] + E[D_k(G(s))^2]
    L_adv(G) = sum_k E[(D_k(G(s)) - 1)^2]

Feature matching: ``L_fm = sum_k sum_l mean |D_k^l(y) - D_k^l(G(s))|`` over the layers ``l``.

Generator objective (seed equation 4, plus HiFi-GAN's feature matching, weight 2):

    L_G = 45 L_mel + 10 L_STFT + L_adv + 2 L_fm

``L_mel`` is the L1 distance of log-mel spectrograms computed in torch
(:class:`mambakit.dsp.MelLoss`), so unlike the seed's librosa-on-numpy version it sends
gradient to the generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mambakit.dsp import MelLoss, MultiResolutionSTFTLoss

__all__ = [
    "DEFAULT_WEIGHTS",
    "LossWeights",
    "discriminator_loss",
    "generator_adversarial_loss",
    "feature_matching_loss",
    "GeneratorLoss",
]

DiscOutputs = list[tuple[Tensor, list[Tensor]]]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the generator terms: seed's 45 (mel) and 10 (STFT); HiFi-GAN's 2 (fm)."""

    mel: float = 45.0
    stft: float = 10.0
    adv: float = 1.0
    fm: float = 2.0


DEFAULT_WEIGHTS = LossWeights()


def discriminator_loss(real: DiscOutputs, fake: DiscOutputs) -> Tensor:
    """``sum_k mean (D_k(y) - 1)^2 + mean D_k(G(s))^2`` (fake scores detached by the caller)."""
    total = real[0][0].new_zeros(())
    for (score_real, _), (score_fake, _) in zip(real, fake):
        total = total + (score_real - 1).pow(2).mean() + score_fake.pow(2).mean()
    return total


def generator_adversarial_loss(fake: DiscOutputs) -> Tensor:
    """``sum_k mean (D_k(G(s)) - 1)^2``."""
    total = fake[0][0].new_zeros(())
    for score, _ in fake:
        total = total + (score - 1).pow(2).mean()
    return total


def feature_matching_loss(real: DiscOutputs, fake: DiscOutputs) -> Tensor:
    """``sum_k sum_l mean |D_k^l(y) - D_k^l(G(s))|``; real features are detached."""
    total = fake[0][0].new_zeros(())
    for (_, feats_real), (_, feats_fake) in zip(real, fake):
        for fr, ff in zip(feats_real, feats_fake):
            total = total + (fr.detach() - ff).abs().mean()
    return total


class GeneratorLoss(nn.Module):
    """The reconstruction part of ``L_G``: ``45 L_mel + 10 L_STFT`` (plus the GAN terms when
    discriminator outputs are given).

    Args:
        sample_rate: audio rate in Hz (for the mel filterbank).
        weights: :class:`LossWeights`.
        n_fft, hop_length, n_mels: mel analysis (HiFi-GAN: 1024 / 256 / 80).
        stft_sizes: FFT sizes of the multi-resolution STFT loss (hops = size / 4); sizes
            over twice a clip's length are left out for that clip.
    """

    def __init__(
        self,
        sample_rate: int,
        weights: LossWeights = DEFAULT_WEIGHTS,
        n_fft: int = 1024,
        hop_length: int = 256,
        n_mels: int = 80,
        stft_sizes: tuple[int, ...] = (512, 1024, 2048),
    ) -> None:
        super().__init__()
        self.weights = weights
        self.mel = MelLoss(sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
        self.stft_sizes = tuple(stft_sizes)
        self.stft = MultiResolutionSTFTLoss(fft_sizes=stft_sizes)

    def _stft_loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """MR-STFT over the resolutions whose (centred, reflect-padded) frames fit the clip."""
        n = pred.shape[-1]
        if n > max(self.stft_sizes) // 2:
            return self.stft(pred, target)
        sizes = [s for s in self.stft_sizes if s // 2 < n] or [2 ** int(math.log2(n))]
        return MultiResolutionSTFTLoss(fft_sizes=sizes)(pred, target)

    def forward(
        self,
        pred: Tensor,
        target: Tensor,
        fake: DiscOutputs | None = None,
        real: DiscOutputs | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``pred``, ``target`` ``[B, 1, T]``; ``fake = D(pred)``, ``real = D(target)``.

        Returns ``(weighted total, {term: unweighted value})``.
        """
        w = self.weights
        terms = {"mel": self.mel(pred, target), "stft": self._stft_loss(pred, target)}
        if fake is not None:
            terms["adv"] = generator_adversarial_loss(fake)
            if real is not None:
                terms["fm"] = feature_matching_loss(real, fake)
        total = sum(
            (getattr(w, k) * v for k, v in terms.items()), torch.zeros((), device=pred.device)
        )
        return total, terms
