"""Chunked scans against their sequential reference twins (values and gradients)."""

import pytest
import torch

from mambakit.ssm import ops, selective_scan, selective_scan_ref, ssd_scan, ssd_scan_ref


def _ssd_inputs(b=2, length=37, h=4, p=8, g=2, n=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, length, h, p, generator=gen)
    dt = torch.rand(b, length, h, generator=gen) * 0.5 + 0.01
    A = -torch.rand(h, generator=gen) * 3 - 0.1
    B = torch.randn(b, length, g, n, generator=gen)
    C = torch.randn(b, length, g, n, generator=gen)
    D = torch.randn(h, generator=gen)
    h0 = torch.randn(b, h, p, n, generator=gen)
    return [t.requires_grad_() for t in (x, dt, A, B, C, D, h0)]


def _values_and_grads(scan, inputs):
    """``(y, final_state, *gradients of every input)`` of a random linear loss."""
    y, s = scan(*inputs)
    gen = torch.Generator().manual_seed(1)
    w_y, w_s = torch.randn(y.shape, generator=gen), torch.randn(s.shape, generator=gen)
    inputs = [t for t in inputs if t is not None]
    return (y, s, *torch.autograd.grad((y * w_y).sum() + (s * w_s).sum(), inputs))


def _assert_scans_agree(scan, reference, inputs, names, value_tol=1e-4, grad_tol=1e-3):
    """``scan`` and ``reference`` (each ``(*inputs) -> (y, final_state)``) agree in values
    within ``value_tol`` and in the gradient of every input in ``names`` within ``grad_tol``."""
    got, want = _values_and_grads(scan, inputs), _values_and_grads(reference, inputs)
    tols = [value_tol, value_tol] + [grad_tol] * (len(got) - 2)
    for name, g, w, tol in zip(["y", "state", *names], got, want, tols, strict=True):
        torch.testing.assert_close(g, w, atol=tol, rtol=tol, msg=name)


SSD_ARGS = ["x", "dt", "A", "B", "C", "D", "h0"]
SELECTIVE_ARGS = ["u", "delta", "A", "B", "C", "D", "h0"]


@pytest.mark.parametrize("length,chunk,groups", [(37, 8, 2), (16, 16, 1), (5, 64, 4), (1, 4, 1)])
def test_ssd_scan_matches_reference_values_and_grads(length, chunk, groups):
    def chunked(x, dt, A, B, C, D, h0):
        return ssd_scan(x, dt, A, B, C, D, chunk, h0, return_final_state=True, backend="torch")

    inputs = _ssd_inputs(length=length, g=groups)
    _assert_scans_agree(chunked, _ssd_ref, inputs, SSD_ARGS)


def _ssd_ref(x, dt, A, B, C, D, h0):
    return ssd_scan_ref(x, dt, A, B, C, D, h0, return_final_state=True)


@pytest.mark.parametrize("length,chunk,groups", [(37, 4, 2), (64, 8, 1), (3, 8, 4)])
def test_segsum_ssd_scan_matches_reference_values_and_grads(monkeypatch, length, chunk, groups):
    # The segment-sum state passing that torch.compile traces, run eagerly.
    monkeypatch.setattr(ops, "_RECURRENCE_BLOCK", 4)  # 10 chunks: two levels and padding

    def segsum(x, dt, A, B, C, D, h0):
        return ops._ssd_scan_chunked(x, dt, A, B, C, chunk, h0, segsum=True)

    inputs = _ssd_inputs(length=length, g=groups)
    inputs[5] = None  # no D: _ssd_scan_chunked leaves the skip term to its caller
    _assert_scans_agree(segsum, _ssd_ref, inputs, [n for n in SSD_ARGS if n != "D"])


def test_ssd_scan_segments_carry_state():
    x, dt, A, B, C, D, _ = (t.detach() for t in _ssd_inputs(length=50))
    y_full = ssd_scan(x, dt, A, B, C, D, chunk_size=16)
    y1, s1 = ssd_scan(x[:, :23], dt[:, :23], A, B[:, :23], C[:, :23], D, 16, None, True)
    y2 = ssd_scan(x[:, 23:], dt[:, 23:], A, B[:, 23:], C[:, 23:], D, 16, s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y_full, atol=1e-5, rtol=1e-5)


