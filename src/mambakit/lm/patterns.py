"""Codebook patterns: how the ``K`` parallel codebooks of a codec frame become LM tokens.

A residual codec gives ``codes [B, K, T]`` (``T`` frames, ``K`` codebooks of ``codebook_size``
entries each). A pattern lays them out as ``tokens [B, n_streams, S]``: at every sequence step
the LM predicts ``n_streams`` tokens at once (one head per stream). Every pattern has an exact
inverse, ``revert(build(codes)) == codes``.

Patterns (Copet et al., 2023, "Simple and Controllable Music Generation", section 2.2):

``parallel``
    ``tokens[:, k, t] = codes[:, k, t]``; ``S = T``; all codebooks of a frame in one step.
``delay`` (MusicGen; the seed's choice)
    codebook ``k`` is shifted right by ``k`` steps, ``tokens[:, k, t + k] = codes[:, k, t]``;
    ``S = T + K - 1``. The two triangles left empty (``t < k`` at the start, ``t >= T + k`` at
    the end) hold ``PAD = codebook_size``. Step ``s`` then predicts codebook ``k`` of frame
    ``s - k`` after having seen codebooks ``< k`` of that frame, at one step per frame.
``flat`` (interleave, seed 003)
    one stream, ``S = K * T``: frame by frame, codebook by codebook. Token ids are offset by
    codebook, ``tokens[:, 0, K t + k] = k * codebook_size + codes[:, k, t]``, so the step's
    codebook is unambiguous and the vocabulary is ``K * codebook_size``.

Special tokens. ``PAD`` exists only in the delay pattern; it is an *input* id (its embedding
is trained, because the triangles occur in every training crop) but never a *target*: the
loss ignores it and the model has no output logit for it, so generation can never sample it.
There is no BOS token: the first input step is a learned "start" embedding in the model
(:class:`~mambakit.lm.model.MusicLM`), used at position 0 of every training sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["PATTERNS", "CodebookPattern", "get_pattern"]

PATTERNS = ("delay", "parallel", "flat")


@dataclass(frozen=True)
class CodebookPattern:
    """One layout of ``K`` codebooks into LM token streams (see the module docstring).

    Args:
        name: ``"delay"``, ``"parallel"`` or ``"flat"``.
        n_codebooks: ``K``.
        codebook_size: entries per codebook (codes lie in ``[0, codebook_size)``).
    """

    name: str
    n_codebooks: int
    codebook_size: int

    def __post_init__(self) -> None:
        if self.name not in PATTERNS:
            raise ValueError(f"unknown codebook pattern {self.name!r}; choose from {PATTERNS}")
        if self.n_codebooks < 1 or self.codebook_size < 1:
            raise ValueError(
                f"pattern needs n_codebooks >= 1 and codebook_size >= 1, "
                f"got {self.n_codebooks} and {self.codebook_size}"
            )

    # ---- sizes -------------------------------------------------------------------------
    @property
    def n_streams(self) -> int:
        """Tokens predicted per sequence step (one output head each)."""
        return 1 if self.name == "flat" else self.n_codebooks

    @property
    def n_codes(self) -> int:
        """Output vocabulary per stream: the ids the model may predict (no specials)."""
        return self.n_codebooks * self.codebook_size if self.name == "flat" else self.codebook_size

    @property
    def pad_id(self) -> int | None:
        """Input-only id filling the delay triangles (``codebook_size``); ``None`` otherwise."""
        return self.codebook_size if self.name == "delay" else None

    @property
    def input_vocab_size(self) -> int:
        """Input vocabulary per stream: codes plus the special ids."""
        return self.n_codes + (1 if self.pad_id is not None else 0)

    def seq_len(self, n_frames: int) -> int:
        """Sequence steps ``S`` for ``n_frames`` codec frames."""
        if self.name == "delay":
            return n_frames + self.n_codebooks - 1
        if self.name == "flat":
            return n_frames * self.n_codebooks
        return n_frames

    def n_frames(self, seq_len: int) -> int:
        """Inverse of :meth:`seq_len`; raises if ``seq_len`` is not a whole number of frames."""
        K = self.n_codebooks
        if self.name == "delay":
            frames = seq_len - K + 1
        elif self.name == "flat":
            if seq_len % K:
                raise ValueError(f"flat pattern: {seq_len} steps is not a multiple of K={K}")
            frames = seq_len // K
        else:
            frames = seq_len
        if frames < 0:
            raise ValueError(f"{self.name} pattern: {seq_len} steps is shorter than one frame")
        return frames

    # ---- layout ------------------------------------------------------------------------
    def _layout(self, values: Tensor, fill: int | bool) -> Tensor:
        """Move ``values [B, K, T]`` into the pattern's ``[B, n_streams, S]`` layout (no id
        offsets); positions that hold no code get ``fill``."""
        B, K, T = values.shape
        if self.name == "parallel":
            return values.clone()
        if self.name == "flat":
            # [B, K, T] -> [B, T, K] -> [B, 1, T*K]: frame-major, codebook-minor
            return values.transpose(1, 2).reshape(B, 1, T * K)
        out = values.new_full((B, K, T + K - 1), fill)
        for k in range(K):
            out[:, k, k : k + T] = values[:, k]
        return out

    def build(self, codes: Tensor) -> Tensor:
        """``codes [B, K, T]`` (long, in ``[0, codebook_size)``) -> ``tokens [B, n_streams, S]``.

        Raises ``ValueError`` when ``K`` or the code range does not match the pattern.
        """
        self._check_codes(codes)
        codes = codes.long()
        tokens = self._layout(codes, fill=self.pad_id if self.pad_id is not None else 0)
        if self.name == "flat":
            tokens = tokens + self.codebook_offsets(tokens.shape[-1], codes.device)
        return tokens

    def build_known(self, known: Tensor) -> Tensor:
        """Where the tokens are determined, for generation: ``known [B, K, T]`` (bool, which
        codes are given, e.g. a prompt) -> ``[B, n_streams, S]`` bool. The delay triangles are
        always known (they are ``PAD``)."""
        return self._layout(known.bool(), fill=True)

    def revert(self, tokens: Tensor) -> Tensor:
        """``tokens [B, n_streams, S]`` -> ``codes [B, K, T]``, the exact inverse of
        :meth:`build`. Raises ``ValueError`` if a position that must hold a code holds a
        special or out-of-range id."""
        B, n_streams, S = tokens.shape
        if n_streams != self.n_streams:
            raise ValueError(
                f"{self.name} pattern expects {self.n_streams} token streams, got {n_streams}"
            )
        K, T = self.n_codebooks, self.n_frames(S)
        if self.name == "parallel":
            codes = tokens.clone()
        elif self.name == "flat":
            codes = tokens - self.codebook_offsets(S, tokens.device)
            codes = codes.reshape(B, T, K).transpose(1, 2)  # [B, 1, T*K] -> [B, K, T]
        else:
            codes = torch.stack([tokens[:, k, k : k + T] for k in range(K)], dim=1)
        self._check_codes(codes, what="reverted tokens")
        return codes.contiguous()

    # ---- helpers for the model and the sampler ----------------------------------------
    def codebook_offsets(self, seq_len: int, device: torch.device | str | None = None) -> Tensor:
        """Flat pattern: id offset ``k * codebook_size`` of every step, ``[seq_len]``."""
        steps = torch.arange(seq_len, device=device)
        return (steps % self.n_codebooks) * self.codebook_size

    def allowed_ids(self, step: int) -> tuple[int, int] | None:
        """The half-open id range the output may take at sequence ``step`` (flat pattern: the
        step's codebook); ``None`` when every output id is allowed."""
        if self.name != "flat":
            return None
        k = step % self.n_codebooks
        return k * self.codebook_size, (k + 1) * self.codebook_size

    def _check_codes(self, codes: Tensor, what: str = "codes") -> None:
        if codes.dim() != 3:
            raise ValueError(f"{what} must be [B, K, T], got shape {tuple(codes.shape)}")
        if codes.shape[1] != self.n_codebooks:
            raise ValueError(
                f"{what} have {codes.shape[1]} codebooks, the {self.name} pattern expects "
                f"{self.n_codebooks}"
            )
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(
                f"{what} out of range [0, {self.codebook_size}): "
                f"min {int(codes.min())}, max {int(codes.max())}"
            )


def get_pattern(name: str, n_codebooks: int, codebook_size: int) -> CodebookPattern:
    """The pattern ``name`` (one of :data:`PATTERNS`) for ``K`` codebooks of a given size."""
    return CodebookPattern(name, n_codebooks, codebook_size)
