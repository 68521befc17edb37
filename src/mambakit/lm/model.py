"""Codec-token music language model: summed codebook embeddings -> backbone -> codebook heads.

``MusicLM`` models ``p(tokens[:, :, s] | tokens[:, :, :s])`` for a codebook pattern
(:mod:`mambakit.lm.patterns`). The input at step ``s`` is the sum over streams of
``embed_k(tokens[:, k, s - 1])`` (the RVQ embedding of the seed); at step 0 it is a learned
``start`` vector, which every training sequence begins with, so generation from scratch starts
from a state the model was trained on (no BOS id that training never saw).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mambakit.pretrained import PretrainedMixin
from mambakit.ssm import KINDS, Backbone, BackboneCache, count_parameters, decode_layout_

from .patterns import CodebookPattern, get_pattern

__all__ = [
    "SCALES",
    "MusicLM",
    "MusicLMConfig",
    "count_parameters",
    "preset",
    "token_cross_entropy",
]

SCALES = ("tiny", "small", "base")

# (d_model, n_layers, n_heads) per scale. The transformer with a SwiGLU MLP of ratio 4 sets
# the parameter budget; the other backbones keep d_model and n_layers and take the MLP width
# that spends the same budget (see `preset`). "base" is the blog's size class (~130M with
# DAC's 9 x 1024 vocabulary).
_SCALE_DIMS = {"tiny": (64, 4, 2), "small": (512, 8, 8), "base": (768, 16, 12)}
_REFERENCE_MLP_RATIO = 4.0


@dataclass(frozen=True)
class MusicLMConfig:
    """Configuration of :class:`MusicLM`.

    Args:
        n_codebooks, codebook_size: the codec's ``K`` and entries per codebook.
        pattern: codebook pattern, ``"delay"``, ``"parallel"`` or ``"flat"``.
        backbone: ``"transformer"``, ``"mamba"`` (Mamba-1), ``"mamba2"`` or ``"hybrid"``.
        mamba_kind: the SSM of the hybrid (``"mamba"`` as in Jamba, or ``"mamba2"``).
        n_layers, d_model, n_heads, attn_every, d_state, mlp_ratio, expand, headdim:
            passed to :class:`mambakit.ssm.Backbone` by name (``Backbone.from_config``);
            ``attn_every=4`` is 1 attention : 3 SSM.
        max_seqlen: longest sequence (in pattern steps) the KV caches are allocated for when
            no length is given.
        frame_rate: codec frames per second (metadata, for the seconds <-> frames of the CLI).
        codec_id: what :func:`mambakit.lm.codecs.load_codec` loads to turn the codes into
            audio (``"dac"``, a directory or a hub id; empty for codec-free probes).
    """

    n_codebooks: int = 9
    codebook_size: int = 1024
    pattern: str = "delay"
    backbone: str = "hybrid"
    mamba_kind: str = "mamba"
    n_layers: int = 8
    d_model: int = 512
    n_heads: int = 8
    attn_every: int = 4
    d_state: int | None = None
    mlp_ratio: float = 4.0
    expand: int = 2
    headdim: int = 64
    max_seqlen: int = 8192
    frame_rate: float = 86.1328125
    codec_id: str = ""

    @property
    def codebook_pattern(self) -> CodebookPattern:
        return get_pattern(self.pattern, self.n_codebooks, self.codebook_size)


class MusicLM(PretrainedMixin, nn.Module):
    """Autoregressive LM over codec tokens laid out by a :class:`CodebookPattern`.

    Shapes: ``tokens [B, n_streams, S]`` (long) -> ``logits [B, n_streams, S, n_codes]``, where
    ``logits[:, k, s]`` predicts ``tokens[:, k, s]`` from ``tokens[:, :, :s]``.
    """

    config_class: ClassVar[type] = MusicLMConfig
    model_type: ClassVar[str] = "lm"

    def __init__(self, config: MusicLMConfig) -> None:
        super().__init__()
        if config.backbone not in KINDS:
            raise ValueError(f"backbone must be one of {KINDS}, got {config.backbone!r}")
        self.config = config
        self.pattern = config.codebook_pattern
        n_streams, d = self.pattern.n_streams, config.d_model
        self.embeddings = nn.ModuleList(
            nn.Embedding(self.pattern.input_vocab_size, d) for _ in range(n_streams)
        )
        self.start = nn.Parameter(torch.zeros(d))
        self.backbone = Backbone.from_config(config, kind=config.backbone)
        # One head per stream; no logit for PAD, so it can never be predicted or sampled.
        self.heads = nn.ModuleList(
            nn.Linear(d, self.pattern.n_codes, bias=False) for _ in range(n_streams)
        )
        self._init_weights()
        decode_layout_(self.heads)  # the heads are a matrix-vector product per decoding step

    def _init_weights(self) -> None:
        std = self.config.d_model**-0.5
        for emb in self.embeddings:
            nn.init.normal_(emb.weight, std=std)
        nn.init.normal_(self.start, std=std)
        for head in self.heads:
            nn.init.normal_(head.weight, std=std)

    def checkpoint_metadata(self) -> dict[str, Any]:
        return {"n_parameters": count_parameters(self)}

    # ---- embeddings and heads -----------------------------------------------------------
    def embed_tokens(self, tokens: Tensor) -> Tensor:
        """Sum of per-stream embeddings: ``tokens [B, n_streams, L]`` -> ``[B, L, d_model]``."""
        if tokens.dim() != 3 or tokens.shape[1] != self.pattern.n_streams:
            raise ValueError(
                f"tokens must be [B, {self.pattern.n_streams}, L], got {tuple(tokens.shape)}"
            )
        return sum(emb(tokens[:, k]) for k, emb in enumerate(self.embeddings))  # type: ignore[return-value]

    def project(self, hidden: Tensor) -> Tensor:
        """``hidden [..., d_model]`` -> ``logits [..., n_streams, n_codes]``."""
        return torch.stack([head(hidden) for head in self.heads], dim=-2)

    def inputs(self, tokens: Tensor) -> Tensor:
        """Model inputs for predicting every step of ``tokens [B, n_streams, S]``:
        ``[start, embed(tokens[:, :, :-1])]`` -> ``[B, S, d_model]``."""
        B = tokens.shape[0]
        start = self.start.expand(B, 1, -1)
        return torch.cat([start, self.embed_tokens(tokens[:, :, :-1])], dim=1)

    # ---- training -------------------------------------------------------------------------
    def forward(self, tokens: Tensor) -> Tensor:
        """Teacher-forced logits: ``tokens [B, n_streams, S]`` -> ``[B, n_streams, S, n_codes]``."""
        hidden = self.backbone(self.inputs(tokens))  # [B, S, d]
        return self.project(hidden).transpose(1, 2)  # [B, S, n, V] -> [B, n, S, V]

    def targets(self, tokens: Tensor) -> Tensor:
        """Training targets: ``tokens`` with special ids replaced by ``-100`` (ignored)."""
        pad = self.pattern.pad_id
        return tokens.masked_fill(tokens == pad, -100) if pad is not None else tokens

    def loss(self, tokens: Tensor, label_smoothing: float = 0.0) -> tuple[Tensor, Tensor]:
        """Mean cross-entropy over code positions (specials ignored), and per-stream means.

        Returns ``(loss, per_stream [n_streams])``, in nats. ``label_smoothing`` is for the
        training objective only; evaluation always uses 0 (the seed compared a smoothed train
        loss with an unsmoothed one).
        """
        return token_cross_entropy(self(tokens), self.targets(tokens), label_smoothing)

    # ---- recurrent decoding ---------------------------------------------------------------
    def allocate_cache(
        self, batch_size: int, max_seqlen: int | None = None, device: Any = None
    ) -> BackboneCache:
        """Per-layer recurrent caches (SSM states; KV caches sized ``max_seqlen`` steps)."""
        device = device if device is not None else self.start.device
        return self.backbone.allocate_cache(
            batch_size, max_seqlen or self.config.max_seqlen, device, self.start.dtype
        )

    def prefill(self, tokens: Tensor, cache: BackboneCache) -> Tensor:
        """Run ``[start, embed(tokens)]`` through the backbone once, leaving the state in
        ``cache``; returns the logits for the step after ``tokens``, ``[B, n_streams, n_codes]``.
        ``tokens`` may have length 0 (generation from scratch)."""
        B = tokens.shape[0]
        start = self.start.expand(B, 1, -1)
        x = torch.cat([start, self.embed_tokens(tokens)], dim=1) if tokens.shape[-1] else start
        hidden = self.backbone(x, cache=cache)  # [B, 1 + P, d]
        return self.project(hidden[:, -1]).view(B, self.pattern.n_streams, -1)

    def step(self, tokens_t: Tensor, cache: BackboneCache) -> Tensor:
        """Feed one step ``tokens_t [B, n_streams]``; returns the next step's logits
        ``[B, n_streams, n_codes]``. Cost is constant in the position for SSM layers."""
        x_t = self.embed_tokens(tokens_t.unsqueeze(-1))[:, 0]  # [B, d]
        hidden, _ = self.backbone.step(x_t, cache)
        return self.project(hidden)

    def generate(self, *args: Any, **kwargs: Any) -> Tensor:
        """Sample codes with the recurrent caches; see :func:`mambakit.lm.generate.generate`."""
        from .generate import generate

        return generate(self, *args, **kwargs)


def token_cross_entropy(
    logits: Tensor, targets: Tensor, label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Cross-entropy of ``logits [B, n, S, V]`` against ``targets [B, n, S]`` (``-100``:
    ignored): ``(mean over valid positions, per-stream means [n])``, nats, computed in fp32."""
    nll = F.cross_entropy(
        logits.flatten(0, 2).float(),
        targets.flatten(),
        ignore_index=-100,
        reduction="none",
        label_smoothing=label_smoothing,
    ).view_as(targets)
    valid = (targets != -100).float()
    per_stream = (nll * valid).sum(dim=(0, 2)) / valid.sum(dim=(0, 2)).clamp_min(1)
    return (nll * valid).sum() / valid.sum().clamp_min(1), per_stream


