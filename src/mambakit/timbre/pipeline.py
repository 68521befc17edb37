"""One-shot timbre transfer on clips of any length: the public inference API.

```python
tt = TimbreTransfer.from_pretrained()            # the shipped model, "gm-timbre"
tt = TimbreTransfer.from_pretrained("runs/timbre")  # or any run, of either engine
audio, sr = tt.transfer("melody.wav", "cello_note.wav", alpha=(1, 1, 1, 1, 0.2))
print(tt.last_report)        # conversions done, chunks, speed (x real time), warnings
```

Two engines share this API; ``from_pretrained`` picks the one a checkpoint holds:
``unet`` (:class:`TimbreTransfer`, the MambaMuse U-Net, below) and ``scaffold``
(:class:`ScaffoldTransfer`: f0 + loudness -> Mamba decoder -> harmonic-plus-noise
synthesiser, :mod:`mambakit.timbre.scaffold`).

U-Net engine:

Long content is cut into chunks of the training segment length that overlap by
``overlap_seconds``; each chunk is rendered with the *same* AdaIN statistics (the style's,
computed once from the whole style clip, and the content's, pooled over the chunks' own
encodings, see :meth:`TimbreTransfer.render`) and neighbours are blended with
complementary raised-cosine ramps, ``w_up(i) = sin^2(pi/2 (i + 1/2) / L)``,
``w_down = 1 - w_up``, which sum to one, so there is no seam: outside the overlaps the
result is exactly the model's output for that chunk, and a model that returned its input
would be returned unchanged. Where the model's receptive field lies inside a chunk (e.g.
the first chunk, away from its end, with causal Mamba blocks) chunked and whole-clip
renderings agree exactly; elsewhere the Mamba state of
a later chunk starts from zero, which the overlap hides.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils import parametrize
from tqdm.auto import tqdm

from mambakit.dsp import AudioError, load_audio, resample, to_mono
from mambakit.pretrained import CONFIG_NAME, CheckpointError, resolve_pretrained_path
from mambakit.timbre.adain import EPS as ADAIN_EPS
from mambakit.timbre.model import TimbreUNet
from mambakit.timbre.scaffold import ScaffoldTimbre, low_harmonic_share, voiced_share_warning
from mambakit.utils import resolve_device

__all__ = ["TimbreTransfer", "ScaffoldTransfer", "TransferReport", "AudioInput", "DEFAULT_MODEL"]

AudioInput = str | os.PathLike[str] | Tensor | np.ndarray
#: AdaIN strengths (skip_1..skip_4, bottleneck), one for all, or None for the default.
Alpha = float | tuple[float, ...] | None
# The packaged model ``from_pretrained()`` loads when no run is named.
DEFAULT_MODEL = "gm-timbre"
ENGINES = {"timbre": "unet", "timbre-scaffold": "scaffold"}


@dataclass
class TransferReport:
    """What :meth:`TimbreTransfer.transfer` did.

    Attributes:
        conversions: human-readable notes on input conversions (channels, sample rate).
        warnings: what the engine could not do well with this input (e.g. content that is
            not one pitch line, for the scaffold engine); each is also a Python warning.
        chunks: number of chunks the content was cut into.
        seconds: output duration in seconds.
        processing_seconds: wall-clock time of the model part (style analysis + chunks).
        times_real_time: ``seconds / processing_seconds``, how many times faster than
            real time (> 1: faster; the same figure as ``mambakit bench timbre``).
        style_notes: notes the scaffold engine found in the style clip (its palette; 0
            for the U-Net, which takes the clip's statistics as a whole).
    """

    conversions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    chunks: int = 0
    style_notes: int = 0
    seconds: float = 0.0
    processing_seconds: float = 0.0

    @property
    def times_real_time(self) -> float:
        return times_real_time(self.seconds, self.processing_seconds)


def times_real_time(audio_seconds: float, wall_seconds: float) -> float:
    """Audio seconds rendered per wall-clock second: > 1 is faster than real time (the
    inverse of the speech world's "real-time factor", which we avoid for that reason).
    NaN when no time was measured."""
    return audio_seconds / wall_seconds if wall_seconds > 0 else math.nan


def _expand(stats: list[tuple[Tensor, Tensor]], batch: int) -> list[tuple[Tensor, Tensor]]:
    """Per-level ``(mean, std)`` of one clip ``[1, C, 1]`` -> ``[batch, C, 1]``."""
    return [(m.expand(batch, -1, -1), s.expand(batch, -1, -1)) for m, s in stats]


def _chunk_batch(content: Tensor, plan: list[tuple[int, int]], group: list[int]) -> Tensor:
    """The chunks ``group`` of ``plan`` cut from ``content`` ``[1, 1, T]``, as a batch."""
    return torch.cat([content[..., plan[k][0] : plan[k][1]] for k in group])


def _as_channels_by_time(audio: np.ndarray | Tensor, name: str) -> Tensor:
    """An array or tensor ``[T]``, ``[C, T]`` or ``[1, C, T]`` as float32 ``[C, T]`` on CPU."""
    x = torch.as_tensor(np.asarray(audio) if isinstance(audio, np.ndarray) else audio)
    x = x.detach().float().cpu()
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise AudioError(f"{name}: expected audio [T], [C, T] or [1, C, T], got {tuple(x.shape)}")
    return x


class TimbreTransfer:
    """Play the content of one clip with the timbre of another.

    Args:
        model: a trained :class:`TimbreUNet`.
        device: ``None`` = CPU.
        chunk_seconds: chunk length (default: the model's training segment, 2.1 s).
        overlap_seconds: crossfade length between chunks (default: 0.25 s, at most a quarter
            of a chunk).
        batch_size: chunks rendered together.
        min_seconds: shorter inputs are rejected.
        progress: tqdm bar when there are many chunks.
    """

    def __init__(
        self,
        model: TimbreUNet,
        device: str | torch.device | None = None,
        chunk_seconds: float | None = None,
        overlap_seconds: float | None = None,
        batch_size: int = 4,
        min_seconds: float = 0.05,
        progress: bool = True,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        sr = self.sample_rate
        self.chunk = int(round((chunk_seconds or model.config.segment_seconds) * sr))
        if overlap_seconds is None:
            overlap_seconds = min(0.25, self.chunk / sr / 4)
        self.overlap = int(round(overlap_seconds * sr))
        if not 0 < self.overlap <= self.chunk // 2:
            raise ValueError(
                f"overlap_seconds must be in (0, chunk / 2]; got {overlap_seconds} s for "
                f"{self.chunk / sr:.3f} s chunks"
            )
        self.batch_size = batch_size
        self.min_samples = max(2**model.levels, int(round(min_seconds * sr)))
        self.progress = progress
        self.last_report = TransferReport()

    engine = "unet"

    @classmethod
    def from_pretrained(
        cls,
        run: str | os.PathLike[str] = DEFAULT_MODEL,
        device: str | torch.device | None = None,
        **kwargs,
    ) -> TimbreTransfer:
        """Load the model saved in ``run`` (a training run, a ``save_pretrained`` dir or the
        short name of a packaged model; default the shipped ``gm-timbre``), with the engine
        its ``config.json`` names: a :class:`TimbreTransfer` for a U-Net, a
        :class:`ScaffoldTransfer` for a scaffold model. ``kwargs`` go to that class.

        Raises:
            CheckpointError: no checkpoint there, or one of another model family.
        """
        path = resolve_pretrained_path(run)
        try:
            found = json.loads((path / CONFIG_NAME).read_text()).get("model_type")
        except (OSError, ValueError, AttributeError):
            found = None  # the model class says what is wrong
        device = resolve_device(device)
        if found == ScaffoldTimbre.model_type:
            return ScaffoldTransfer(ScaffoldTimbre.from_pretrained(path, device=device), device,
                                    **kwargs)  # fmt: skip
        if found is not None and found not in ENGINES:
            raise CheckpointError(
                f"{path}: checkpoint is a {found!r} model, not a timbre model "
                f"({' or '.join(map(repr, ENGINES))})"
            )
        return cls(TimbreUNet.from_pretrained(path, device=device), device, **kwargs)

    @property
    def sample_rate(self) -> int:
        return self.model.config.sample_rate

    # ------------------------------------------------------------------ inputs
    def prepare(
        self, audio: AudioInput, sr: int | None, name: str, report: TransferReport
    ) -> tuple[Tensor, float]:
        """Any input -> ``([1, 1, T] at the model rate, peak normalised to 0.95), input peak``.

        Raises:
            AudioError: unreadable, silent or too-short input (the message names it).
        """
        if isinstance(audio, (str, os.PathLike)):
            name = str(audio)
            x, sr = load_audio(Path(audio))
        else:
            x = _as_channels_by_time(audio, name)
            if sr is None:
                sr = self.sample_rate
                report.conversions.append(f"{name}: no sample rate given, assumed {sr} Hz")
        if not torch.isfinite(x).all():
            raise AudioError(f"{name}: contains NaN or infinite samples")
        if x.shape[0] > 1:
            report.conversions.append(f"{name}: mixed {x.shape[0]} channels to mono")
            x = to_mono(x)
        if sr != self.sample_rate:
            report.conversions.append(f"{name}: resampled {sr} Hz -> {self.sample_rate} Hz")
            x = resample(x, sr, self.sample_rate)
        if x.shape[-1] < self.min_samples:
            raise AudioError(
                f"{name}: too short ({x.shape[-1] / self.sample_rate:.3f} s); "
                f"need at least {self.min_samples / self.sample_rate:.3f} s"
            )
        peak = float(x.abs().max())
        if peak < 1e-5:
            raise AudioError(f"{name}: is silent (peak {peak:.2g}); nothing to transfer")
        return (x * (0.95 / peak))[None].to(self.device), peak

    # ------------------------------------------------------------------ chunking
    def chunk_plan(self, n: int) -> list[tuple[int, int]]:
        """``[(start, stop), ...]`` sample ranges covering ``0..n``; neighbours overlap by
        exactly ``overlap`` samples and every chunk is longer than the overlap."""
        if n <= self.chunk:
            return [(0, n)]
        hop = self.chunk - self.overlap
        count = math.ceil((n - self.overlap) / hop)
        return [(k * hop, min(k * hop + self.chunk, n)) for k in range(count)]

    def _ramps(self, device: torch.device) -> tuple[Tensor, Tensor]:
        i = torch.arange(self.overlap, device=device, dtype=torch.float32)
        up = torch.sin(0.5 * math.pi * (i + 0.5) / self.overlap) ** 2
        return up, 1.0 - up

    def _groups(self, plan: list[tuple[int, int]]) -> list[list[int]]:
        """Chunk indices rendered together: full-length chunks in batches, a shorter last
        one alone (padding it would change what a non-causal model sees near its end)."""
        full = [k for k, (a, b) in enumerate(plan) if b - a == self.chunk]
        groups = [full[i : i + self.batch_size] for i in range(0, len(full), self.batch_size)]
        return groups + [[k] for k in range(len(plan)) if k not in full]

    def overlap_add(self, pieces: dict[int, Tensor], plan: list[tuple[int, int]]) -> Tensor:
        """Blend rendered chunks ``{k: [1, 1, b_k - a_k]}`` of ``plan`` into one
        ``[1, 1, n]`` clip with the complementary ramps (weights sum to one everywhere)."""
        first = next(iter(pieces.values()))
        out = first.new_zeros(1, 1, plan[-1][1])
        up, down = self._ramps(first.device)
        for k, piece in pieces.items():
            a, b = plan[k]
            piece = piece.clone()
            if k > 0:
                piece[..., : self.overlap] *= up
            if k < len(plan) - 1:
                piece[..., -self.overlap :] *= down
            out[..., a:b] += piece
        return out

    def shares(self, plan: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Each chunk's own part of the clip, in chunk-local samples: neighbours split
        their overlap at its midpoint, so the parts tile ``0..n`` once."""
        cuts = [0] + [b - self.overlap + self.overlap // 2 for _, b in plan[:-1]] + [plan[-1][1]]
        return [(cuts[k] - a, cuts[k + 1] - a) for k, (a, _) in enumerate(plan)]

    @torch.no_grad()
    def render(
        self,
        content: Tensor,
        style_stats: list[tuple[Tensor, Tensor]] | None,
        alpha: float | tuple[float, ...] | None,
        cache_mb: float = 512.0,
    ) -> tuple[Tensor, int]:
        """Chunked model output for ``content`` ``[1, 1, T]``; returns ``(audio, n_chunks)``.

        With a style and several chunks, every chunk is normalised by the content
        statistics of the *whole* clip (per-chunk statistics would give neighbouring
        chunks different levels, i.e. seams). They are pooled from the chunks' own
        encodings (each chunk's share of the clip, :meth:`shares`), which are kept for
        the decoding pass up to ``cache_mb`` MB and re-encoded beyond it: one encoder pass
        per chunk, not an extra one over the whole clip.

        The weight-norm reparametrisations are computed once for the call
        (``parametrize.cached``), not once per convolution call.
        """
        plan = self.chunk_plan(content.shape[-1])
        groups = self._groups(plan)
        model = self.model
        pieces: dict[int, Tensor] = {}
        bar = tqdm(
            total=len(plan) * (2 if style_stats is not None and len(plan) > 1 else 1),
            desc="transfer",
            disable=not self.progress or len(plan) < 8,
        )

        def keep(group: list[int], rendered: Tensor) -> None:
            for row, k in enumerate(group):
                pieces[k] = rendered[row : row + 1]
            bar.update(len(group))

        with parametrize.cached():
            if style_stats is None or len(plan) == 1:
                for group in groups:
                    batch = _chunk_batch(content, plan, group)
                    stats = _expand(style_stats, len(group)) if style_stats else None
                    keep(group, model(batch, stats, alpha))
            else:
                cached, content_stats = self._encode_chunks(content, plan, groups, cache_mb, bar)
                for g, group in enumerate(groups):
                    feats = cached.get(g)
                    if feats is None:
                        feats = model.encode(_chunk_batch(content, plan, group))
                    feats = model.stylise(
                        feats,
                        _expand(style_stats, len(group)),
                        alpha,
                        _expand(content_stats, len(group)),
                    )
                    keep(group, model.decode(feats, plan[group[0]][1] - plan[group[0]][0]))
        bar.close()
        return self.overlap_add(pieces, plan), len(plan)

    def content_statistics(self, content: Tensor) -> list[tuple[Tensor, Tensor]]:
        """The whole-clip AdaIN statistics :meth:`render` normalises ``content``
        ``[1, 1, T]`` with, pooled over its chunks (equal to
        ``model.style_statistics(content)`` for one chunk, close to it for several)."""
        plan = self.chunk_plan(content.shape[-1])
        with torch.no_grad(), parametrize.cached():
            return self._encode_chunks(content, plan, self._groups(plan), 0.0, None)[1]

    def _encode_chunks(
        self,
        content: Tensor,
        plan: list[tuple[int, int]],
        groups: list[list[int]],
        cache_mb: float,
        bar: tqdm | None,
    ) -> tuple[dict[int, list[Tensor]], list[tuple[Tensor, Tensor]]]:
        """Encode every chunk once: ``({group: feats} kept within cache_mb, pooled stats)``.

        Pooling: per level, the sum and sum of squares of each chunk's frames inside its
        share (frames ``[lo / r, hi / r)`` at the level's stride ``r``), in float64, give
        the mean and the population variance of the clip.
        """
        model = self.model
        shares = self.shares(plan)
        sums: list[list[Tensor]] = []  # per level: [sum, sum of squares], float64 [C]
        counts: list[int] = []  # per level: frames pooled
        cached: dict[int, list[Tensor]] = {}
        used = 0.0
        for g, group in enumerate(groups):
            feats = model.encode(_chunk_batch(content, plan, group))
            if not sums:
                sums = [[f.new_zeros(f.shape[1], dtype=torch.float64) for _ in range(2)]
                        for f in feats]  # fmt: skip
                counts = [0] * len(feats)
            for level, f in enumerate(feats):
                stride = 2 ** min(level + 1, model.levels)
                for row, k in enumerate(group):
                    lo, hi = shares[k]
                    last = k == len(plan) - 1
                    frames = f[row, :, lo // stride : -(-hi // stride) if last else hi // stride]
                    frames = frames.double()
                    sums[level][0] += frames.sum(dim=-1)
                    sums[level][1] += frames.pow(2).sum(dim=-1)
                    counts[level] += frames.shape[-1]
            size = sum(f.numel() * f.element_size() for f in feats) / 1e6
            if used + size <= cache_mb:
                cached[g], used = feats, used + size
            if bar is not None:
                bar.update(len(group))
        stats = []
        for (total, squares), count in zip(sums, counts):
            mean = total / count
            var = (squares / count - mean.pow(2)).clamp_min(0.0)
            stats.append((
                mean.float()[None, :, None],
                (var.float() + ADAIN_EPS).sqrt()[None, :, None],
            ))  # fmt: skip
        return cached, stats

    # ------------------------------------------------------------------ public API
    def transfer(
        self,
        content: AudioInput,
        style: AudioInput | Sequence[AudioInput] | None,
        alpha: Alpha = None,
        sr: int | None = None,
        style_sr: int | Sequence[int] | None = None,
    ) -> tuple[Tensor, int]:
        """Render ``content`` with the timbre of ``style``.

        Args:
            content: a file path, or audio ``[T]``, ``[C, T]`` or ``[1, C, T]`` at ``sr`` Hz.
            style: the same forms (any length, its own rate ``style_sr``, default ``sr``),
                a list or tuple of them (several clips of one instrument, e.g. one file per
                note: the scaffold engine reads each clip's notes as one palette, the U-Net
                the clips end to end), or ``None`` for plain reconstruction; with a list,
                ``style_sr`` may give one rate per clip.
            alpha: AdaIN strengths ``(skip_1..skip_4, bottleneck)`` in [0, 1], one float for
                all, or ``None`` for the model's default.
            sr: sample rate of tensor ``content`` (files carry their own).

        Returns:
            ``(audio [1, 1, T_out], sample_rate)`` at the model's rate, ``T_out`` = the content
            length at that rate; the output peak is matched to the content's. Details in
            :attr:`last_report`.
        """
        report = TransferReport()
        x, peak = self.prepare(content, sr, "content", report)
        y = None
        if style is not None:
            y = self.prepare_styles(style, style_sr if style_sr is not None else sr, report)
        started = time.perf_counter()
        out = self._render_transfer(x, y, alpha, report)
        report.processing_seconds = time.perf_counter() - started
        out_peak = float(out.abs().max())
        if out_peak > 0:
            out = out * (peak / out_peak)
        report.seconds = out.shape[-1] / self.sample_rate
        self.last_report = report
        return out.cpu(), self.sample_rate

    def prepare_styles(
        self,
        style: AudioInput | Sequence[AudioInput],
        sr: int | Sequence[int] | None,
        report: TransferReport,
    ) -> list[Tensor]:
        """One style input or a list of them -> the prepared clips (:meth:`prepare`, each
        ``[1, 1, T_i]``, peak normalised on its own); tensors are at ``sr``, one rate for
        all or one per clip.

        Raises:
            AudioError: an empty list, or a clip :meth:`prepare` rejects (named by its
                file, or as ``style 2`` etc. in the list).
            ValueError: as many rates as clips were not given.
        """
        if not isinstance(style, (list, tuple)):
            return [self.prepare(style, sr, "style", report)[0]]  # type: ignore[arg-type]
        if not style:
            raise AudioError("style: the list of style clips is empty")
        rates = list(sr) if isinstance(sr, (list, tuple)) else [sr] * len(style)
        if len(rates) != len(style):
            raise ValueError(f"{len(style)} style clips but {len(rates)} style rates")
        return [self.prepare(clip, rate, f"style {i + 1}", report)[0]
                for i, (clip, rate) in enumerate(zip(style, rates))]  # fmt: skip

    def _render_transfer(self, x: Tensor, y: list[Tensor] | None, alpha: Alpha, report) -> Tensor:
        """The engine's (timed) work on the prepared content ``x`` and style clips ``y``
        (:meth:`prepare_styles`; here: the AdaIN statistics of the clips end to end, then
        the chunked U-Net); sets ``report.chunks``."""
        stats = None
        if y is not None:
            with torch.no_grad():
                stats = self.model.style_statistics(torch.cat(y, dim=-1))
        self.model.resolve_alpha(alpha)  # validate before the work
        out, report.chunks = self.render(x, stats, alpha)
        return out


class ScaffoldTransfer(TimbreTransfer):
    """The ``scaffold`` engine behind the :class:`TimbreTransfer` API.

    The content is analysed once (f0, voicing, loudness: :meth:`ScaffoldTimbre.contours`),
    the style clip becomes one code per note of it (several clips: of all their notes, a
    palette; :meth:`ScaffoldTimbre.style_of_clips`), and the decoder and synthesiser run over
    the content in pieces of ``chunk_seconds`` with their state carried
    (:meth:`ScaffoldTimbre.render`): the result does not depend on the piece length and has
    no seams. ``alpha`` is one style strength in [0, 1]: ``alpha e_style + (1 - alpha)
    e_content``, the counterpart of the U-Net's AdaIN strengths.

    Content that is not one pitch line (drums, noise: fewer than half of its loud frames
    voiced; chords: a common root whose first three harmonics are nearly empty) is still
    rendered, with a warning (Python ``UserWarning`` and
    :attr:`TransferReport.warnings`).

    Args:
        model: a trained :class:`ScaffoldTimbre`.
        device: ``None`` = CPU.
        chunk_seconds: content per decoder / synthesiser piece (memory, not the result).
        min_seconds: shorter inputs are rejected.
        progress: accepted for the API's sake (the work is too short for a bar).
    """

    engine = "scaffold"

    def __init__(
        self,
        model: ScaffoldTimbre,
        device: str | torch.device | None = None,
        chunk_seconds: float = 4.0,
        min_seconds: float = 0.05,
        progress: bool = True,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        if chunk_seconds <= 0:
            raise ValueError(f"chunk_seconds must be > 0, got {chunk_seconds}")
        hop = model.config.hop
        self.chunk_frames = max(1, int(round(chunk_seconds * self.sample_rate / hop)))
        self.min_samples = max(hop, int(round(min_seconds * self.sample_rate)))
        self.progress = progress
        self.last_report = TransferReport()

    @staticmethod
    def resolve_alpha(alpha: float | tuple[float, ...] | None) -> float:
        """``None`` -> 1.0; one number, or equal numbers, -> that number.

        Raises:
            ValueError: differing per-level strengths (a U-Net notion) or one outside [0, 1].
        """
        if alpha is None:
            return 1.0
        values = (alpha,) if isinstance(alpha, (int, float)) else tuple(alpha)
        if len(set(values)) != 1:
            raise ValueError(
                f"alpha {values}: the scaffold engine takes one style strength in [0, 1] "
                "(per-level AdaIN strengths belong to the unet engine)"
            )
        value = float(values[0])
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"alpha (the style strength) must lie in [0, 1], got {value}")
        return value

    @torch.no_grad()
    def _render_transfer(self, x: Tensor, y: list[Tensor] | None, alpha: Alpha, report) -> Tensor:
        """``alpha`` is the style strength (default 1); several style clips make one palette
        of all their notes (:meth:`ScaffoldTimbre.style_of_clips`); without a style (``y``
        None) the content is rendered with its own code."""
        strength = self.resolve_alpha(alpha)
        model = self.model
        contours = model.contours(x)
        message = voiced_share_warning(
            float(contours.voiced_share[0]), low_harmonic_share(x[0, 0], model.config, contours)
        )
        if message is not None:
            report.warnings.append(message)
            warnings.warn(message, stacklevel=3)  # the caller of transfer()
        s_style = model.style_of_clips(y) if y is not None else model.style(x)
        report.style_notes = s_style.embedding.shape[1]
        s_content = model.style(x) if y is not None and strength < 1.0 else None
        out = model.render(contours, model.blend(s_content, s_style, strength), x.shape[-1],
                           self.chunk_frames)  # fmt: skip
        report.chunks = -(-contours.f0_hz.shape[1] // self.chunk_frames)
        return out
