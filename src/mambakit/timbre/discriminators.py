"""HiFi-GAN's discriminators (Kong et al., 2020): multi-period (MPD) and multi-scale (MSD).

Each sub-discriminator returns ``(score, features)``: ``score`` ``[B, N]`` (a map of real /
fake decisions, flattened) and the list of intermediate activations used by the feature
matching loss. :class:`TimbreDiscriminator` bundles both families and returns a flat list
of ``(score, features)``, one entry per sub-discriminator (5 periods + 3 scales = 8).

Widths are scaled by ``width`` (1.0 = HiFi-GAN's 32..1024 for MPD and 16..1024 for MSD),
so tests and CPU runs can use small discriminators with the same structure.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

__all__ = [
    "PeriodDiscriminator",
    "ScaleDiscriminator",
    "MultiPeriodDiscriminator",
    "MultiScaleDiscriminator",
    "TimbreDiscriminator",
]

DiscOutput = tuple[Tensor, list[Tensor]]


def _scaled(width: float, channels: int) -> int:
    return max(4, int(round(channels * width)))


def _conv_stack(convs: nn.ModuleList, out: nn.Module, x: Tensor) -> DiscOutput:
    """HiFi-GAN's discriminator body: each conv then leaky ReLU (slope 0.1), then the output
    conv; returns the flattened scores and every layer's activations (for the feature
    matching loss)."""
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), 0.1)
        features.append(x)
    x = out(x)
    features.append(x)
    return x.flatten(1), features


class PeriodDiscriminator(nn.Module):
    """Folds ``[B, 1, T]`` into ``[B, 1, T/p, p]`` (right-padded by reflection) and applies
    2-D convs with ``(k, 1)`` kernels, so each column sees samples exactly ``p`` apart."""

    def __init__(self, period: int, width: float = 1.0) -> None:
        super().__init__()
        self.period = period
        chans = [1, *(_scaled(width, c) for c in (32, 128, 512, 1024, 1024))]
        self.convs = nn.ModuleList(
            weight_norm(
                nn.Conv2d(chans[i], chans[i + 1], (5, 1), (3 if i < 4 else 1, 1), padding=(2, 0))
            )
            for i in range(5)
        )
        self.out = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, audio: Tensor) -> DiscOutput:
        b, c, t = audio.shape
        pad = (-t) % self.period
        if pad:
            # reflection needs pad < t; fall back to zeros for very short inputs
            audio = F.pad(audio, (0, pad), mode="reflect" if pad < t else "constant")
        folded = audio.view(b, c, -1, self.period)  # (B, 1, T/p, p)
        return _conv_stack(self.convs, self.out, folded)


class ScaleDiscriminator(nn.Module):
    """MelGAN's 1-D discriminator: grouped strided convs over the (pooled) waveform."""

    def __init__(self, width: float = 1.0, spectral: bool = False) -> None:
        super().__init__()
        norm = spectral_norm if spectral else weight_norm
        c = [_scaled(width, n) for n in (16, 64, 256, 1024, 1024, 1024)]
        # (c_in, c_out, kernel, stride, groups); groups shrink with the width so they divide it
        specs = [
            (1, c[0], 15, 1, 1),
            (c[0], c[1], 41, 4, _groups(c[0], c[1], 4)),
            (c[1], c[2], 41, 4, _groups(c[1], c[2], 16)),
            (c[2], c[3], 41, 4, _groups(c[2], c[3], 64)),
            (c[3], c[4], 41, 4, _groups(c[3], c[4], 256)),
            (c[4], c[5], 5, 1, 1),
        ]
        self.convs = nn.ModuleList(
            norm(nn.Conv1d(ci, co, k, s, padding=k // 2, groups=g)) for ci, co, k, s, g in specs
        )
        self.out = norm(nn.Conv1d(c[5], 1, 3, padding=1))

    def forward(self, audio: Tensor) -> DiscOutput:
        return _conv_stack(self.convs, self.out, audio)


def _groups(c_in: int, c_out: int, wanted: int) -> int:
    """The largest group count <= ``wanted`` that divides both widths."""
    g = min(wanted, c_in, c_out)
    while c_in % g or c_out % g:
        g -= 1
    return g


class MultiPeriodDiscriminator(nn.Module):
    """One :class:`PeriodDiscriminator` per period (HiFi-GAN: 2, 3, 5, 7, 11 — primes, so
    the periodic structures they see overlap as little as possible)."""

    def __init__(self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), width: float = 1.0) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, width) for p in periods)

    def forward(self, audio: Tensor) -> list[DiscOutput]:
        return [d(audio) for d in self.discriminators]


class MultiScaleDiscriminator(nn.Module):
    """Sub-discriminators on the raw waveform and on 2x, 4x average-pooled copies; the
    first uses spectral norm, as in HiFi-GAN."""

    def __init__(self, scales: int = 3, width: float = 1.0) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            ScaleDiscriminator(width, spectral=i == 0) for i in range(scales)
        )
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, audio: Tensor) -> list[DiscOutput]:
        outputs = []
        for i, d in enumerate(self.discriminators):
            if i > 0:
                audio = self.pool(audio)
            outputs.append(d(audio))
        return outputs


class TimbreDiscriminator(nn.Module):
    """MPD + MSD: ``disc(audio [B, 1, T]) -> [(score [B, N_k], features_k) for each k]``."""

    def __init__(
        self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), scales: int = 3, width: float = 1.0
    ) -> None:
        super().__init__()
        self.mpd = MultiPeriodDiscriminator(periods, width)
        self.msd = MultiScaleDiscriminator(scales, width)

    def forward(self, audio: Tensor) -> list[DiscOutput]:
        return self.mpd(audio) + self.msd(audio)
