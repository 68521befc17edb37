"""MambaMuse: a waveform U-Net with Mamba blocks and AdaIN for one-shot timbre transfer.

Architecture (seed section III, after Wave-U-Mamba), for a waveform ``[B, 1, T]``:

    encoder level i = 1..4:  stem (conv k=4, LayerNorm, LeakyReLU, residual)
                             -> AvgPool1d(2) -> N=2 MambaBlocks      -> skip_i  [B, c_i, T/2^i]
    bottleneck:              stem -> N=3 MambaBlocks                  -> h       [B, c_b, T/16]
    AdaIN(content, style) on skip_1..skip_4 and on h, strengths alpha = (a_1, .., a_4, a_b)
    decoder level i = 4..1:  h + skip_i -> ConvTranspose(stride 2, kernel 2*stride)
                             -> HiFi-GAN ResBlock (k=3, dilations 1, 3) -> [B, c_{i-1}, T/2^(i-1)]
    head:                    conv k=7 -> tanh                          -> [B, 1, T]

Every convolution is weight-normalised (Salimans & Kingma, 2016). A MambaBlock is
``x + Mamba(LayerNorm(x))`` on ``[B, T, C]``; ``bidirectional=True`` runs a forward and a
time-reversed Mamba and sums them (the U-Net is not causal, so nothing is lost).

Lengths: any ``T`` is accepted; the content is zero-padded to a multiple of 16 and the output
cropped back. The style clip may have any length: only its per-channel time statistics are
used (see :mod:`mambakit.timbre.adain`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm
from torch.utils.checkpoint import checkpoint

from mambakit.pretrained import PretrainedMixin
from mambakit.ssm import Bidirectional, Mamba, Mamba2
from mambakit.timbre.adain import adain, time_statistics

__all__ = ["TimbreConfig", "TimbreUNet", "StyleStatistics"]

# Per-level (mean, std) pairs, each [B, C, 1]: skip_1..skip_4 then the bottleneck.
StyleStatistics = list[tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class TimbreConfig:
    """Configuration of :class:`TimbreUNet`.

    Attributes:
        sample_rate: audio rate in Hz the model is trained at (seed: 16 kHz).
        segment_seconds: training / inference chunk length in seconds (seed: 2.1 s).
        channels: widths ``c_1..c_4`` of the four encoder levels (level i runs at T / 2^i).
        bottleneck_channels: width ``c_b`` of the bottleneck (at T / 16).
        encoder_blocks: MambaBlocks per encoder level (seed: N = 2), one number for all four
            levels or four numbers, finest first (0 = a level of convolutions only).
        bottleneck_blocks: MambaBlocks in the bottleneck (seed: N = 3).
        mixer: the SSM of the MambaBlocks, ``"mamba"`` (Mamba-1, the seed's) or ``"mamba2"``
            (Mamba-2 / SSD with ``headdim``-wide heads: same role, and much faster on CPU at
            these widths and lengths, where Mamba-1's per-state decay makes its scan memory
            bound; the ``small`` preset, the CLI default, uses it; ``mambakit bench timbre``).
        d_state, d_conv, expand: SSM hyper-parameters.
        headdim: Mamba-2 head width (capped at ``expand * width`` for narrow levels).
        chunk_size: Mamba-2 SSD chunk length (32 is the fastest on CPU at these widths).
        bidirectional: sum a forward and a time-reversed Mamba in each MambaBlock.
        stem_kernel: kernel of the stem convolutions (seed: 4, stride 1).
        upsample_kernel_multiple: transposed-conv kernel = this * stride (checkerboard-free
            when the kernel is a multiple of the stride, Odena et al. 2016).
        resblock_kernel, resblock_dilations: the HiFi-GAN residual block (seed: 3, (1, 3)).
        alpha: default AdaIN strengths for ``(skip_1, skip_2, skip_3, skip_4, bottleneck)``;
            ``skip_1`` is the finest level. The seed's default is ``(1, 1, 1, 1, 0.2)``.
    """

    sample_rate: int = 16000
    segment_seconds: float = 2.1
    channels: tuple[int, int, int, int] = (32, 64, 128, 256)
    bottleneck_channels: int = 304
    encoder_blocks: int | tuple[int, int, int, int] = 2
    bottleneck_blocks: int = 3
    mixer: str = "mamba"
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    headdim: int = 32
    chunk_size: int = 32
    bidirectional: bool = False
    stem_kernel: int = 4
    upsample_kernel_multiple: int = 2
    resblock_kernel: int = 3
    resblock_dilations: tuple[int, ...] = (1, 3)
    alpha: tuple[float, float, float, float, float] = field(default=(1.0, 1.0, 1.0, 1.0, 0.2))

    def __post_init__(self) -> None:
        if len(self.channels) != 4:
            raise ValueError(f"TimbreConfig.channels needs 4 widths, got {self.channels}")
        if len(self.alpha) != 5:
            raise ValueError(
                f"TimbreConfig.alpha needs 5 strengths (4 skips + bottleneck), got {self.alpha}"
            )
        if self.upsample_kernel_multiple < 1:
            raise ValueError("TimbreConfig.upsample_kernel_multiple must be >= 1")
        blocks = self.blocks_per_level
        if len(blocks) != 4 or min(blocks) < 0:
            raise ValueError(
                f"TimbreConfig.encoder_blocks needs one count or 4 counts >= 0, "
                f"got {self.encoder_blocks}"
            )
        if self.mixer not in ("mamba", "mamba2"):
            raise ValueError(f"TimbreConfig.mixer must be 'mamba' or 'mamba2', got {self.mixer!r}")

    @property
    def blocks_per_level(self) -> tuple[int, ...]:
        """MambaBlocks of each encoder level, finest first."""
        if isinstance(self.encoder_blocks, int):
            return (self.encoder_blocks,) * 4
        return tuple(self.encoder_blocks)

    @property
    def segment_samples(self) -> int:
        """Segment length in samples (33600 for 2.1 s at 16 kHz)."""
        return int(round(self.segment_seconds * self.sample_rate))

    @classmethod
    def tiny(cls, **overrides: Any) -> TimbreConfig:
        """A few thousand parameters for tests (still four levels, same code paths)."""
        base = dict(
            channels=(8, 8, 16, 16), bottleneck_channels=16, d_state=4, encoder_blocks=1,
            bottleneck_blocks=1, segment_seconds=0.128,
        )  # fmt: skip
        return cls(**{**base, **overrides})

    @classmethod
    def small(cls, **overrides: Any) -> TimbreConfig:
        """About 0.4 M parameters, built for CPU speed (the CLI default): Mamba-2 blocks
        (expand 1) at levels 2-4 and two in the bottleneck, none at level 1.

        Why: every Mamba block costs about the same at every level (the frame rate halves
        as the width doubles), and level 1 runs at 8 k frames/s on 16 channels, where a
        block buys least context per millisecond; its stem convolution still shapes the
        finest skip. ``mambakit bench timbre`` measures what this buys against the former
        layout (11 expand-2 blocks); the figures are in ``docs/RESULTS.md``.
        """
        base = dict(
            channels=(16, 32, 64, 128), bottleneck_channels=128, d_state=16, mixer="mamba2",
            expand=1, encoder_blocks=(0, 1, 1, 1), bottleneck_blocks=2,
        )  # fmt: skip
        return cls(**{**base, **overrides})

    @classmethod
    def base(cls, **overrides: Any) -> TimbreConfig:
        """The seed's size (about 4.2 M parameters, unidirectional)."""
        return cls(**overrides)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TimbreConfig:
        presets = {"tiny": cls.tiny, "small": cls.small, "base": cls.base}
        if name not in presets:
            raise ValueError(f"unknown timbre preset {name!r}; choose from {sorted(presets)}")
        return presets[name](**overrides)

    def with_(self, **changes: Any) -> TimbreConfig:
        return replace(self, **changes)


def _conv1d(c_in: int, c_out: int, kernel: int, dilation: int = 1) -> nn.Module:
    """A weight-normalised, length-preserving ('same') 1-D convolution.

    Explicit zero padding (one more on the right for even kernels such as the stem's 4),
    which PyTorch's ``padding="same"`` would do with a copy and a warning.
    """
    total = (kernel - 1) * dilation
    conv = weight_norm(nn.Conv1d(c_in, c_out, kernel, dilation=dilation))
    if total == 0:
        return conv
    return nn.Sequential(nn.ConstantPad1d((total // 2, total - total // 2), 0.0), conv)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a ``[B, C, T]`` map."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class StemBlock(nn.Module):
    """``proj(x) + LeakyReLU(LayerNorm(conv_k(x)))``: the 1-D stem embedding of the seed.

    ``proj`` is the identity when widths match and a 1x1 conv otherwise, so the residual
    path exists at every level (including the first, from 1 channel).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__()
        self.conv = _conv1d(c_in, c_out, kernel)
        self.norm = ChannelLayerNorm(c_out)
        self.proj = nn.Identity() if c_in == c_out else _conv1d(c_in, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, c_in, T] -> [B, c_out, T]``."""
        return self.proj(x) + F.leaky_relu(self.norm(self.conv(x)), 0.1)


class MambaBlock(nn.Module):
    """``x + Mamba(LayerNorm(x))`` on a ``[B, C, T]`` map (the mixer sees ``[B, T, C]``);
    the mixer is Mamba-1 or Mamba-2 (``config.mixer``), optionally bidirectional."""

    def __init__(self, config: TimbreConfig, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)

        def make() -> nn.Module:
            if config.mixer == "mamba2":
                return Mamba2(
                    width, d_state=config.d_state, d_conv=config.d_conv, expand=config.expand,
                    headdim=min(config.headdim, config.expand * width),
                    chunk_size=config.chunk_size,
                )  # fmt: skip
            return Mamba(width, d_state=config.d_state, d_conv=config.d_conv, expand=config.expand)

        self.mixer = Bidirectional(make) if config.bidirectional else make()

    def forward(self, x: Tensor) -> Tensor:
        h = x.transpose(1, 2)  # (B, T, C)
        return x + self.mixer(self.norm(h)).transpose(1, 2)


class ResBlock(nn.Module):
    """HiFi-GAN residual block ("ResBlock1"): for each dilation d,
    ``x = x + conv_1(lrelu(conv_d(lrelu(x))))``."""

    def __init__(self, width: int, kernel: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.dilated = nn.ModuleList(_conv1d(width, width, kernel, d) for d in dilations)
        self.plain = nn.ModuleList(_conv1d(width, width, kernel) for _ in dilations)

    def forward(self, x: Tensor) -> Tensor:
        for dilated, plain in zip(self.dilated, self.plain):
            x = x + plain(F.leaky_relu(dilated(F.leaky_relu(x, 0.1)), 0.1))
        return x


class PairMean(nn.Module):
    """``AvgPool1d(2)`` for even lengths as one strided add: on CPU far cheaper than the
    pooling kernel for these thin maps (the U-Net pads every input to a multiple of 16)."""

    def forward(self, x: Tensor) -> Tensor:
        return (x[..., 0::2] + x[..., 1::2]) * 0.5


class EncoderLevel(nn.Module):
    """Stem -> optional AvgPool1d(2) -> ``n_blocks`` MambaBlocks."""

    def __init__(
        self, config: TimbreConfig, c_in: int, c_out: int, n_blocks: int, pool: bool
    ) -> None:
        super().__init__()
        self.stem = StemBlock(c_in, c_out, config.stem_kernel)
        self.pool = PairMean() if pool else nn.Identity()
        self.blocks = nn.Sequential(*(MambaBlock(config, c_out) for _ in range(n_blocks)))
        self.checkpoint = False  # set by TimbreUNet.gradient_checkpointing_

    def forward(self, x: Tensor) -> Tensor:
        """``[B, c_in, T] -> [B, c_out, T / 2]`` (or ``T`` without pooling)."""
        x = self.pool(self.stem(x))
        if not (self.checkpoint and torch.is_grad_enabled()):
            return self.blocks(x)
        for block in self.blocks:  # keep only each block's input; recompute it in backward
            x = checkpoint(block, x, use_reentrant=False)
        return x


class DecoderLevel(nn.Module):
    """Transposed conv (stride 2, kernel ``2 * multiple``) -> HiFi-GAN ResBlock."""

    def __init__(self, config: TimbreConfig, c_in: int, c_out: int) -> None:
        super().__init__()
        stride = 2
        kernel = stride * config.upsample_kernel_multiple
        # out length = (T - 1) * stride - 2 * pad + kernel = 2T exactly for this padding
        self.up = weight_norm(
            nn.ConvTranspose1d(c_in, c_out, kernel, stride, padding=(kernel - stride) // 2)
        )
        self.res = ResBlock(c_out, config.resblock_kernel, config.resblock_dilations)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, c_in, T] -> [B, c_out, 2 T]``."""
        return self.res(self.up(F.leaky_relu(x, 0.1)))


class TimbreUNet(nn.Module, PretrainedMixin):
    """The MambaMuse generator: ``model(content, style=None, alpha=None) -> [B, 1, T]``.

    Args:
        config: :class:`TimbreConfig`.

    Shapes: ``content`` ``[B, 1, T]`` (any T), ``style`` ``[B, 1, T_s]`` (any T_s) or its
    :meth:`style_statistics`. Output ``[B, 1, T]`` in (-1, 1).
    """

    config_class: ClassVar[type] = TimbreConfig
    model_type: ClassVar[str] = "timbre"
    levels: ClassVar[int] = 4

    def __init__(self, config: TimbreConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        widths_in = (1, *c[:-1])
        self.encoders = nn.ModuleList(
            EncoderLevel(config, widths_in[i], c[i], config.blocks_per_level[i], pool=True)
            for i in range(self.levels)
        )
        self.bottleneck = EncoderLevel(
            config, c[-1], config.bottleneck_channels, config.bottleneck_blocks, pool=False
        )
        # The bottleneck joins skip_4 at T / 16; decoder i maps c_i at T / 2^(i+1) to
        # c_(i-1) at T / 2^i (c_1 at full rate for the last one).
        self.bottleneck_to_skip = (
            nn.Identity()
            if config.bottleneck_channels == c[-1]
            else _conv1d(config.bottleneck_channels, c[-1], 1)
        )
        self.decoders = nn.ModuleList(
            DecoderLevel(config, c[i], c[max(i - 1, 0)]) for i in range(self.levels)
        )
        self.head = _conv1d(c[0], 1, 7)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def gradient_checkpointing_(self, enabled: bool = True) -> TimbreUNet:
        """Recompute every MambaBlock in the backward pass instead of storing its
        activations (a training-memory switch; values and gradients are unchanged).

        The Mamba scans hold most of a training step's memory: on one 2.1 s clip the
        ``base`` preset's forward+backward peak about halves for a little more step time
        (``mambakit bench timbre``; figures in ``docs/RESULTS.md``). Returns the model.
        """
        for level in (*self.encoders, self.bottleneck):
            level.checkpoint = enabled
        return self

    def checkpoint_metadata(self) -> dict[str, Any]:
        return {"sample_rate": self.config.sample_rate}

    # ------------------------------------------------------------------ encoder
    def encode(self, audio: Tensor) -> list[Tensor]:
        """Feature maps ``[skip_1, .., skip_4, bottleneck]``; ``skip_i`` is ``[B, c_i, T_pad/2^i]``.

        ``audio`` ``[B, 1, T]`` is zero-padded on the right to a multiple of 16.
        """
        if audio.ndim != 3 or audio.shape[1] != 1:
            raise ValueError(f"TimbreUNet expects audio [B, 1, T], got {tuple(audio.shape)}")
        stride = 2**self.levels
        pad = (-audio.shape[-1]) % stride
        x = F.pad(audio, (0, pad))
        feats = []
        for encoder in self.encoders:
            x = encoder(x)
            feats.append(x)
        feats.append(self.bottleneck(x))
        return feats

    def style_statistics(self, style: Tensor) -> StyleStatistics:
        """Per-level time statistics of a style clip ``[B, 1, T_s]`` (any length >= 16).

        Frames produced only by the zero padding are excluded, so padding does not bias
        the statistics.
        """
        n = style.shape[-1]
        if n < 2**self.levels:
            raise ValueError(f"style clip too short: {n} samples, need >= {2**self.levels}")
        return self._statistics(self.encode(style), n)

    def _statistics(self, feats: list[Tensor], n: int) -> StyleStatistics:
        """Time statistics of each level over the frames that cover the first ``n`` samples."""
        stats = []
        for i, f in enumerate(feats):
            valid = math.ceil(n / 2 ** min(i + 1, self.levels))
            stats.append(time_statistics(f[..., :valid]))
        return stats

    # ------------------------------------------------------------------ forward
    def resolve_alpha(self, alpha: float | tuple[float, ...] | None) -> tuple[float, ...]:
        """``None`` -> config default; a float -> the same for all five points."""
        if alpha is None:
            return tuple(self.config.alpha)
        if isinstance(alpha, (int, float)):
            return (float(alpha),) * (self.levels + 1)
        alpha = tuple(float(a) for a in alpha)
        if len(alpha) != self.levels + 1:
            raise ValueError(
                f"alpha needs {self.levels + 1} values (4 skips, finest first, then the "
                f"bottleneck), got {len(alpha)}"
            )
        return alpha

    def forward(
        self,
        content: Tensor,
        style: Tensor | StyleStatistics | None = None,
        alpha: float | tuple[float, ...] | None = None,
        content_stats: StyleStatistics | None = None,
    ) -> Tensor:
        """Render ``content`` with the timbre of ``style``.

        Args:
            content: ``[B, 1, T]`` waveform in [-1, 1].
            style: ``[B, 1, T_s]`` waveform, its :meth:`style_statistics`, or ``None`` for the
                plain reconstruction path (style = content, where AdaIN is the identity up to
                its epsilon, so it is skipped).
            alpha: AdaIN strengths ``(skip_1..skip_4, bottleneck)``, a single float, or
                ``None`` for ``config.alpha``.
            content_stats: the content's own per-level statistics to normalise with
                (default: those of ``content``). Chunked inference passes the statistics of
                the whole clip so that every chunk is normalised alike.

        Returns:
            ``[B, 1, T]`` waveform.
        """
        n = content.shape[-1]
        feats = self.encode(content)
        if style is not None:
            stats = self.style_statistics(style) if isinstance(style, Tensor) else style
            # padding frames excluded, as for the style
            own = content_stats if content_stats is not None else self._statistics(feats, n)
            feats = self.stylise(feats, stats, alpha, own)
        return self.decode(feats, n)

    def stylise(
        self,
        feats: list[Tensor],
        style_stats: StyleStatistics,
        alpha: float | tuple[float, ...] | None,
        content_stats: StyleStatistics,
    ) -> list[Tensor]:
        """AdaIN of every level of :meth:`encode`'s ``feats`` from ``content_stats`` to
        ``style_stats`` with the strengths ``alpha`` (see :meth:`resolve_alpha`)."""
        strengths = self.resolve_alpha(alpha)
        return [
            adain(f, s, a, content_stats=c)
            for f, s, a, c in zip(feats, style_stats, strengths, content_stats)
        ]

    def decode(self, feats: list[Tensor], n: int) -> Tensor:
        """Feature maps (from :meth:`encode`, maybe stylised) -> waveform ``[B, 1, n]``."""
        *skips, h = feats
        x = self.bottleneck_to_skip(h)
        for i in reversed(range(self.levels)):
            x = self.decoders[i](x + skips[i])  # (B, c_i, T/2^(i+1)) -> (B, c_{i-1}, T/2^i)
        return torch.tanh(self.head(F.leaky_relu(x, 0.1)))[..., :n]
