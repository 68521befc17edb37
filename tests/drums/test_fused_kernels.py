"""The drums model's C kernels (drums/fused.c) against their PyTorch twins: the band paths'
ends and the full-rate CNN blocks, values and every gradient, at odd lengths, short and long
patches and dilations, with and without a gate, on one thread and on uneven batch ranges."""

import pytest
import torch

from mambakit.drums import fused
from mambakit.drums import model as drum_model

pytestmark = pytest.mark.skipif(
    not fused.available(), reason=f"drums kernels not built: {fused.unavailable_reason()}"
)


def _path(patch: int, channels: int = 6, out_channels: int = 5) -> drum_model.BandPath:
    torch.manual_seed(patch)
    path = drum_model.BandPath(patch, channels, out_channels, 4, 1, 7)
    with torch.no_grad():  # the zero-initialised heads would hide their gradients' paths
        for p in path.parameters():
            p.add_(0.1 * torch.randn(p.shape))
    return path


def _ends(path, band, tokens, gate, kernels: bool):
    encode = drum_model.band_encode if kernels else drum_model.band_encode_ref
    decode = drum_model.band_decode if kernels else drum_model.band_decode_ref
    return encode(path, band), decode(path, band, tokens, gate)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("patch,n", [(2, 9), (4, 101), (8, 37), (16, 161), (64, 1000), (32, 33)])
