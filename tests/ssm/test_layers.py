"""Layers and backbones: recurrent step == parallel forward, prefill, segments, causality."""

import pytest
import torch

from mambakit.ssm import (
    KINDS,
    Backbone,
    Bidirectional,
    CausalSelfAttention,
    Mamba,
    Mamba2,
    count_parameters,
)

D_MODEL = 32


def _layers():
    torch.manual_seed(0)
    return {
        "mamba2": Mamba2(D_MODEL, d_state=8, headdim=16, ngroups=2, chunk_size=8),
        "mamba": Mamba(D_MODEL, d_state=8, chunk_size=8),
        "attention": CausalSelfAttention(D_MODEL, n_heads=4),
        **{
            f"backbone-{k}": Backbone(k, 4, D_MODEL, attn_every=2, n_heads=4, headdim=16, d_state=8)
            for k in KINDS
        },
        "backbone-hybrid-mamba2": Backbone(
            "hybrid",
            3,
            D_MODEL,
            attn_every=3,
            n_heads=4,
            headdim=16,
            d_state=8,
            mamba_kind="mamba2",
            mlp_ratio=0,
        ),
    }


LAYER_NAMES = list(_layers())


@pytest.fixture(scope="module")
def layers():
    return {name: layer.eval() for name, layer in _layers().items()}


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 21, D_MODEL, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", LAYER_NAMES)
@torch.no_grad()
def test_step_by_step_equals_forward(layers, x, name):
    layer = layers[name]
    y = layer(x)
    assert y.shape == x.shape
    cache = layer.allocate_cache(x.shape[0])
    steps = [layer.step(x[:, t], cache)[0] for t in range(x.shape[1])]
    assert (torch.stack(steps, dim=1) - y).abs().max() < 1e-4


@pytest.mark.parametrize("name", LAYER_NAMES)
@torch.no_grad()
def test_prefill_then_step_equals_forward(layers, x, name):
    layer = layers[name]
    y = layer(x)
    cache = layer.allocate_cache(x.shape[0], max_seqlen=x.shape[1])
    y_prompt = layer(x[:, :13], cache=cache)
    steps = [layer.step(x[:, t], cache)[0] for t in range(13, x.shape[1])]
    y_all = torch.cat([y_prompt, torch.stack(steps, dim=1)], dim=1)
    assert (y_all - y).abs().max() < 1e-4


@pytest.mark.parametrize("name", LAYER_NAMES)
@torch.no_grad()
def test_segments_through_cache_equal_one_pass(layers, x, name):
    layer = layers[name]
    cache = layer.allocate_cache(x.shape[0])
    pieces = [layer(x[:, a:b], cache=cache) for a, b in [(0, 5), (5, 6), (6, 21)]]
    assert (torch.cat(pieces, dim=1) - layer(x)).abs().max() < 1e-4


@pytest.mark.parametrize("cls", [Mamba2, Mamba])
@torch.no_grad()
def test_initial_and_final_state_carry_across_segments(cls, x):
    torch.manual_seed(0)
    kwargs = {"headdim": 16, "d_conv": 1} if cls is Mamba2 else {"d_conv": 1}
    # d_conv=1: no conv history, so the SSM state alone carries the whole context.
    layer = cls(D_MODEL, d_state=8, chunk_size=4, **kwargs)
    y_full, s_full = layer(x, return_final_state=True)
    y1, s1 = layer(x[:, :10], return_final_state=True)
    y2, s2 = layer(x[:, 10:], initial_state=s1, return_final_state=True)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y_full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s2, s_full, atol=1e-5, rtol=1e-5)


def _input_gradient_of_output_at(layer, x, t):
    x = x.clone().requires_grad_()
    layer(x)[:, t].sum().backward()
    return x.grad.abs().sum(dim=(0, 2))  # [L]


@pytest.mark.parametrize("name", LAYER_NAMES)
def test_causal_layers_leak_no_future(layers, x, name):
    t = 9
    grad = _input_gradient_of_output_at(layers[name], x, t)
    assert torch.all(grad[t + 1 :] == 0)
    assert grad[: t + 1].sum() > 0


@pytest.mark.parametrize("combine", ["sum", "concat"])
def test_bidirectional_sees_the_future(x, combine):
    torch.manual_seed(0)
    layer = Bidirectional(lambda: Mamba2(D_MODEL, d_state=8, headdim=16, chunk_size=8), combine)
    grad = _input_gradient_of_output_at(layer, x, 9)
    assert grad[10:].sum() > 0 and grad[:10].sum() > 0
    with pytest.raises(NotImplementedError, match="non-causal"):
        layer.allocate_cache(1)


def test_mamba2_head_divisibility_error():
    with pytest.raises(ValueError, match="not divisible by headdim"):
        Mamba2(40, headdim=64)
    assert Mamba2(64).n_heads == 2  # d_inner 128 = 2 heads of 64


def test_backbone_layer_kinds_and_parameter_count():
    bb = Backbone("hybrid", 8, D_MODEL, attn_every=4, n_heads=4, mlp_ratio=0)
    assert bb.layer_kinds == ["mamba"] * 3 + ["attention"] + ["mamba"] * 3 + ["attention"]
    assert count_parameters(bb) == sum(p.numel() for p in bb.parameters())
    with_mlp = Backbone("mamba", 2, D_MODEL, mlp_ratio=4)
    without = Backbone("mamba", 2, D_MODEL, mlp_ratio=0)
    assert count_parameters(with_mlp) > count_parameters(without)
    with pytest.raises(ValueError, match="kind must be one of"):
        Backbone("rnn", 2, D_MODEL)


def test_backbone_from_config_reads_fields_by_name_and_overrides_win():
    from types import SimpleNamespace

    config = SimpleNamespace(
        backbone="hybrid", n_layers=4, d_model=D_MODEL, attn_every=2, n_heads=4, mlp_ratio=0,
        d_state=8, headdim=16, mamba_kind="mamba2", codebook_size=1024,  # not Backbone's
    )  # fmt: skip
    bb = Backbone.from_config(config, kind=config.backbone)
    assert bb.layer_kinds == ["mamba2", "attention"] * 2
    assert bb.layers[0].mixer.d_state == 8 and bb.layers[1].mixer.n_heads == 4
    assert len(Backbone.from_config(config, kind="mamba", n_layers=2).layers) == 2
    with pytest.raises(TypeError, match="kind"):
        Backbone.from_config(config)  # the config names no kind
