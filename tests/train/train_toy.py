"""A tiny regression model and data for the trainer tests (importable by subprocess scripts)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from mambakit.pretrained import PretrainedMixin
from mambakit.train import TrainConfig


@dataclass(frozen=True)
class ToyConfig:
    d_in: int = 4
    d_hidden: int = 16


class ToyRegressor(nn.Module, PretrainedMixin):
    """Linear -> LayerNorm -> GELU -> Linear, enough to have matrices, biases and a norm."""

    config_class = ToyConfig
    model_type = "toy-regressor"

    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.config = config
        self.inp = nn.Linear(config.d_in, config.d_hidden)
        self.norm = nn.LayerNorm(config.d_hidden)
        self.out = nn.Linear(config.d_hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, d_in] -> [B]
        return self.out(torch.nn.functional.gelu(self.norm(self.inp(x)))).squeeze(-1)


class ToyData(Dataset):
    """y = x . w_true + 0.5: a learnable target with a fixed, seeded input set."""

    def __init__(self, n: int = 64, d_in: int = 4) -> None:
        g = torch.Generator().manual_seed(1234)
        self.x = torch.randn(n, d_in, generator=g)
        w = torch.linspace(-1.0, 1.0, d_in)
        self.y = self.x @ w + 0.5

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


def mse_loss(model: nn.Module, batch: dict, stage: str):
    pred = model(batch["x"])
    loss = torch.nn.functional.mse_loss(pred, batch["y"])
    return loss, {"mse": float(loss.detach())}


def noisy_mse_loss(model: nn.Module, batch: dict, stage: str):
    """Uses the global torch RNG, so exact resume also needs per-step RNG seeding."""
    x = batch["x"] + 0.1 * torch.randn_like(batch["x"])
    return mse_loss(model, {"x": x, "y": batch["y"]}, stage)


def make_model(seed: int = 0) -> ToyRegressor:
    torch.manual_seed(seed)
    return ToyRegressor(ToyConfig())


def script_config(max_steps: int = 40, ckpt_every: int = 10, **overrides) -> TrainConfig:
    """The config of train_toy_script.py, shared so in-process runs can match it."""
    base = dict(
        lr=1e-2,
        warmup_steps=3,
        max_steps=max_steps,
        ckpt_every=ckpt_every,
        batch_size=4,
        progress=False,
    )
    return TrainConfig(**{**base, **overrides})


class TinyGAN(ToyRegressor):
    """The regressor as 'generator' plus a one-unit 'discriminator', for two-optimizer runs."""

    model_type = "toy-gan"

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        self.disc = nn.Linear(1, 1)

    def generator_parameters(self) -> list[nn.Parameter]:
        return [*self.inp.parameters(), *self.norm.parameters(), *self.out.parameters()]


def lsgan_loss(model: TinyGAN, batch: dict, stage: str):
    """Least-squares GAN on the toy targets; calls sub-networks directly, as GAN code does."""
    fake = model(batch["x"]).unsqueeze(-1)
    if stage == "disc":
        real = batch["y"].unsqueeze(-1)
        loss = (model.disc(real) - 1).pow(2).mean() + model.disc(fake.detach()).pow(2).mean()
    else:
        loss = (model.disc(fake) - 1).pow(2).mean()
    return loss, {}
