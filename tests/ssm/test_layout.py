"""decode_layout_: a stride change only (same values, same checkpoints), kept by the layers."""

import torch
from torch import nn

from mambakit.ssm import Backbone, Mamba2, decode_layout_


def _column_major(weight: torch.Tensor) -> bool:
    return weight.t().is_contiguous()  # (strides of size-1 dims are meaningless)


def test_values_shapes_and_outputs_are_unchanged():
    torch.manual_seed(0)
    linear = nn.Linear(8, 5)
    x = torch.randn(3, 8)
    before, state_before = linear(x), {k: v.clone() for k, v in linear.state_dict().items()}
    decode_layout_(linear)
    assert _column_major(linear.weight) and linear.weight.shape == (5, 8)
    torch.testing.assert_close(linear(x), before)
    for key, value in linear.state_dict().items():
        assert torch.equal(value, state_before[key])


def test_every_backbone_linear_is_column_major_and_survives_loading():
    for kind in ("transformer", "mamba", "mamba2", "hybrid"):
        model = Backbone(kind, n_layers=2, d_model=16, mlp_ratio=2, headdim=8)
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        assert linears and all(_column_major(m.weight) for m in linears), kind
        fresh = Backbone(kind, n_layers=2, d_model=16, mlp_ratio=2, headdim=8)
        fresh.load_state_dict({k: v.contiguous() for k, v in model.state_dict().items()})
        assert all(_column_major(m.weight) for m in fresh.modules() if isinstance(m, nn.Linear))
        x = torch.randn(1, 5, 16)
        torch.testing.assert_close(fresh(x), model(x))


def test_gradients_and_optimizer_keep_the_layout():
    layer = Mamba2(16, d_state=8, headdim=8)
    opt = torch.optim.AdamW(layer.parameters(), lr=1e-3)
    layer(torch.randn(2, 12, 16)).square().mean().backward()
    assert layer.in_proj.weight.grad.shape == layer.in_proj.weight.shape
    opt.step()
    assert _column_major(layer.in_proj.weight)
