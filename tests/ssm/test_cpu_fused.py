"""The fused C stages of the Mamba-2 layer against their PyTorch twins (values, gradients)."""

import pytest
import torch
import torch.nn.functional as F

from mambakit.ssm import Mamba2
from mambakit.ssm.mamba2 import GatedRMSNorm
from mambakit.ssm.ops import causal_conv1d_ref


def _fused(monkeypatch, threads=1):
    from mambakit.ssm import cpu_fused

    if not cpu_fused.available():
        pytest.skip(f"no C kernel here: {cpu_fused.unavailable_reason()}")
    monkeypatch.setattr(cpu_fused, "_MIN_PARALLEL_ELEMENTS", 0)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    return cpu_fused


def _assert_agree(fast, reference, inputs, names, tol=1e-5):
    """``fast(*inputs)`` and ``reference(*inputs)`` agree in value and in the gradient of
    every input of a random linear loss."""
    got, want = fast(*inputs), reference(*inputs)
    torch.testing.assert_close(got, want, atol=tol, rtol=tol, msg="value")
    w = torch.randn(got.shape, generator=torch.Generator().manual_seed(1))
    for name, g, r in zip(names, torch.autograd.grad((got * w).sum(), inputs),
                          torch.autograd.grad((want * w).sum(), inputs), strict=True):  # fmt: skip
        torch.testing.assert_close(g, r, atol=tol * 10, rtol=tol * 10, msg=name)


# (batch, length, channels, taps, bias, threads): odd lengths, a length shorter than the
# kernel, one tap, no bias (with 4 taps: the one-pass path), channel ranges over 3 threads
# (40 channels: uneven).
CONV_CASES = [(2, 37, 40, 4, True, 1), (1, 3, 40, 4, True, 3), (2, 130, 40, 1, False, 3),
              (1, 67, 24, 3, True, 2), (2, 45, 40, 4, False, 3)]  # fmt: skip


@pytest.mark.parametrize("b,length,channels,k,bias,threads", CONV_CASES)
def test_conv_silu_matches_conv1d_then_silu(monkeypatch, b, length, channels, k, bias, threads):
    cpu_fused = _fused(monkeypatch, threads)
    gen = torch.Generator().manual_seed(0)
    wide = torch.randn(b, length, channels + 9, generator=gen).requires_grad_()
    weight = torch.randn(channels, 1, k, generator=gen).requires_grad_()
    bias_t = torch.randn(channels, generator=gen).requires_grad_() if bias else None

    def fast(wide, weight, *bias):  # the conv reads a strided slice in place
        return cpu_fused.causal_conv1d_silu(wide[..., 5 : 5 + channels], weight, *bias or [None])

    def reference(wide, weight, *bias):
        x = wide[..., 5 : 5 + channels]
        return F.silu(causal_conv1d_ref(x, weight, bias[0] if bias else None))

    inputs = [wide, weight, *([bias_t] if bias else [])]
    _assert_agree(fast, reference, inputs, ["x", "weight", "bias"][: len(inputs)])


@pytest.mark.parametrize("length,group_size,threads", [(37, 16, 1), (5, 8, 3), (64, 4, 2)])
def test_gated_norm_matches_the_torch_norm(monkeypatch, length, group_size, threads):
    cpu_fused = _fused(monkeypatch, threads)
    gen = torch.Generator().manual_seed(0)
    norm = GatedRMSNorm(16, group_size=group_size)
    weight = torch.randn(16, generator=gen).requires_grad_()
    y = torch.randn(2, length, 16, generator=gen).requires_grad_()
    wide = torch.randn(2, length, 30, generator=gen).requires_grad_()  # z: a strided slice

    def fast(y, wide, weight):
        return cpu_fused.gated_rms_norm(y, wide[..., 3:19], weight, norm.eps, group_size)

    def reference(y, wide, weight):
        # the torch path, differentiable in weight
        return torch.func.functional_call(norm, {"weight": weight}, (y, wide[..., 3:19]))

    _assert_agree(fast, reference, [y, wide, weight], ["y", "z", "weight"])


# (M, K, N, threads): columns of 3 vectors + 2 (a partial vector), row ranges over 3
# threads not multiples of the 6-row tile, one row, and long reductions (K > 8 M) whose
# terms are split over 3 threads unevenly.
GEMM_CASES = [(37, 13, 50, 1), (41, 70, 64, 3), (1, 5, 17, 2), (7, 1000, 33, 3), (3, 600, 16, 2)]


