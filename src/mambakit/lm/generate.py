"""Sampling codec codes from a :class:`~mambakit.lm.model.MusicLM` with recurrent caches.

The prompt (if any) is run through the backbone once (prefill); every further step feeds one
token into ``step``, so for SSM layers the cost of a step does not grow with the length (the
seed re-ran the whole sequence for every token). Positions whose token is already determined
(the prompt, the delay pattern's ``PAD`` triangles) are teacher-forced instead of sampled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .model import MusicLM

__all__ = ["GREEDY", "Sampling", "generate", "generate_uncached", "sample_logits"]


def sample_logits(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sample ids from ``logits [..., V]`` -> ``[...]`` (long).

    ``temperature <= 0`` is greedy (argmax). ``top_k`` keeps the ``k`` largest logits;
    ``top_p`` keeps the smallest set of ids whose probability mass reaches ``p`` (nucleus
    sampling, Holtzman et al., 2020); both may be combined (top-k first). Logits of ``-inf``
    (masked ids) are never sampled.
    """
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # drop an id when the mass before it already reaches p (the first id is always kept)
        drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1).flatten(0, -2)
    ids = torch.multinomial(probs, 1, generator=generator)
    return ids.view(logits.shape[:-1])


@dataclass(frozen=True)
class Sampling:
    """How every generated token is drawn: the one set of sampling options of
    :func:`generate`, :func:`generate_uncached` and :meth:`MusicGenerator.generate`.

    ``temperature``, ``top_k``, ``top_p``: as in :func:`sample_logits` (``temperature=0``:
    greedy). ``seed`` seeds a private ``torch.Generator`` (the global RNG is untouched);
    ``None`` draws from the global RNG.
    """

    temperature: float = 1.0
    top_k: int | None = 250
    top_p: float | None = None
    seed: int | None = None

    def generator(self, device: Any) -> torch.Generator | None:
        """The private generator of ``seed`` on ``device`` (``None`` without a seed)."""
        return None if self.seed is None else torch.Generator(device=device).manual_seed(self.seed)

    def sample(self, logits: Tensor, generator: torch.Generator | None) -> Tensor:
        """Ids drawn from ``logits [..., V]`` -> ``[...]`` with these options."""
        return sample_logits(logits, self.temperature, self.top_k, self.top_p, generator)


#: Greedy decoding (argmax at every step), the reference's default.
GREEDY = Sampling(temperature=0.0, top_k=None)


def _plan(
    model: MusicLM, prompt_codes: Tensor | None, n_frames: int, batch_size: int, device: Any
) -> tuple[Tensor, Tensor, int]:
    """Token canvas ``[B, n_streams, S]``, its ``known`` mask and the first unknown step."""
    pattern = model.pattern
    K = pattern.n_codebooks
    if prompt_codes is None:
        prompt_codes = torch.zeros(batch_size, K, 0, dtype=torch.long, device=device)
    if prompt_codes.dim() != 3 or prompt_codes.shape[1] != K:
        raise ValueError(f"prompt_codes must be [B, {K}, T], got {tuple(prompt_codes.shape)}")
    B, _, T_prompt = prompt_codes.shape
    total = T_prompt + n_frames
    codes = torch.zeros(B, K, total, dtype=torch.long, device=device)
    codes[:, :, :T_prompt] = prompt_codes.to(device)
    known = torch.zeros(B, K, total, dtype=torch.bool, device=device)
    known[:, :, :T_prompt] = True
    tokens = pattern.build(codes)
    known_tokens = pattern.build_known(known)
    # first step at which some stream is unknown (same for the whole batch by construction)
    unknown_steps = (~known_tokens).any(dim=(0, 1)).nonzero()
    first = int(unknown_steps[0]) if len(unknown_steps) else tokens.shape[-1]
    return tokens, known_tokens, first


def _mask_logits(model: MusicLM, logits: Tensor, step: int) -> Tensor:
    """Restrict ``logits [B, n_streams, V]`` to the ids allowed at ``step`` (flat pattern)."""
    allowed = model.pattern.allowed_ids(step)
    if allowed is None:
        return logits
    lo, hi = allowed
    masked = torch.full_like(logits, float("-inf"))
    masked[..., lo:hi] = logits[..., lo:hi]
    return masked