def test_band_ends_equal_their_torch_twins_in_values_and_gradients(
    patch, n, gated, threads, monkeypatch
):
    monkeypatch.setattr(fused, "_MIN_PARALLEL_SAMPLES", 0)  # small inputs split too
    path = _path(patch)
    g = torch.Generator().manual_seed(n)
    batch = 3  # two threads get uneven batch ranges
    band = torch.randn(batch, 3, n, generator=g)
    tokens = torch.randn(batch, 6, -(-n // patch), generator=g, requires_grad=True)
    gate = torch.rand(batch, 1, 1, generator=g, requires_grad=True) if gated else None
    assert drum_model._fused_ends(path, band)
    leaves = [tokens, *path.analysis.parameters(), *path.carrier.parameters(),
              *path.decode.parameters(), *([gate] if gated else [])]  # fmt: skip
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        results = []
        for kernels in (True, False):
            enc, dec = _ends(path, band, tokens, gate, kernels)
            w_enc = torch.randn(enc.shape, generator=torch.Generator().manual_seed(1))
            w_dec = torch.randn(dec.shape, generator=torch.Generator().manual_seed(2))
            loss = (enc * w_enc).sum() + (dec * w_dec).sum()
            results.append((enc, dec, torch.autograd.grad(loss, leaves)))
    finally:
        torch.set_num_threads(previous)
    (enc, dec, grads), (enc_ref, dec_ref, grads_ref) = results
    assert enc.shape == enc_ref.shape and dec.shape == dec_ref.shape
    torch.testing.assert_close(enc, enc_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dec, dec_ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))


@pytest.mark.parametrize("threads", [1, 2])
def test_the_batch_of_three_splits_into_one_range_per_thread(threads, monkeypatch):
    # what the tests here rely on: at 2 threads the kernels run two uneven ranges, as a team
    monkeypatch.setattr(fused, "_MIN_PARALLEL_SAMPLES", 0)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ranges = fused._batch_ranges(3, 3)
    finally:
        torch.set_num_threads(previous)
    assert len(ranges) == threads
    assert ranges[0][0] == 0 and ranges[-1][1] == 3
    assert all(lo < hi for lo, hi in ranges)


def test_the_torch_twins_run_where_the_kernels_do_not_apply():
    path = _path(4)
    band = torch.randn(2, 3, 20, requires_grad=True)  # a band that needs its own gradient
    assert not drum_model._fused_ends(path, band)
    assert not drum_model._fused_ends(path, band.detach().double())
    assert not drum_model._fused_ends(_path(1), band.detach())
    tokens = torch.randn(2, 6, 5)
    torch.testing.assert_close(
        drum_model.band_decode(path, band, tokens, None),
        drum_model.band_decode_ref(path, band, tokens, None),
    )
    band.sum().backward()  # the twin carried the band's gradient
    assert band.grad is not None


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("channels,n,dilation", [(8, 37, 8), (8, 300, 1), (6, 513, 4), (3, 5, 2)])
def test_cnn_block_equals_its_torch_twin_in_values_and_gradients(
    channels, n, dilation, threads, monkeypatch
):
    monkeypatch.setattr(fused, "_MIN_PARALLEL_SAMPLES", 0)
    torch.manual_seed(n)
    conv = torch.nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
    film = drum_model.FiLM(5, channels)
    with torch.no_grad():  # a FiLM away from the identity
        for p in film.parameters():
            p.add_(0.2 * torch.randn(p.shape))
    y = torch.randn(3, channels, n, requires_grad=True)
    cond = torch.randn(3, 5, requires_grad=True)
    leaves = [y, cond, *conv.parameters(), *film.parameters()]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        results = []
        for block in (drum_model.cnn_block, drum_model.cnn_block_ref):
            out = block(y, conv, film, cond)
            w = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
            results.append((out, torch.autograd.grad((out * w).sum(), leaves)))
    finally:
        torch.set_num_threads(previous)
    (out, grads), (out_ref, grads_ref) = results
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("channels,n", [(8, 300), (6, 37), (8, 5)])
def test_head_equals_its_torch_twin_in_values_and_gradients(channels, n, threads, monkeypatch):
    monkeypatch.setattr(fused, "_MIN_PARALLEL_SAMPLES", 0)
    torch.manual_seed(n)
    layers = torch.nn.Sequential(
        torch.nn.Conv1d(channels, channels, 3, padding=1),
        torch.nn.SiLU(),
        torch.nn.Conv1d(channels, 2, 1),
    )
    x = torch.randn(3, channels, n, requires_grad=True)
    leaves = [x, *layers.parameters()]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        results = []
        for head in (drum_model.head, drum_model.head_ref):
            out = head(layers, x)
            w = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
            results.append((out, torch.autograd.grad((out * w).sum(), leaves)))
    finally:
        torch.set_num_threads(previous)
    (out, grads), (out_ref, grads_ref) = results
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "factor,n_tok,n", [(64, 11, 700), (8, 13, 101), (2, 3, 5), (4, 2, 8), (64, 690, 44100)]
)
def test_gaussian_resampling_by_the_kernels_equals_its_reference(
    factor, n_tok, n, threads, monkeypatch
):
    monkeypatch.setattr(fused, "_MIN_PARALLEL_SAMPLES", 0)
    gen = torch.Generator().manual_seed(n)
    tokens = torch.randn(2, 3, n_tok, generator=gen, requires_grad=True)
    x = torch.randn(2, 3, n, generator=gen, requires_grad=True)
    assert drum_model._fused_resampling(x, factor, drum_model._gaussian_reach(factor, 1.0))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        pairs = [
            (drum_model.smooth_upsample, drum_model.smooth_upsample_ref, tokens, (factor, n)),
            (drum_model.smooth_downsample, drum_model.smooth_downsample_ref, x, (factor,)),
        ]
        for fast_op, ref_op, inp, extra in pairs:
            fast, ref = fast_op(inp, *extra), ref_op(inp, *extra)
            torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)
            w = torch.randn(fast.shape, generator=gen)
            grad, grad_ref = (torch.autograd.grad((t * w).sum(), inp)[0] for t in (fast, ref))
            torch.testing.assert_close(grad, grad_ref, rtol=1e-4, atol=1e-5)
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("threads", [1, 2])
def test_gated_mix_equals_lerp_in_values_and_gradients(threads, monkeypatch):
    monkeypatch.setattr(fused, "_MIN_PARALLEL_SAMPLES", 0)
    gen = torch.Generator().manual_seed(0)
    h, y = (torch.randn(3, 4, 4099, generator=gen, requires_grad=True) for _ in range(2))
    gate = torch.rand(3, generator=gen, requires_grad=True)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        results = []
        for mix in (drum_model.gated_mix, drum_model.gated_mix_ref):
            out = mix(h, y, gate)
            w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
            results.append((out, torch.autograd.grad((out * w).sum(), [h, y, gate])))
    finally:
        torch.set_num_threads(previous)
    (out, grads), (out_ref, grads_ref) = results
    torch.testing.assert_close(out, out_ref)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))