@pytest.mark.parametrize("m,k,n,threads", GEMM_CASES)
def test_gemm_matches_torch_mm(monkeypatch, m, k, n, threads):
    cpu_fused = _fused(monkeypatch, threads)
    gen = torch.Generator().manual_seed(0)
    b = torch.randn(k, n + 3, generator=gen)[:, 1 : n + 1]  # rows strided
    bias = torch.randn(n, generator=gen)
    a_rows = torch.randn(m, k + 5, generator=gen)[:, 2 : k + 2]  # a strided slice
    a_cols = torch.randn(k, m, generator=gen).t()  # a transposed view
    for a in (a_rows, a_cols):
        for with_bias in (None, bias):
            out = torch.full((m, n + 4), 7.0)[:, :n]  # written in place, rows strided
            cpu_fused._gemm(a, b, out, with_bias)
            want = a @ b + (0 if with_bias is None else with_bias)
            torch.testing.assert_close(out, want, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize(
    "length,threads,d_state,bias,strided",
    [(1, 1, 8, False, False), (45, 2, 8, False, False), (70, 3, 8, False, False),
     (67, 3, 16, True, True), (5, 2, 32, True, False)],
)  # fmt: skip
def test_layer_with_fused_body_equals_the_torch_stages(
    monkeypatch, length, threads, d_state, bias, strided
):
    # the whole layer (in_proj .. out_proj, one node) against the PyTorch stages: output,
    # final state and the gradient of the input, the initial state and every parameter;
    # projections with biases, an input read through strides (not a contiguous tensor)
    cpu_fused = _fused(monkeypatch, threads)
    from mambakit.ssm import cpu_kernel

    monkeypatch.setattr(cpu_kernel, "_MIN_PARALLEL_UPDATES", 0)
    monkeypatch.setattr(cpu_kernel, "_CHECKPOINT_STEPS", 16)  # several checkpoints
    torch.manual_seed(0)
    layer = Mamba2(16, d_state=d_state, headdim=8, ngroups=2, chunk_size=8, bias=bias)
    x = torch.randn(2, length, 16, requires_grad=True)
    h0 = torch.randn(2, layer.n_heads, 8, d_state, requires_grad=True)
    wanted = [x, h0, *layer.parameters()]

    def run():
        x_in = x.transpose(1, 2).contiguous().transpose(1, 2) if strided else x
        y, state = layer(x_in, initial_state=h0, return_final_state=True)
        loss = (
            y.square().sum() + (state * torch.linspace(-1, 1, state.numel()).view_as(state)).sum()
        )
        return y, state, torch.autograd.grad(loss, wanted)

    y_fast, s_fast, grads_fast = run()
    monkeypatch.setattr(cpu_fused, "supports", lambda *t: False)  # the PyTorch stages
    y_ref, s_ref, grads_ref = run()
    torch.testing.assert_close(y_fast, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(s_fast, s_ref, atol=1e-5, rtol=1e-5)
    names = ["x", "h0", *(name for name, _ in layer.named_parameters())]
    for name, g, r in zip(names, grads_fast, grads_ref, strict=True):
        torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4, msg=name)


def test_fused_body_runs_without_grad_and_keeps_no_checkpoints(monkeypatch):
    cpu_fused = _fused(monkeypatch)
    from mambakit.ssm import cpu_kernel

    kept = []
    real = cpu_kernel._scan_forward

    def spy(kind, inputs, keep_checkpoints, *out):
        kept.append(keep_checkpoints)
        return real(kind, inputs, keep_checkpoints, *out)

    monkeypatch.setattr(cpu_kernel, "_scan_forward", spy)
    layer = Mamba2(16, d_state=8, headdim=8)
    x, x2 = torch.randn(1, 11, 16), torch.randn(1, 11, 16)
    with torch.no_grad():  # the second call reuses the body's scratch buffers
        y, y2 = layer(x), layer(x2)
    monkeypatch.setattr(cpu_fused, "supports", lambda *t: False)
    with torch.no_grad():  # and the first output is still its own
        torch.testing.assert_close(y, layer(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(y2, layer(x2), atol=1e-5, rtol=1e-5)
    assert kept[:2] == [False, False]


def test_layer_falls_back_to_torch_stages_when_the_build_fails(monkeypatch):
    from mambakit.ssm import cpu_fused

    monkeypatch.setattr(cpu_fused._KERNELS, "lib", None)
    monkeypatch.setattr(cpu_fused._KERNELS, "failed", "cpu_fused: no C compiler (test)")
    assert not cpu_fused.available() and "test" in cpu_fused.unavailable_reason()
    torch.manual_seed(0)
    layer = Mamba2(16, d_state=8, headdim=8, backend="torch")
    x = torch.randn(1, 9, 16)
    y_fallback = Mamba2(16, d_state=8, headdim=8)
    y_fallback.load_state_dict(layer.state_dict())
    torch.testing.assert_close(y_fallback(x), layer(x), atol=1e-5, rtol=1e-5)


def test_fused_layer_skips_the_gradients_nobody_asks_for(monkeypatch):
    # a first layer: its input needs no gradient, and frozen projections need none either;
    # what is asked for still equals the PyTorch stages
    cpu_fused = _fused(monkeypatch, 2)
    torch.manual_seed(0)
    layer = Mamba2(16, d_state=16, headdim=8)
    layer.in_proj.weight.requires_grad_(False)
    layer.out_proj.weight.requires_grad_(False)
    x = torch.randn(1, 23, 16)
    wanted = [p for p in layer.parameters() if p.requires_grad]
    fast = torch.autograd.grad(layer(x).square().sum(), wanted)
    monkeypatch.setattr(cpu_fused, "supports", lambda *t: False)
    reference = torch.autograd.grad(layer(x).square().sum(), wanted)
    for g, r in zip(fast, reference, strict=True):
        torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)


def test_release_scratch_frees_the_buffers_and_the_layer_runs_again(monkeypatch):
    cpu_fused = _fused(monkeypatch)
    torch.manual_seed(0)
    layer = Mamba2(16, d_state=8, headdim=8, chunk_size=8)
    x = torch.randn(1, 40, 16, requires_grad=True)
    first = torch.autograd.grad(layer(x).square().sum(), x)[0]
    held = cpu_fused.release_scratch()
    assert held >= 40 * 16 * 4  # at least the input projection's output was kept
    assert cpu_fused.release_scratch() == 0  # nothing left
    torch.testing.assert_close(torch.autograd.grad(layer(x).square().sum(), x)[0], first)
