from pathlib import Path

import pytest
import torch

from mambakit.drums.config import DrumConfig
from mambakit.drums.model import DrumDiffusionModel


def _inputs(cfg, b=2):
    T = cfg.n_samples
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(b, 1, T, generator=g),
        torch.randn(b, 1, T, generator=g),
        torch.rand(b, 1, T, generator=g),
        torch.tensor([10.0, 500.0][:b]),
        torch.rand(b, 5, generator=g),
        torch.tensor([0, 5][:b]),
        torch.tensor([2, 3][:b]),
        torch.tensor([0, len(cfg.tags)][:b]),
    )


@pytest.mark.parametrize("ablation", [{}, {"no_sine": True}, {"no_adsr": True}, {"full_res": True}])
def test_shapes_tiny_and_ablations(ablation):
    cfg = DrumConfig.tiny().with_(seconds=0.01, **ablation)
    model = DrumDiffusionModel(cfg)
    x0, eps = model(*_inputs(cfg))
    assert x0.shape == eps.shape == (2, 1, cfg.n_samples)
    assert torch.isfinite(x0).all()


def test_presets_build():
    for cfg in (DrumConfig.small(), DrumConfig.base()):
        assert sum(p.numel() for p in DrumDiffusionModel(cfg).parameters()) > 0


def test_low_gates_skip_compute():
    cfg = DrumConfig.tiny().with_(seconds=0.01)
    model = DrumDiffusionModel(cfg).eval()
    calls = {i: 0 for i in range(cfg.n_bands)}
    for i, band in enumerate(model.bands):
        band.register_forward_hook(lambda m, a, o, i=i: calls.__setitem__(i, calls[i] + 1))
    with torch.no_grad():
        model.gates.weight.zero_()
        bias = torch.full((cfg.n_bands + 1,), 5.0)
        bias[2] = -5.0  # band index 1 closed
        model.gates.bias.copy_(bias)
        model(*_inputs(cfg))
    assert calls[1] == 0
    assert all(calls[i] == 1 for i in calls if i != 1)


@pytest.mark.parametrize(
    "c_in,c_out,kernel,dilation,padding,bias,taps",
    [(8, 8, 3, 1, 1, True, False), (8, 8, 3, 8, 8, True, False), (3, 16, 5, 1, 2, True, True),
     (16, 8, 1, 1, 0, True, False), (8, 2, 1, 1, 0, False, False), (4, 6, 3, 2, 0, True, False),
     (3, 5, 4, 1, 2, True, True)],
)  # fmt: skip
def test_fast_conv1d_equals_the_module_in_values_and_gradients(
    c_in, c_out, kernel, dilation, padding, bias, taps
):
    from mambakit.drums.model import conv1d, conv_taps

    torch.manual_seed(kernel * dilation)
    conv = torch.nn.Conv1d(c_in, c_out, kernel, padding=padding, dilation=dilation, bias=bias)
    conv = conv.double()
    x = torch.randn(2, c_in, 37, dtype=torch.float64, requires_grad=True)
    windows = conv_taps(x.detach(), kernel, padding, dilation) if taps else None
    out, ref = conv1d(conv, x, windows), conv(x)
    torch.testing.assert_close(out, ref)
    w = torch.randn(ref.shape, dtype=torch.float64)
    leaves = [x, *conv.parameters()]
    for a, b in zip(*(torch.autograd.grad((y * w).sum(), leaves) for y in (out, ref))):
        torch.testing.assert_close(a, b)


def _reference_paths(monkeypatch):
    """Point the model at the plain-op twins of its fast paths (the C band ends, CNN
    blocks, gated mix and head, convolutions, Gaussian resampling, band split and merge)."""
    from mambakit.drums import model as drum_model
    from mambakit.dsp import LogBands

    monkeypatch.setattr(drum_model, "conv1d", lambda conv, x, taps=None: conv(x))
    monkeypatch.setattr(drum_model, "band_encode", drum_model.band_encode_ref)
    monkeypatch.setattr(drum_model, "band_decode", drum_model.band_decode_ref)
    monkeypatch.setattr(drum_model, "cnn_block", drum_model.cnn_block_ref)
    monkeypatch.setattr(drum_model, "head", drum_model.head_ref)
    monkeypatch.setattr(drum_model, "gated_mix", drum_model.gated_mix_ref)
    monkeypatch.setattr(drum_model, "smooth_upsample", drum_model.smooth_upsample_ref)
    monkeypatch.setattr(drum_model, "smooth_downsample", drum_model.smooth_downsample_ref)
    monkeypatch.setattr(LogBands, "split", lambda self, x: self._split(x))
    monkeypatch.setattr(LogBands, "merge", lambda self, ps: self._merge(ps, ps[0].shape[-1]))


SHIPPED = Path(__file__).resolve().parents[2] / "src" / "mambakit" / "weights" / "gm-drums"


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="no shipped model")
def test_the_shipped_model_computes_the_same_on_its_fast_paths(monkeypatch):
    # the training-speed paths must not change what the shipped weights compute: outputs
    # and every parameter gradient equal to the reference ops' on one training batch
    model = DrumDiffusionModel.from_pretrained(SHIPPED).train()
    cfg = model.config
    args = _inputs(cfg)
    g = torch.Generator().manual_seed(1)
    extra = {"gate": torch.rand(2, 1, cfg.n_samples, generator=g),
             "excitation": torch.randn(2, 1, cfg.n_samples, generator=g)}  # fmt: skip

    def run():
        x0, eps = model(*args, **extra)
        grads = torch.autograd.grad(x0.square().mean() + eps.square().mean(), params)
        return x0, eps, grads

    params = list(model.parameters())
    fast = run()
    with monkeypatch.context() as patch:
        _reference_paths(patch)
        ref = run()
    for a, b in zip(fast[:2], ref[:2]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    scale = max(float(r.abs().max()) for r in ref[2])
    worst = max(float((a - b).abs().max()) for a, b in zip(fast[2], ref[2]))
    assert worst < 1e-4 * scale
