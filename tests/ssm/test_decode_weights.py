"""int8 weights for recurrent decoding: bounded error against fp32, and a clean way back."""

import pytest
import torch

from mambakit.ssm import Backbone, decode_weights_
from mambakit.ssm.layout import _int8_supported

needs_int8 = pytest.mark.skipif(not _int8_supported(), reason="no int8 weight-only matmul here")


def _decode(model, steps=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    cache = model.allocate_cache(2)
    xs = torch.randn(steps, 2, model.d_model, generator=gen)
    with torch.no_grad():
        return torch.stack([model.step(x, cache)[0] for x in xs])


@needs_int8
@pytest.mark.parametrize("weights", ["int8", "bf16"])
@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("kind,mlp_ratio", [("mamba2", 0.0), ("mamba", 4.0), ("hybrid", 4.0)])
def test_decode_weights_stay_close_to_fp32_and_fp32_restores_it(kind, mlp_ratio, backend, weights):
    torch.manual_seed(0)
    model = Backbone(kind, 4, 64, mlp_ratio=mlp_ratio, headdim=32).eval()
    reference = _decode(model)
    decode_weights_(model, weights, backend=backend)
    quantised = _decode(model)
    # measured: ~1e-2 of the output scale after 6 steps through 4 layers for int8 (one scale
    # per output channel; bf16 activations on the torch path), a few 1e-3 for bf16 weights
    rel = (quantised - reference).abs().max() / reference.abs().max()
    assert 0 < rel < 0.05
    with torch.no_grad():  # forward() keeps the fp32 weights
        x = torch.randn(1, 5, 64)
        torch.testing.assert_close(model(x), model(x))
    decode_weights_(model, "fp32")
    torch.testing.assert_close(_decode(model), reference)


def test_unknown_decode_weights_is_an_error():
    with pytest.raises(ValueError, match="decode weights must be one of"):
        decode_weights_(Backbone("mamba2", 1, 32), "int4")
