"""Codec wrappers on tiny random codecs: shapes, round trips, chunked == unchunked."""

import pytest
import torch

from mambakit.lm.codecs import Codec


@pytest.mark.parametrize("name", ["tiny_dac", "tiny_encodec"])
def test_round_trip_shapes(name: str, request) -> None:
    codec = request.getfixturevalue(name)
    assert isinstance(codec, Codec)
    audio = torch.randn(2, 2, 403)  # stereo, not a whole number of frames
    codes = codec.encode(audio)
    frames = -(-403 // codec.hop_length)
    assert codes.shape == (2, codec.n_codebooks, frames) and codes.dtype == torch.long
    assert codes.min() >= 0 and codes.max() < codec.codebook_size
    decoded = codec.decode(codes)
    assert decoded.shape == (2, 1, frames * codec.hop_length)
    assert codec.frame_rate == codec.sample_rate / codec.hop_length


def test_chunked_equals_unchunked(tiny_dac) -> None:
    audio = torch.randn(1, 1, 8000 // 4 * 3)  # 0.75 s, many 0.02 s chunks
    chunked = tiny_dac.encode(audio)
    tiny_dac.chunk_seconds, saved = None, tiny_dac.chunk_seconds
    try:
        unchunked = tiny_dac.encode(audio)
    finally:
        tiny_dac.chunk_seconds = saved
    assert chunked.shape == unchunked.shape
    # the context covers the receptive field, so every kept frame sees the same input
    assert torch.equal(chunked, unchunked)
    # without context the chunk edges see zero padding instead of audio: codes change
    tiny_dac.context_seconds, saved_context = 0.0, tiny_dac.context_seconds
    try:
        no_context = tiny_dac.encode(audio)
    finally:
        tiny_dac.context_seconds = saved_context
    assert not torch.equal(no_context, unchunked)
