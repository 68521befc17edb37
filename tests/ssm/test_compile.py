"""The compile-friendly paths (segment-sum state passing, plain-op conv) and the switch."""

import pytest
import torch

from mambakit.ssm import Mamba, Mamba2, ops


def _recurrence_loop(log_decay, inputs, initial):
    states, state = [], initial
    for c in range(inputs.shape[-2]):
        state = torch.exp(log_decay[..., c, None]) * state + inputs[..., c, :]
        states.append(state)
    return torch.stack(states, dim=-2)


@pytest.mark.parametrize("steps", [1, 4, 5, 17, 70])
def test_chunk_recurrence_equals_the_loop_at_every_depth(monkeypatch, steps):
    # blocks of 4: 70 steps recurse three levels deep, with padding at each level
    monkeypatch.setattr(ops, "_RECURRENCE_BLOCK", 4)
    gen = torch.Generator().manual_seed(steps)
    log_decay = -torch.rand(2, 3, steps, generator=gen, dtype=torch.float64) * 2
    inputs = torch.randn(2, 3, steps, 5, generator=gen, dtype=torch.float64)
    initial = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64)
    args = [t.requires_grad_() for t in (log_decay, inputs, initial)]
    torch.testing.assert_close(ops._chunk_recurrence(*args), _recurrence_loop(*args))
    if steps == 17:  # two levels and padding; a slice keeps gradcheck to a second
        small = [t.detach()[:1, :1].requires_grad_() for t in args]
        assert torch.autograd.gradcheck(ops._chunk_recurrence, small)


def test_traced_paths_equal_the_eager_layer(monkeypatch):
    # What torch.compile traces (plain-op conv, segment-sum scan, padded tail), run eagerly.
    torch.manual_seed(0)
    layer = Mamba2(16, d_state=8, headdim=8, chunk_size=8)
    x = torch.randn(2, 29, 16, requires_grad=True)
    y_eager = layer(x)
    g_eager = torch.autograd.grad(y_eager.square().sum(), [x, *layer.parameters()])
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    y_traced = layer(x)
    g_traced = torch.autograd.grad(y_traced.square().sum(), [x, *layer.parameters()])
    torch.testing.assert_close(y_traced, y_eager, atol=1e-5, rtol=1e-5)
    for g, g_ref in zip(g_traced, g_eager, strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-4)


def test_compile_switch_modes_and_errors(monkeypatch):
    monkeypatch.setattr(ops, "_compile_mode", False)
    assert ops.set_compile("auto") is False
    assert ops.get_compile() == "auto"
    assert not ops.should_compile(ops._AUTO_COMPILE_MIN_STEPS - 1)
    assert ops.should_compile(ops._AUTO_COMPILE_MIN_STEPS)
    assert ops.set_compile("on") == "auto" and ops.should_compile(1)
    ops.set_compile("0")
    assert not ops.should_compile(10**9)
    with pytest.raises(ValueError, match="compile mode must be one of"):
        ops.set_compile("sometimes")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mamba2", "mamba"])
def test_compiled_layer_equals_eager_values_and_grads(monkeypatch, kind):
    # Minutes on a busy 2-core CPU with a cold inductor cache: `pytest -m slow`.
    torch.manual_seed(0)
    layer = Mamba2(16, d_state=8, headdim=8, chunk_size=8) if kind == "mamba2" else Mamba(16)
    params = list(layer.parameters())
    for length in (37, 53):  # odd lengths; the second reuses the dynamic-length graph
        x = torch.randn(2, length, 16, requires_grad=True)
        monkeypatch.setattr(ops, "_compile_mode", True)
        y_c = layer(x)
        g_c = torch.autograd.grad(y_c.square().sum(), [x, *params])
        monkeypatch.setattr(ops, "_compile_mode", False)
        y_e = layer(x)
        g_e = torch.autograd.grad(y_e.square().sum(), [x, *params])
        torch.testing.assert_close(y_c, y_e, atol=1e-5, rtol=1e-5)
        for g, g_ref in zip(g_c, g_e, strict=True):
            torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-4)