@torch.no_grad()
def generate(
    model: MusicLM,
    prompt_codes: Tensor | None = None,
    n_frames: int = 86,
    sampling: Sampling = Sampling(),  # noqa: B008  (frozen: safe as a default)
    batch_size: int = 1,
    stream: Callable[[Tensor], None] | None = None,
) -> Tensor:
    """Generate ``n_frames`` codec frames after ``prompt_codes`` using the recurrent caches.

    Args:
        model: a :class:`MusicLM` (evaluated in its current mode; call ``eval()`` first).
        prompt_codes: ``[B, K, T_prompt]`` codes to continue, or ``None`` to start from the
            trained start state.
        n_frames: frames to generate after the prompt.
        sampling: how each token is drawn (:class:`Sampling`; :data:`GREEDY`: argmax).
        batch_size: number of sequences when there is no prompt.
        stream: called with every newly completed frame block ``codes [B, K, n]`` as soon as
            all its codebooks are known (with the delay pattern, frame ``t`` completes at step
            ``t + K - 1``), so audio can be decoded while tokens are still being sampled.

    Returns:
        ``codes [B, K, T_prompt + n_frames]`` (long), prompt included.
    """
    device = model.start.device
    tokens, known, first = _plan(model, prompt_codes, n_frames, batch_size, device)
    B, _, S = tokens.shape
    pattern = model.pattern
    generator = sampling.generator(device)
    n_prompt = pattern.n_frames(S) - n_frames
    emitted = n_prompt  # frames already handed to `stream` (the prompt is not re-emitted)

    if first >= S:
        return pattern.revert(tokens)
    cache = model.allocate_cache(B, max_seqlen=S + 1, device=device)
    logits = model.prefill(tokens[:, :, :first], cache)
    for s in range(first, S):
        sampled = sampling.sample(_mask_logits(model, logits, s), generator)
        tokens[:, :, s] = torch.where(known[:, :, s], tokens[:, :, s], sampled)
        if stream is not None:
            done = _frames_complete(pattern.name, pattern.n_codebooks, s + 1)
            if done > emitted:
                stream(_frames_window(model, tokens, emitted, done))
                emitted = done
        if s + 1 < S:
            logits = model.step(tokens[:, :, s], cache)
    return pattern.revert(tokens)


def _frames_complete(pattern_name: str, K: int, n_steps: int) -> int:
    """Frames whose codes are all inside the first ``n_steps`` steps of a pattern."""
    if pattern_name == "delay":
        return max(0, n_steps - K + 1)
    if pattern_name == "flat":
        return n_steps // K
    return n_steps


def _frames_window(model: MusicLM, tokens: Tensor, start: int, end: int) -> Tensor:
    """Codes of frames ``[start, end)`` from a partly filled token canvas, ``[B, K, end-start]``.

    Every pattern is shift-invariant by whole frames, so reverting the window of steps that
    begins at frame ``start`` gives exactly those frames (cost independent of the position).
    """
    pattern = model.pattern
    first_step = start * pattern.n_codebooks if pattern.name == "flat" else start
    window = tokens[:, :, first_step : first_step + pattern.seq_len(end - start)]
    return pattern.revert(window)


@torch.no_grad()
def generate_uncached(
    model: MusicLM,
    prompt_codes: Tensor | None = None,
    n_frames: int = 86,
    sampling: Sampling = GREEDY,
    batch_size: int = 1,
) -> Tensor:
    """Reference for :func:`generate`: re-runs the full sequence for every step (quadratic;
    the seed's method). Used in tests to check the caches give the same tokens."""
    device = model.start.device
    tokens, known, first = _plan(model, prompt_codes, n_frames, batch_size, device)
    S = tokens.shape[-1]
    generator = sampling.generator(device)
    for s in range(first, S):
        # model(tokens[:, :, :s+1]) predicts step s from tokens[:, :, :s] (teacher forcing)
        logits = model(tokens[:, :, : s + 1])[:, :, -1]
        sampled = sampling.sample(_mask_logits(model, logits, s), generator)
        tokens[:, :, s] = torch.where(known[:, :, s], tokens[:, :, s], sampled)
    return model.pattern.revert(tokens)


