"""The fused C step of Mamba-2 backbones against the PyTorch step, and its fallbacks."""

import copy
import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from mambakit.ssm import Backbone, cbuild, cpu_decode, decode_weights_
from mambakit.ssm.layout import FUSED_ATTR

needs_kernel = pytest.mark.skipif(
    cpu_decode.available() is not None, reason=f"no fused decode kernel: {cpu_decode.available()}"
)
# Worst output difference relative to the largest fp32 output over 40 tokens through 3 layers
# (state carried). Measured: fp32 ~4e-7 (summation order), bf16 ~3e-3, int8 ~8e-3.
TOLERANCE = {"fp32": 1e-5, "bf16": 2e-2, "int8": 4e-2}
STEPS = 40


def _odd_backbone(**kwargs):
    """Odd sizes: d_model 40, 2 groups, d_state 7, headdim 10, d_conv 3, padded out blocks."""
    torch.manual_seed(0)
    kw = dict(headdim=10, ngroups=2, d_state=7, d_conv=3, mlp_ratio=0.0) | kwargs
    model = Backbone("mamba2", 3, 40, **kw).eval()
    with torch.no_grad():  # non-trivial norm scales and decays
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _run(model, xs, cache=None):
    cache = cache or model.allocate_cache(xs.shape[1])
    with torch.no_grad():
        return torch.stack([model.step(x, cache)[0] for x in xs]), cache


def _rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


