"""Neural audio codecs behind one interface: audio <-> residual-VQ codes.

``Codec`` is a protocol: ``encode(audio [B, C, T]) -> codes [B, K, frames]`` (long),
``decode(codes) -> audio [B, C, T]``, plus ``sample_rate`` (Hz), ``frame_rate`` (frames/s),
``n_codebooks`` (``K``), ``codebook_size`` and ``id`` (what :func:`load_codec` needs to load
it again; stored in token manifests and LM runs).

Two implementations wrap ``transformers`` models (maintained ports, loaded from a local
directory or a hub id): DAC 44.1 kHz (9 x 1024 at ~86 Hz; Kumar et al., 2023) and EnCodec
(MusicGen's 32 kHz, 4 x 2048 at 50 Hz; Défossez et al., 2022). Both are mono: multichannel
input is averaged to mono before encoding (a choice: stereo codecs would need interleaved
codebooks), so ``decode`` returns ``C = 1``.

Long audio is encoded in chunks of ``chunk_seconds`` with ``context_seconds`` of real audio
on each side that is encoded and then dropped, so each kept frame sees the same receptive
field as in one pass; chunked codes then equal unchunked ones (up to floating-point ties).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["Codec", "DacCodec", "EncodecCodec", "HF_CODEC_IDS", "load_codec"]

HF_CODEC_IDS = {"dac": "descript/dac_44khz", "encodec": "facebook/encodec_32khz"}


@runtime_checkable
class Codec(Protocol):
    """Audio <-> codes (see the module docstring for the shapes)."""

    sample_rate: int
    frame_rate: float
    n_codebooks: int
    codebook_size: int
    id: str

    def encode(self, audio: Tensor) -> Tensor: ...

    def decode(self, codes: Tensor) -> Tensor: ...


class _HFCodec:
    """Shared chunking and bookkeeping of the ``transformers`` codec wrappers."""

    hop_length: int
    sample_rate: int
    n_codebooks: int
    codebook_size: int
    id: str

    def __init__(
        self,
        model: torch.nn.Module,
        id: str,
        chunk_seconds: float | None = 30.0,
        context_seconds: float = 1.0,
        device: str | torch.device | None = None,
    ) -> None:
        self.model = model.eval().to(device or "cpu")
        self.id = id
        self.chunk_seconds = chunk_seconds
        self.context_seconds = context_seconds

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def _prepare(self, audio: Tensor) -> Tensor:
        if audio.dim() != 3:
            raise ValueError(f"codec input must be audio [B, C, T], got {tuple(audio.shape)}")
        audio = audio.float().mean(dim=1, keepdim=True)  # mono codec: average the channels
        # pad to a whole number of frames so that frames = T / hop exactly
        pad = (-audio.shape[-1]) % self.hop_length
        return torch.nn.functional.pad(audio, (0, pad)).to(self.device)

    def _encode_once(self, audio: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, audio: Tensor) -> Tensor:
        """``audio [B, C, T]`` at ``sample_rate`` -> ``codes [B, K, ceil(T / hop)]`` (long)."""
        audio = self._prepare(audio)
        n_frames = audio.shape[-1] // self.hop_length
        if self.chunk_seconds is None:
            return self._encode_once(audio)[..., :n_frames]
        chunk = max(1, round(self.chunk_seconds * self.frame_rate))
        context = math.ceil(self.context_seconds * self.frame_rate)
        if n_frames <= chunk:
            return self._encode_once(audio)[..., :n_frames]
        hop, parts = self.hop_length, []
        for start in range(0, n_frames, chunk):
            stop = min(n_frames, start + chunk)
            lo, hi = max(0, start - context), min(n_frames, stop + context)
            codes = self._encode_once(audio[..., lo * hop : hi * hop])
            parts.append(codes[..., start - lo : stop - lo])
        return torch.cat(parts, dim=-1)


class DacCodec(_HFCodec):
    """Descript Audio Codec through ``transformers.DacModel`` (mono)."""

    def __init__(self, model: torch.nn.Module, id: str = "dac", **kwargs: Any) -> None:
        super().__init__(model, id, **kwargs)
        config = model.config
        self.sample_rate = int(config.sampling_rate)
        self.hop_length = int(math.prod(config.downsampling_ratios))
        self.n_codebooks = int(config.n_codebooks)
        self.codebook_size = int(config.codebook_size)

    def _encode_once(self, audio: Tensor) -> Tensor:
        return self.model.encode(audio).audio_codes.long()  # [B, K, frames]

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """``codes [B, K, frames]`` -> ``audio [B, 1, frames * hop]``."""
        audio = self.model.decode(audio_codes=codes.long().to(self.device)).audio_values
        return audio.reshape(codes.shape[0], 1, -1).float()


class EncodecCodec(_HFCodec):
    """EnCodec through ``transformers.EncodecModel`` at its highest bandwidth (mono)."""

    def __init__(self, model: torch.nn.Module, id: str = "encodec", **kwargs: Any) -> None:
        super().__init__(model, id, **kwargs)
        config = model.config
        if getattr(config, "audio_channels", 1) != 1:
            raise ValueError(f"{id}: only mono EnCodec models are supported")
        self.sample_rate = int(config.sampling_rate)
        self.hop_length = int(math.prod(config.upsampling_ratios))
        self.bandwidth = float(max(config.target_bandwidths))
        self.n_codebooks = int(model.quantizer.get_num_quantizers_for_bandwidth(self.bandwidth))
        self.codebook_size = int(config.codebook_size)

    def _encode_once(self, audio: Tensor) -> Tensor:
        out = self.model.encode(audio, bandwidth=self.bandwidth)
        if out.audio_codes.shape[0] != 1 or out.audio_scales[0] is not None:
            # chunked EnCodec checkpoints (48 kHz) rescale each chunk; we do our own chunking
            raise ValueError(f"{self.id}: EnCodec models with chunk_length_s are not supported")
        return out.audio_codes[0].long()  # [1 chunk, B, K, frames] -> [B, K, frames]

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """``codes [B, K, frames]`` -> ``audio [B, 1, frames * hop]``."""
        audio = self.model.decode(codes.long().to(self.device)[None], [None]).audio_values
        return audio.reshape(codes.shape[0], 1, -1).float()


def load_codec(
    name_or_path: str,
    device: str | torch.device | None = None,
    chunk_seconds: float | None = 30.0,
    context_seconds: float = 1.0,
) -> Codec:
    """Load a codec: ``"dac"`` (hub ``descript/dac_44khz``), ``"encodec"``
    (``facebook/encodec_32khz``), a local ``transformers`` checkpoint directory, or a hub id.

    The model type is read from the checkpoint's ``config.json`` (``dac`` or ``encodec``).
    Hub ids are downloaded by ``transformers`` (only when the user asks; tests never do).
    """
    try:
        from transformers import AutoConfig, DacModel, EncodecModel
    except ImportError as e:  # pragma: no cover - transformers is a dependency
        raise ImportError("loading codecs needs transformers (pip install transformers)") from e
    source = HF_CODEC_IDS.get(name_or_path, name_or_path)
    local = Path(source)
    if local.exists() and not (local / "config.json").is_file():
        raise FileNotFoundError(f"{local}: not a codec checkpoint (no config.json)")
    config = AutoConfig.from_pretrained(source)
    kwargs = {"device": device, "chunk_seconds": chunk_seconds, "context_seconds": context_seconds}
    if config.model_type == "dac":
        return DacCodec(DacModel.from_pretrained(source), id=name_or_path, **kwargs)
    if config.model_type == "encodec":
        return EncodecCodec(EncodecModel.from_pretrained(source), id=name_or_path, **kwargs)
    raise ValueError(f"{source}: unsupported codec model type {config.model_type!r}")