class MusicGenerator:
    """Audio in, audio out: a trained :class:`MusicLM` plus the codec of its tokens.

    ``MusicGenerator.from_pretrained(run).generate(prompt=None, seconds=20)`` returns audio
    ``[B, 1, T]`` at ``sample_rate``. With ``stream=callback`` audio is decoded while tokens
    are still being sampled: every ``stream_seconds`` of new frames are decoded together with
    ``context_frames`` earlier frames (dropped after decoding, so the convolutional decoder
    sees real left context) and handed to the callback as ``[B, 1, n]``. The streamed pieces
    lack right context at their edges, so they can differ slightly from the returned audio,
    which is decoded in one pass at the end.
    """

    def __init__(self, model: MusicLM, codec: Any) -> None:
        if (codec.n_codebooks, codec.codebook_size) != (
            model.config.n_codebooks,
            model.config.codebook_size,
        ):
            raise ValueError(
                f"codec {codec.id!r} has {codec.n_codebooks} x {codec.codebook_size} codes, "
                f"the model {model.config.n_codebooks} x {model.config.codebook_size}"
            )
        self.model, self.codec = model.eval(), codec

    @property
    def sample_rate(self) -> int:
        return int(self.codec.sample_rate)

    @classmethod
    def from_pretrained(
        cls, run: str, codec: Any = None, device: str | torch.device | None = None
    ) -> MusicGenerator:
        """Load the LM in ``run`` and its codec (``codec``: a Codec, or an id/path overriding
        the one recorded in the run)."""
        from .codecs import load_codec

        model = MusicLM.from_pretrained(run, device=device)
        if codec is None or isinstance(codec, str):
            codec_id = codec or model.config.codec_id
            if not codec_id:
                raise ValueError(f"{run}: the run records no codec; pass codec=...")
            codec = load_codec(codec_id, device=device)
        return cls(model, codec)

    def encode_prompt(
        self, prompt: Tensor, sample_rate: int, prompt_seconds: float | None = None
    ) -> Tensor:
        """Audio ``[C, T]`` or ``[B, C, T]`` at ``sample_rate`` -> prompt codes ``[B, K, T']``
        of its last ``prompt_seconds`` (all of it when ``None``)."""
        from mambakit.dsp import resample

        audio = prompt if prompt.dim() == 3 else prompt[None]
        if sample_rate != self.sample_rate:
            audio = resample(audio, sample_rate, self.sample_rate)
        if prompt_seconds is not None:
            audio = audio[..., -max(1, round(prompt_seconds * self.sample_rate)) :]
        return self.codec.encode(audio)

    def generate(
        self,
        prompt: Tensor | None = None,
        prompt_sample_rate: int | None = None,
        prompt_seconds: float | None = None,
        seconds: float = 10.0,
        sampling: Sampling = Sampling(),  # noqa: B008  (frozen: safe as a default)
        batch_size: int = 1,
        stream: Callable[[Tensor], None] | None = None,
        stream_seconds: float = 1.0,
        context_frames: int = 16,
        include_prompt: bool = False,
    ) -> Tensor:
        """``seconds`` of new audio ``[B, 1, T]`` (after the prompt, or from scratch), its
        tokens drawn as ``sampling`` says."""
        prompt_codes = None
        if prompt is not None:
            prompt_codes = self.encode_prompt(
                prompt, prompt_sample_rate or self.sample_rate, prompt_seconds
            )
        n_frames = max(1, round(seconds * self.codec.frame_rate))
        on_frames = None
        if stream is not None:
            on_frames = _StreamingDecoder(
                self.codec,
                stream,
                max(1, round(stream_seconds * self.codec.frame_rate)),
                context_frames,
                prompt_codes,
            )
        codes = generate(
            self.model, prompt_codes, n_frames, sampling, batch_size=batch_size, stream=on_frames
        )
        if on_frames is not None:
            on_frames.flush()
        if not include_prompt:
            codes = codes[:, :, -n_frames:]
        return self.codec.decode(codes)


class _StreamingDecoder:
    """Collects streamed frames and decodes them window by window (see MusicGenerator)."""

    def __init__(
        self,
        codec: Any,
        callback: Callable[[Tensor], None],
        window: int,
        context: int,
        prompt_codes: Tensor | None,
    ) -> None:
        self.codec, self.callback, self.window, self.context = codec, callback, window, context
        self.history = prompt_codes[..., -context:] if prompt_codes is not None else None
        self.pending: list[Tensor] = []

    def __call__(self, frames: Tensor) -> None:
        self.pending.append(frames)
        if sum(f.shape[-1] for f in self.pending) >= self.window:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        new = torch.cat(self.pending, dim=-1)
        self.pending = []
        past = self.history if self.history is not None else new[..., :0]
        audio = self.codec.decode(torch.cat([past, new], dim=-1))
        samples_per_frame = audio.shape[-1] // (past.shape[-1] + new.shape[-1])
        self.callback(audio[..., past.shape[-1] * samples_per_frame :])
        self.history = torch.cat([past, new], dim=-1)[..., -self.context :]