def _selective_inputs(b=2, length=45, d=6, n=4, seed=0, dt_scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(b, length, d, generator=gen)
    delta = (torch.rand(b, length, d, generator=gen) + 0.01) * dt_scale
    A = -torch.rand(d, n, generator=gen) * 5 - 0.1
    B = torch.randn(b, length, n, generator=gen)
    C = torch.randn(b, length, n, generator=gen)
    D = torch.randn(d, generator=gen)
    h0 = torch.randn(b, d, n, generator=gen)
    return [t.requires_grad_() for t in (u, delta, A, B, C, D, h0)]


@pytest.mark.parametrize("length,chunk,dt_scale", [(45, 8, 1.0), (45, 64, 1.0), (30, 16, 20.0)])
def test_selective_scan_matches_reference_values_and_grads(length, chunk, dt_scale):
    # dt_scale=20 makes per-step decays of up to ~100 nats: the chunk must shrink to stay exact.
    inputs = _selective_inputs(length=length, dt_scale=dt_scale)

    def chunked(*args):
        return selective_scan(*args, True, chunk_size=chunk, backend="torch")

    def ref(*args):
        return selective_scan_ref(*args, True)

    _assert_scans_agree(chunked, ref, inputs, SELECTIVE_ARGS)


def test_scans_reject_bad_shapes():
    x, dt, A, B, C, D, _ = (t.detach() for t in _ssd_inputs())
    with pytest.raises(ValueError, match="A must be"):
        ssd_scan(x, dt, A[:2], B, C)
    with pytest.raises(ValueError, match="divisible by ngroups"):
        ssd_scan(x, dt, A, B.repeat(1, 1, 3, 1)[:, :, :3], C.repeat(1, 1, 3, 1)[:, :, :3])


def test_backend_mamba_ssm_missing_is_clear_error(monkeypatch):
    monkeypatch.setattr(ops, "_mamba_ssm_available", lambda: False)
    x, dt, A, B, C, D, _ = (t.detach() for t in _ssd_inputs())
    with pytest.raises(ImportError, match=r"mambakit\[cuda\]"):
        ssd_scan(x, dt, A, B, C, backend="mamba_ssm")
    u, delta, A1, B1, C1, D1, _ = (t.detach() for t in _selective_inputs())
    with pytest.raises(ImportError, match=r"mambakit\[cuda\]"):
        selective_scan(u, delta, A1, B1, C1, backend="mamba_ssm")
    with pytest.raises(ValueError, match="unknown backend"):
        ssd_scan(x, dt, A, B, C, backend="triton")


def test_auto_backend_on_cpu_uses_torch_and_says_so(caplog, monkeypatch):
    monkeypatch.setattr(ops, "_warned_fallback", set())
    x = torch.zeros(1)
    with caplog.at_level("INFO", logger="mambakit.ssm.ops"):
        assert ops.resolve_backend("auto", x, "ssd_scan") == "torch"
        assert ops.resolve_backend("auto", x, "ssd_scan") == "torch"
    assert sum("pure-PyTorch" in r.message for r in caplog.records) == 1


def test_import_does_not_pull_mamba_ssm_or_triton():
    import subprocess
    import sys

    code = "import sys, mambakit.ssm; print('mamba_ssm' in sys.modules, 'triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


cuda_and_kernels = pytest.mark.skipif(
    not (torch.cuda.is_available() and ops._mamba_ssm_available()),
    reason="needs CUDA and mamba_ssm",
)


@cuda_and_kernels
def test_ssd_scan_mamba_ssm_parity_cuda():
    x, dt, A, B, C, D, h0 = (t.detach().cuda() for t in _ssd_inputs(length=100))
    y_k, s_k = ssd_scan(x, dt, A, B, C, D, 32, h0, True, backend="mamba_ssm")
    y_t, s_t = ssd_scan(x, dt, A, B, C, D, 32, h0, True, backend="torch")
    torch.testing.assert_close(y_k.float(), y_t, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(s_k.float(), s_t, atol=2e-3, rtol=2e-3)


@cuda_and_kernels
def test_selective_scan_mamba_ssm_parity_cuda():
    u, delta, A, B, C, D, _ = (t.detach().cuda() for t in _selective_inputs(length=100))
    y_k, s_k = selective_scan(u, delta, A, B, C, D, None, True, backend="mamba_ssm")
    y_t, s_t = selective_scan(u, delta, A, B, C, D, None, True, backend="torch")
    torch.testing.assert_close(y_k.float(), y_t, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(s_k.float(), s_t, atol=2e-3, rtol=2e-3)


def _kernel():
    from mambakit.ssm import cpu_kernel

    if not cpu_kernel.available():
        pytest.skip(f"no C kernel here: {cpu_kernel.unavailable_reason()}")
    return cpu_kernel


# (length, groups, threads, checkpoint steps): several chunks of checkpoints with a short
# last one; uneven channel ranges over 3 threads; one step.
KERNEL_CASES = [(130, 2, 1, 64), (37, 1, 3, 5), (1, 4, 1, 64), (20, 4, 3, 64)]


def _split_kernel(monkeypatch, threads: int, checkpoint: int) -> None:
    """The C kernel split over ``threads`` channel ranges whatever the length, checkpointing
    every ``checkpoint`` steps."""
    cpu_kernel = _kernel()
    monkeypatch.setattr(cpu_kernel, "_MIN_PARALLEL_UPDATES", 0)
    monkeypatch.setattr(cpu_kernel, "_CHECKPOINT_STEPS", checkpoint)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)


@pytest.mark.parametrize("length,groups,threads,checkpoint", KERNEL_CASES)
def test_ssd_cpu_kernel_values_and_grads_match_reference(
    monkeypatch, length, groups, threads, checkpoint
):
    _split_kernel(monkeypatch, threads, checkpoint)
    inputs = _ssd_inputs(length=length, h=4, p=8, g=groups, n=16)  # 32 channels

    def fast(x, dt, A, B, C, D, h0):
        return ssd_scan(x, dt, A, B, C, D, 8, h0, True, backend="cpu_kernel")

    _assert_scans_agree(fast, _ssd_ref, inputs, SSD_ARGS, grad_tol=1e-4)


@pytest.mark.parametrize("length,groups,threads,checkpoint", KERNEL_CASES)
def test_selective_cpu_kernel_values_and_grads_match_reference(
    monkeypatch, length, groups, threads, checkpoint
):
    _split_kernel(monkeypatch, threads, checkpoint)
    # 30 channels (3 uneven ranges), decays of up to ~15 nats per step
    inputs = _selective_inputs(length=length, d=30, n=4 * groups, dt_scale=3.0)

    def fast(*args):
        return selective_scan(*args, True, backend="cpu_kernel")

    def ref(*args):
        return selective_scan_ref(*args, True)

    _assert_scans_agree(fast, ref, inputs, SELECTIVE_ARGS, grad_tol=1e-4)


def test_auto_runs_the_cpu_kernels_for_training_and_inference_but_not_when_tracing(monkeypatch):
    cpu_kernel = _kernel()
    calls = []
    real = cpu_kernel.fused_scan
    monkeypatch.setattr(
        cpu_kernel, "fused_scan", lambda kind, *a: calls.append(kind) or real(kind, *a)
    )
    u, delta, A, B, C, _, _ = _selective_inputs(length=23)
    x, dt, A2, B2, C2, _, _ = _ssd_inputs(length=23)
    with torch.no_grad():
        selective_scan(u, delta, A, B, C)
    # no D and no initial state, a gradient for some inputs only: the C backward
    for scan, ref, inputs in [
        (selective_scan, selective_scan_ref, (u, delta.detach(), A, B, C)),
        (ssd_scan, ssd_scan_ref, (x, dt, A2.detach(), B2, C2)),
    ]:
        y, y_ref = scan(*inputs), ref(*inputs)
        torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
        wanted = [t for t in inputs if t.requires_grad]
        grads = torch.autograd.grad(y.square().sum(), wanted)
        for g, g_ref in zip(grads, torch.autograd.grad(y_ref.square().sum(), wanted), strict=True):
            torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-4)
    assert calls == ["selective_scan", "selective_scan", "ssd_scan"]
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    selective_scan(u, delta, A, B, C)  # traced by torch.compile: the torch path
    assert len(calls) == 3


def test_ssd_cpu_kernel_copies_strided_inputs():
    _kernel()
    x, dt, A, B, C, _, _ = (t.detach() for t in _ssd_inputs(length=20))
    y_auto = ssd_scan(x[:, :, :, 1:5], dt, A, B, C)  # strided input: auto copies and runs it
    torch.testing.assert_close(
        y_auto, ssd_scan_ref(x[:, :, :, 1:5], dt, A, B, C), atol=1e-5, rtol=1e-5
    )


def test_ssd_cpu_kernel_reads_row_strided_inputs_in_place(monkeypatch):
    # x, B, C as channel slices of one [b, L, F] tensor (the layer's conv output): the
    # kernel reads them without a copy, and the gradients match the reference
    _split_kernel(monkeypatch, threads=2, checkpoint=8)
    x, dt, A, B, C, D, h0 = (t.detach() for t in _ssd_inputs(length=29, h=4, p=8, g=2, n=4))
    b, length = x.shape[:2]
    wide = torch.cat([x.flatten(2), B.flatten(2), C.flatten(2), torch.zeros(b, length, 3)], -1)
    wide.requires_grad_()

    def slices(wide):
        return (wide[..., :32].unflatten(-1, (4, 8)), wide[..., 32:40].unflatten(-1, (2, 4)),
                wide[..., 40:48].unflatten(-1, (2, 4)))  # fmt: skip

    from mambakit.ssm import cpu_kernel

    assert cpu_kernel._prep_rows(slices(wide)[0]).data_ptr() == wide.data_ptr()  # no copy

    def fast(wide, dt, A, D, h0):
        xs, Bs, Cs = slices(wide)
        return ssd_scan(xs, dt, A, Bs, Cs, D, 8, h0, True, backend="cpu_kernel")

    def ref(wide, dt, A, D, h0):
        xs, Bs, Cs = slices(wide)
        return _ssd_ref(xs, dt, A, Bs, Cs, D, h0)

    inputs = [wide, *(t.requires_grad_() for t in (dt, A, D, h0))]
    _assert_scans_agree(fast, ref, inputs, ["x|B|C", "dt", "A", "D", "h0"], grad_tol=1e-4)


@pytest.mark.parametrize(
    "length,groups,threads,checkpoint", [(37, 2, 1, 5), (70, 1, 2, 64), (1, 4, 2, 8)]
)
def test_ssd_cpu_kernel_channel_tiles_match_reference(
    monkeypatch, length, groups, threads, checkpoint
):
    # heads of 16 channels: the forward runs on tiles of 16 channels (state k-major)
    _split_kernel(monkeypatch, threads, checkpoint)
    inputs = _ssd_inputs(length=length, h=4, p=16, g=groups, n=14)  # 64 channels

    def fast(x, dt, A, B, C, D, h0):
        return ssd_scan(x, dt, A, B, C, D, 8, h0, True, backend="cpu_kernel")

    _assert_scans_agree(fast, _ssd_ref, inputs, SSD_ARGS, grad_tol=1e-4)


@pytest.mark.parametrize("length,threads,checkpoint", [(130, 1, 64), (45, 3, 7), (2, 2, 64)])
def test_ssd_cpu_kernel_backward_over_state_blocks_matches_reference(
    monkeypatch, length, threads, checkpoint
):
    # d_state 48: the backward of four channels runs on three blocks of 16 state entries,
    # summing dx and dL/d(decay) across them; 3 threads split 40 channels unevenly
    _split_kernel(monkeypatch, threads, checkpoint)
    inputs = _ssd_inputs(length=length, h=5, p=8, g=1, n=48)

    def fast(x, dt, A, B, C, D, h0):
        return ssd_scan(x, dt, A, B, C, D, 8, h0, True, backend="cpu_kernel")

    _assert_scans_agree(fast, _ssd_ref, inputs, SSD_ARGS, grad_tol=1e-4)