def _count_on_meta(config: MusicLMConfig) -> int:
    """Parameter count of ``MusicLM(config)`` without allocating memory."""
    with torch.device("meta"):
        return count_parameters(MusicLM(config))


def _mlp_ratio_for_hidden(hidden: int, d_model: int) -> float:
    """The ``mlp_ratio`` whose SwiGLU hidden width is exactly ``hidden`` (a multiple of 8):
    :class:`mambakit.ssm.MLP` uses ``ceil8(int(2 * int(ratio * d) / 3))``."""
    return 1.5 * hidden / d_model


def preset(backbone: str, scale: str = "small", **overrides: Any) -> MusicLMConfig:
    """A configuration of ``backbone`` at ``scale``, parameter-matched across backbones.

    All backbones share ``d_model`` and ``n_layers`` at a scale. The transformer with a SwiGLU
    MLP of ratio 4 sets the budget ``P``; the other backbones' mixers have a different size
    (Mamba-1 ~``6 d^2`` per layer vs ``4 d^2`` for attention), so their MLP hidden width ``h``
    is solved from ``P = P_0 + n_layers * (3 d h + d)`` (``P_0``: the model without MLPs;
    ``3 d h``: SwiGLU's three matrices; ``d``: its RMSNorm), rounded to a multiple of 8. The
    counts then match within a fraction of a percent (tested: within 5 %).

    ``overrides`` replace config fields (e.g. ``n_codebooks=4, codebook_size=256``) before the
    matching, so a preset is matched for the codec it will be trained on.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose from {SCALES}")
    if backbone not in KINDS:
        raise ValueError(f"unknown backbone {backbone!r}; choose from {KINDS}")
    d_model, n_layers, n_heads = _SCALE_DIMS[scale]
    base = MusicLMConfig(
        backbone="transformer",
        d_model=d_model,
        n_layers=n_layers,
        n_heads=n_heads,
        mlp_ratio=_REFERENCE_MLP_RATIO,
    )
    base = replace(base, **overrides)
    budget = _count_on_meta(base)
    config = replace(base, backbone=backbone)
    if backbone == "transformer" or "mlp_ratio" in overrides:
        return config  # the reference itself, or an explicit MLP width chosen by the caller
    without_mlp = _count_on_meta(replace(config, mlp_ratio=0.0))
    d, L = config.d_model, config.n_layers
    per_layer = (budget - without_mlp) / L - d  # parameters left for each SwiGLU MLP
    if per_layer < 3 * d * 8:
        raise ValueError(
            f"{backbone} at {scale}: the mixers alone exceed the transformer's parameter budget"
        )
    hidden = 8 * round(per_layer / (3 * d) / 8)
    return replace(config, mlp_ratio=_mlp_ratio_for_hidden(hidden, d))
