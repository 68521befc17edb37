"""Generation with recurrent caches == full re-run, for every backbone and pattern."""

import pytest
import torch

from mambakit.lm.generate import GREEDY, Sampling, generate_uncached, sample_logits
from mambakit.lm.model import MusicLM, preset
from mambakit.ssm import KINDS


def _model(kind: str, pattern: str = "delay") -> MusicLM:
    torch.manual_seed(0)
    config = preset(kind, "tiny", pattern=pattern, n_codebooks=3, codebook_size=16, n_layers=4)
    model = MusicLM(config).eval()
    # larger random weights so greedy choices are not near-ties decided by rounding
    with torch.no_grad():
        for head in model.heads:
            head.weight.mul_(4.0)
    return model


@pytest.mark.parametrize("kind", KINDS)
def test_cached_greedy_equals_uncached_from_scratch_and_continuation(kind: str) -> None:
    model = _model(kind)
    cached = model.generate(n_frames=6, sampling=GREEDY, batch_size=2)
    assert cached.shape == (2, 3, 6)
    assert torch.equal(cached, generate_uncached(model, n_frames=6, batch_size=2))

    prompt = torch.randint(0, 16, (2, 3, 5))
    cached = model.generate(prompt, n_frames=6, sampling=GREEDY)
    assert torch.equal(cached[:, :, :5], prompt)
    assert torch.equal(cached, generate_uncached(model, prompt, n_frames=6))


@pytest.mark.parametrize("pattern", ["parallel", "flat"])
def test_cached_equals_uncached_for_other_patterns(pattern: str) -> None:
    model = _model("hybrid", pattern)
    prompt = torch.randint(0, 16, (1, 3, 2))
    assert torch.equal(
        model.generate(prompt, n_frames=4, sampling=GREEDY),
        generate_uncached(model, prompt, n_frames=4),
    )


def test_sampling_is_seeded_and_streams_every_frame_once() -> None:
    model = _model("mamba2")
    chunks: list[torch.Tensor] = []
    sampling = Sampling(1.0, top_k=5, seed=3)
    codes = model.generate(n_frames=7, sampling=sampling, stream=chunks.append)
    again = model.generate(n_frames=7, sampling=sampling)
    assert torch.equal(codes, again)
    assert torch.equal(torch.cat(chunks, dim=-1), codes)
    assert codes.min() >= 0 and codes.max() < 16  # PAD (16) never comes out as a code


def test_top_k_and_top_p_restrict_the_support() -> None:
    logits = torch.tensor([[4.0, 3.0, 2.0, -1.0, -2.0]]).expand(2000, 5)
    g = torch.Generator().manual_seed(0)
    assert set(sample_logits(logits, 1.0, top_k=2, generator=g).tolist()) == {0, 1}
    probs = logits[0].softmax(-1)
    # the nucleus for p just above P(0) needs ids 0 and 1 only
    ids = sample_logits(logits, 1.0, top_p=float(probs[0]) + 0.01, generator=g)
    assert set(ids.tolist()) == {0, 1}
    assert torch.equal(sample_logits(logits, 0.0), torch.zeros(2000, dtype=torch.long))


def test_music_generator_streams_audio_of_the_requested_length(tiny_dac) -> None:
    from mambakit.lm.generate import MusicGenerator

    torch.manual_seed(0)
    config = preset("mamba2", "tiny", n_codebooks=3, codebook_size=16)
    generator = MusicGenerator(MusicLM(config), tiny_dac)
    pieces: list[torch.Tensor] = []
    prompt = torch.randn(1, 2, 800) * 0.1  # stereo at 16 kHz: resampled and downmixed
    audio = generator.generate(
        prompt,
        prompt_sample_rate=16000,
        prompt_seconds=0.05,
        seconds=0.02,
        sampling=Sampling(seed=0),
        stream=pieces.append,
        stream_seconds=0.004,
    )
    frames = round(0.02 * tiny_dac.frame_rate)
    assert audio.shape == (1, 1, frames * tiny_dac.hop_length)
    assert sum(p.shape[-1] for p in pieces) == audio.shape[-1]
    assert len(pieces) > 1  # decoded while sampling, not once at the end
    with pytest.raises(ValueError, match="codes"):
        MusicGenerator(MusicLM(preset("mamba2", "tiny", n_codebooks=2)), tiny_dac)
