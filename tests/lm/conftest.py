"""Tiny random-weight codecs (nothing is downloaded) and a token store made with one."""

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def tiny_dac():
    from transformers import DacConfig, DacModel

    from mambakit.lm.codecs import DacCodec

    torch.manual_seed(0)
    config = DacConfig(
        encoder_hidden_size=8,
        downsampling_ratios=[2, 2],
        decoder_hidden_size=16,
        n_codebooks=3,
        codebook_size=16,
        codebook_dim=4,
        sampling_rate=8000,
    )
    return DacCodec(DacModel(config), id="tiny-dac", chunk_seconds=0.02, context_seconds=0.02)


@pytest.fixture(scope="session")
def tiny_encodec():
    from transformers import EncodecConfig, EncodecModel

    from mambakit.lm.codecs import EncodecCodec

    torch.manual_seed(0)
    config = EncodecConfig(
        target_bandwidths=[16.0, 32.0],
        sampling_rate=8000,
        hidden_size=16,
        num_filters=4,
        upsampling_ratios=[2, 2],
        num_lstm_layers=1,
        codebook_size=16,
        codebook_dim=16,
    )
    return EncodecCodec(EncodecModel(config), id="tiny-encodec")


@pytest.fixture
def noise_token_store(tiny_dac, tmp_path):
    """Four 0.5 s noise files at 8 kHz tokenized with ``tiny_dac`` (30 % validation)."""
    import soundfile as sf

    from mambakit.lm.store import tokenize_folder

    music = tmp_path / "music"
    music.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        sf.write(music / f"{i}.wav", rng.standard_normal(4000).astype(np.float32) * 0.1, 8000)
    tokenize_folder(music, tiny_dac, tmp_path / "tokens", val_fraction=0.3, progress=False)
    return tmp_path / "tokens"
