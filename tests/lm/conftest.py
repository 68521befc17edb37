"""Tiny random-weight codecs (nothing is downloaded)."""

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