@needs_kernel
@pytest.mark.parametrize("weights", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize(
    "mlp", [{}, {"mlp_ratio": 4.0}, {"mlp_ratio": 2.0, "mlp_activation": "gelu"}]
)
def test_fused_step_matches_torch_step_over_many_tokens(weights, mlp):
    model = _odd_backbone(**mlp)
    xs = torch.randn(STEPS, 3, 40, generator=torch.Generator().manual_seed(1))
    reference, ref_cache = _run(model, xs)
    fused = decode_weights_(copy.deepcopy(model), weights, backend="c")
    assert fused.__dict__.get(FUSED_ATTR) is not None
    out, cache = _run(fused, xs)
    assert 0 < _rel_err(out, reference) < TOLERANCE[weights]
    for mine, theirs in zip(cache.layers, ref_cache.layers, strict=True):
        assert _rel_err(mine.ssm_state, theirs.ssm_state) < TOLERANCE[weights]
        assert _rel_err(mine.conv_state, theirs.conv_state) < TOLERANCE[weights]


@needs_kernel
def test_fused_step_continues_a_prefilled_cache_and_runs_without_conv_bias():
    model = _odd_backbone()
    for blk in model.layers:
        blk.mixer.conv1d.bias = None
    prompt = torch.randn(2, 9, 40)
    xs = torch.randn(STEPS, 2, 40)
    caches = [model.allocate_cache(2) for _ in range(2)]
    with torch.no_grad():
        for cache in caches:
            model(prompt, cache=cache)
    reference, _ = _run(model, xs, caches[0])
    decode_weights_(model, "fp32", backend="c")
    out, _ = _run(model, xs, caches[1])
    assert _rel_err(out, reference) < TOLERANCE["fp32"]


@needs_kernel
def test_portable_build_without_avx512_matches_the_default_build():
    model = _odd_backbone(mlp_ratio=4.0)
    portable_flags = tuple(f for f in cbuild.DEFAULT_FLAGS if not f.startswith("-march"))
    xs = torch.randn(8, 2, 40)
    outputs = []
    for flags in (None, portable_flags):
        decoder = cpu_decode.FusedDecoder(model, "int8", flags=flags)
        cache = model.allocate_cache(2)
        outputs.append(torch.stack([decoder.step(x, cache.layers) for x in xs]))
    assert _rel_err(outputs[1], outputs[0]) < 1e-5


@needs_kernel
def test_calls_the_fused_step_does_not_accept_take_the_torch_path():
    model = decode_weights_(_odd_backbone(), "int8")  # auto: fused where it can
    decoder = model.__dict__[FUSED_ATTR]
    cache = model.allocate_cache(2)
    x = torch.randn(2, 40)
    assert decoder.accepts(x, cache.layers)
    assert not decoder.accepts(x.double(), cache.layers)
    assert not decoder.accepts(x[:1], cache.layers)  # cache of another batch size
    assert not decoder.accepts(x, cache.layers[:2])
    x_grad = x.clone().requires_grad_()
    y, _ = model.step(x_grad, cache)
    assert y.grad_fn is not None  # the PyTorch path, differentiable
    with torch.no_grad():
        assert model.step(x_grad, cache)[0].grad_fn is None


@needs_kernel
def test_copies_and_pickles_drop_the_fused_step_and_keep_the_weight_copies():
    model = decode_weights_(_odd_backbone(), "bf16")
    xs = torch.randn(5, 1, 40)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert clone.__dict__.get(FUSED_ATTR) is None
        torch_bf16, _ = _run(clone, xs)
        assert _rel_err(torch_bf16, _run(model, xs)[0]) < TOLERANCE["bf16"]


def test_auto_falls_back_and_c_is_an_error_where_the_kernel_cannot_build(monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    model = _odd_backbone()
    with pytest.raises(RuntimeError, match="no such file|nonexistent"):
        decode_weights_(model, "bf16", backend="c")
    decode_weights_(model, "bf16")
    assert model.__dict__.get(FUSED_ATTR) is None
    xs = torch.randn(5, 2, 40)
    reference = _run(decode_weights_(copy.deepcopy(model), "fp32"), xs)[0]
    assert 0 < _rel_err(_run(model, xs)[0], reference) < TOLERANCE["bf16"]


def test_other_backbone_kinds_use_the_torch_path_and_refuse_c():
    model = Backbone("hybrid", 4, 32, headdim=16).eval()
    with pytest.raises(RuntimeError, match="Mamba-2 backbones only"):
        decode_weights_(model, "bf16", backend="c")
    assert decode_weights_(model, "bf16").__dict__.get(FUSED_ATTR) is None
    with pytest.raises(ValueError, match="decode backend must be one of"):
        decode_weights_(model, "bf16", backend="cuda")


def test_fp32_auto_is_the_exact_torch_step():
    model = _odd_backbone()
    xs = torch.randn(6, 2, 40)
    reference = _run(model, xs)[0]
    decode_weights_(model, "int8")
    decode_weights_(model, "fp32")
    assert model.__dict__.get(FUSED_ATTR) is None
    torch.testing.assert_close(_run(model, xs)[0], reference, rtol=0, atol=0)


@needs_kernel
def test_threads_stepping_their_own_caches_do_not_share_scratch():
    # wide enough that the C call (the GIL released) dominates each step, so threads overlap
    torch.manual_seed(0)
    model = decode_weights_(Backbone("mamba2", 2, 256, mlp_ratio=4.0).eval(), "int8", backend="c")
    xs = torch.randn(4, STEPS, 1, 256)
    sequential = [_run(model, x)[0] for x in xs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda x: _run(model, x)[0], xs))
    for a, b in zip(threaded, sequential, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@needs_kernel
def test_packing_under_a_float64_default_dtype_still_hands_the_kernel_float32(monkeypatch):
    model = _odd_backbone()
    xs = torch.randn(8, 2, 40, generator=torch.Generator().manual_seed(3))
    reference, _ = _run(model, xs)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # scales, biases and scratch must stay float32
    try:
        fused = decode_weights_(copy.deepcopy(model), "fp32", backend="c")
    finally:
        torch.set_default_dtype(previous)
    out, _ = _run(fused, xs)
    assert _rel_err(out, reference) < TOLERANCE["fp32"]


@needs_kernel
def test_int8_through_the_fused_step_needs_no_torch_int8_kernel(monkeypatch):
    from mambakit.ssm import layout

    monkeypatch.setattr(layout, "_int8_supported", lambda: False)
    model = _odd_backbone()
    with pytest.raises(RuntimeError, match="backend='c'"):
        decode_weights_(copy.deepcopy(model), "int8", backend="torch")
    xs = torch.randn(8, 2, 40, generator=torch.Generator().manual_seed(4))
    reference, _ = _run(model, xs)
    out, _ = _run(decode_weights_(copy.deepcopy(model), "int8", backend="c"), xs)
    assert 0 < _rel_err(out, reference) < TOLERANCE["int8"]
