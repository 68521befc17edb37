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
