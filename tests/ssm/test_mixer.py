"""mambakit.ssm.mixer: the one allocate_cache rule and Mamba's dt initialisation."""

import pytest
import torch
import torch.nn.functional as F

from mambakit.ssm import Backbone, CausalSelfAttention, Mamba, Mamba2
from mambakit.ssm.mixer import dt_bias_init


@pytest.mark.parametrize(
    "layer",
    [
        lambda: Mamba(16, d_state=4),
        lambda: Mamba2(16, d_state=4, headdim=8),
        lambda: CausalSelfAttention(16, n_heads=2),
        lambda: Backbone("hybrid", n_layers=2, d_model=16, attn_every=2, headdim=8),
    ],
)
def test_a_cache_follows_the_weights_dtype_unless_asked_and_ssm_state_stays_fp32(layer):
    model = layer().to(torch.float64)

    def state_dtypes(cache):
        layers = getattr(cache, "layers", [cache])
        return {n: t.dtype for c in layers for n, t in vars(c).items() if torch.is_tensor(t)}

    for asked, want in ((None, torch.float64), (torch.bfloat16, torch.bfloat16)):
        dtypes = state_dtypes(model.allocate_cache(2, dtype=asked))
        ssm = dtypes.pop("ssm_state", torch.float32)  # the scan's state: fp32 always
        assert ssm == torch.float32 and set(dtypes.values()) == {want}


def test_dt_bias_starts_softplus_inside_the_requested_range():
    torch.manual_seed(0)
    dt = F.softplus(dt_bias_init(1000, 1e-3, 0.1))
    assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    # log-uniform: about half the draws below the geometric mean of the bounds
    assert 0.4 < float((dt < (1e-3 * 0.1) ** 0.5).float().mean()) < 0.6
