"""The analytic FLOP formulas against hand counts on tiny configurations."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mambakit.bench.flops import attention_flops, mamba2_flops, mamba_flops, training_flops

# Tiny Mamba-2: L=8, d_model=4, expand=2 -> D=8 channels, headdim P=4 -> H=2 heads,
# N=2 states, G=1 group, conv width 2, chunks of Q=4 (two chunks).
TINY_MAMBA2 = dict(d_state=2, headdim=4, ngroups=1, expand=2, d_conv=2, chunk_size=4)


def test_mamba2_chunked_matches_hand_count():
    terms = mamba2_flops(8, 4, **TINY_MAMBA2)
    # in_proj: [8, 4] @ [4, z 8 + x 8 + B 2 + C 2 + dt 2 = 22] -> 2*8*4*22
    assert terms["in_proj"] == 1408
    # depthwise conv over x, B, C = 12 channels, 2 taps, 8 steps, a multiply-add each
    assert terms["conv"] == 2 * 8 * 12 * 2
    # per chunk (Q=4): C B^T [4,2]@[2,4] once per group = 64; decay mask 4*4 per head = 32;
    # (mask * CB^T) @ X [4,4]@[4,4] per head = 2*128 = 256; chunk states B^T X [2,4]@[4,4]
    # per head = 2*64 = 128; output C h [4,2]@[2,4] per head = 128
    per_chunk = 64 + 32 + 256 + 128 + 128
    # passing the [P, N] = [4, 2] state to the next chunk: decay * h + new (2 per entry),
    # per head, per chunk: 2 chunks * 2 heads * 2 * 8
    state_passing = 2 * 2 * 2 * 8
    assert terms["scan"] == 2 * per_chunk + state_passing
    assert terms["skip"] == 2 * 8 * 8
    assert terms["out_proj"] == 2 * 8 * 8 * 4
    assert terms["total"] == pytest.approx(sum(v for k, v in terms.items() if k != "total"))


def test_mamba2_recurrent_scan_hand_count():
    # per step and head: decay*h (P*N), dt*x (x) B outer (P*N), add (P*N), h C (2*P*N)
    terms = mamba2_flops(8, 4, **TINY_MAMBA2, scan="recurrent")
    assert terms["scan"] == 8 * 2 * 5 * 4 * 2
    # the projections do not depend on how the scan is computed
    chunked = mamba2_flops(8, 4, **TINY_MAMBA2)
    assert terms["in_proj"] == chunked["in_proj"] and terms["out_proj"] == chunked["out_proj"]


def test_mamba_hand_count():
    # L=8, d_model=4 -> D=8, N=2, dt_rank = ceil(4/16) = 1, conv width 2
    terms = mamba_flops(8, 4, d_state=2, d_conv=2, expand=2)
    assert terms["in_proj"] == 2 * 8 * 4 * 16
    assert terms["conv"] == 2 * 8 * 8 * 2
    assert terms["x_proj"] == 2 * 8 * 8 * (1 + 2 * 2)
    assert terms["dt_proj"] == 2 * 8 * 1 * 8
    assert terms["scan"] == 7 * 8 * 8 * 2
    assert terms["total"] == 1024 + 256 + 640 + 128 + 896 + 128 + 512


def test_attention_counts_only_causal_pairs():
    L, d = 5, 3
    # enumerate (query, key) pairs with key <= query: 2*d per pair for QK^T and for PV
    pairs = sum(1 for q in range(L) for k in range(L) if k <= q)
    terms = attention_flops(L, d)
    assert terms["scores"] == terms["values"] == 2 * d * pairs
    assert terms["qkv"] == 2 * L * d * 3 * d


def test_projection_terms_match_torch_flop_counter():
    """The projection terms equal what torch's own counter sees for the same matmuls."""
    L, d = 16, 8
    terms = mamba2_flops(L, d, **TINY_MAMBA2)
    d_inner, n_heads, n = 2 * d, 2 * d // 4, 2
    in_proj = torch.nn.Linear(d, 2 * d_inner + 2 * n + n_heads, bias=False)
    out_proj = torch.nn.Linear(d_inner, d, bias=False)
    with FlopCounterMode(display=False) as counter:
        in_proj(torch.randn(1, L, d))
    assert counter.get_total_flops() == terms["in_proj"]
    with FlopCounterMode(display=False) as counter:
        out_proj(torch.randn(1, L, d_inner))
    assert counter.get_total_flops() == terms["out_proj"]


def test_training_is_three_forwards():
    assert training_flops(10.0, backward=False) == 10.0
    assert training_flops(10.0, backward=True) == 30.0


def test_bad_configs_are_rejected_with_reason():
    with pytest.raises(ValueError, match="not a multiple of headdim"):
        mamba2_flops(8, 6, headdim=5)
    with pytest.raises(ValueError, match="scan must be"):
        mamba2_flops(8, 4, **TINY_MAMBA2, scan="parallel")
    with pytest.raises(ValueError, match="seqlen must be >= 1"):
        attention_flops(0, 4)


def test_defaults_are_the_layers_own_and_unknown_names_fail():
    from mambakit.ssm import Mamba2

    layer = Mamba2(64)
    explicit = mamba2_flops(32, 64, d_state=layer.d_state, headdim=layer.headdim,
                            ngroups=layer.ngroups, expand=2, d_conv=4, chunk_size=64)  # fmt: skip
    assert mamba2_flops(32, 64) == explicit
    assert mamba_flops(32, 64) == mamba_flops(32, 64, d_state=16, d_conv=4, expand=2)
    with pytest.raises(TypeError, match=r"unknown hyperparameter\(s\) \['dt_rank'\]"):
        mamba2_flops(32, 64, dt_rank=4)
