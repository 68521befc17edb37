"""The CPU fast paths' building blocks against plain PyTorch references (values and grads)."""

import pytest
import torch
import torch.nn.functional as F

from mambakit.ssm import ops, selective_scan, selective_scan_ref
from mambakit.ssm.mamba2 import GatedRMSNorm
from mambakit.ssm.ops import causal_conv1d, causal_conv1d_ref, causal_conv1d_step


@pytest.mark.parametrize(
    "length,k,with_state,with_bias",
    [(9, 4, False, True), (9, 4, True, True), (2, 4, False, False), (1, 4, True, True),
     (5, 1, False, True), (3, 3, True, False)],
)  # fmt: skip
@pytest.mark.parametrize("traced", [False, True])
def test_time_major_causal_conv_matches_conv1d_and_gradchecks(
    monkeypatch, length, k, with_state, with_bias, traced
):
    if traced:  # the plain-op path torch.compile traces, run eagerly
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    gen = torch.Generator().manual_seed(length * 10 + k)
    c = 3
    x = torch.randn(2, length, c, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(c, 1, k, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(c, generator=gen, dtype=torch.float64, requires_grad=True)
    s = torch.randn(2, c, k - 1, generator=gen, dtype=torch.float64, requires_grad=True)
    b, s = (b if with_bias else None), (s if with_state else None)
    torch.testing.assert_close(causal_conv1d(x, w, b, s), causal_conv1d_ref(x, w, b, s))
    inputs = tuple(t for t in (x, w, b, s) if t is not None)

    def fn(*args):
        it = iter(args)
        x_, w_ = next(it), next(it)
        return causal_conv1d(
            x_, w_, next(it) if with_bias else None, next(it) if with_state else None
        )

    assert torch.autograd.gradcheck(fn, inputs)


def test_conv_step_equals_the_sequence_conv_and_shifts_the_state():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 7, 5, generator=gen)
    w, b = torch.randn(5, 1, 4, generator=gen), torch.randn(5, generator=gen)
    state = torch.zeros(2, 5, 3)
    steps = torch.stack([causal_conv1d_step(x[:, t], w, b, state) for t in range(7)], dim=1)
    torch.testing.assert_close(steps, causal_conv1d(x, w, b))
    torch.testing.assert_close(state, x[:, -3:].transpose(1, 2))  # the last K-1 inputs


def test_chunk_state_passing_backward_is_the_autograd_of_the_loop():
    gen = torch.Generator().manual_seed(0)
    decay = torch.rand(2, 5, 3, 1, generator=gen, dtype=torch.float64).requires_grad_()
    chunks = torch.randn(2, 5, 3, 4, generator=gen, dtype=torch.float64).requires_grad_()
    initial = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(ops._ChunkStatePassing.apply, (decay, chunks, initial))
    states = ops._ChunkStatePassing.apply(decay, chunks, initial)
    expected = [initial]
    for c in range(5):
        expected.append(decay[:, c] * expected[-1] + chunks[:, c])
    torch.testing.assert_close(states, torch.stack(expected, dim=1))


def test_selective_scan_spanning_many_blocks_matches_reference(monkeypatch):
    # 2 * 6 * 4 = 48 state values per step: blocks of 288 values hold 2 chunks of 3 steps
    # (or 1 chunk of 8), so 23 steps make several blocks, the last one with a padded chunk.
    monkeypatch.setattr(ops, "_SELECTIVE_BLOCK_ELEMENTS", 288)
    gen = torch.Generator().manual_seed(3)
    u, delta = torch.randn(2, 23, 6, generator=gen), torch.rand(2, 23, 6, generator=gen)
    A = -torch.rand(6, 4, generator=gen) * 3 - 0.1
    B, C = torch.randn(2, 23, 4, generator=gen), torch.randn(2, 23, 4, generator=gen)
    inputs = [t.requires_grad_() for t in (u, delta, A, B, C)]
    for chunk in (3, 8):
        y, s = selective_scan(*inputs, None, None, True, chunk_size=chunk, backend="torch")
        y_ref, s_ref = selective_scan_ref(*inputs, None, None, True)
        torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(s, s_ref, atol=1e-5, rtol=1e-4)
        grads = torch.autograd.grad(y.square().sum() + s.sum(), inputs)  # checkpointed blocks
        grads_ref = torch.autograd.grad(y_ref.square().sum() + s_ref.sum(), inputs)
        for g, g_ref in zip(grads, grads_ref, strict=True):
            torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("group_size", [None, 4])
def test_gated_rmsnorm_matches_its_equation(group_size):
    gen = torch.Generator().manual_seed(0)
    norm = GatedRMSNorm(8, group_size=group_size)
    norm.weight.data = torch.randn(8, generator=gen)
    y, z = torch.randn(3, 8, generator=gen), torch.randn(3, 8, generator=gen)
    gated = (y * F.silu(z)).reshape(3, -1, group_size or 8)
    ref = gated * torch.rsqrt(gated.pow(2).mean(-1, keepdim=True) + norm.eps)
    torch.testing.assert_close(norm(y, z), ref.reshape(3, 8) * norm.weight)
