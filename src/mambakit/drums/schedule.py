"""Dual diffusion schedule of the seed (equations 2 and 3).

Noise strength ``beta_t`` follows a cosine curve (``beta_0 = 0``, ``beta_T = 1`` exactly);
the sine-anchor strength ``alpha_t`` is linear in t (``alpha_0 = 0``, ``alpha_T = alpha_max``).

Equation 2: ``x_t = x_clean + noise * beta_t + sine * alpha_t * mask``.
Equation 3: ``ADSR_t = ADSR * beta_t + (1 - beta_t)``.

``mask`` is ``tonal * envelope``: the anchor is only injected where a pitched sound should
sound (non-tonal sounds such as hats get mask 0). Equation 3 enters the model as an extra
input channel (the envelope curve flattened towards 1 at high noise).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class StructuredDiffusionSchedule:
    """Diffusers-style scheduler kept separate from the model.

    Timesteps are integers in ``[0, num_train_timesteps]``; t = 0 is clean data.
    """

    def __init__(self, num_train_timesteps: int = 1000, alpha_max: float = 1.0, s: float = 0.008):
        if num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be >= 1, got {num_train_timesteps}")
        self.num_train_timesteps = num_train_timesteps
        self.alpha_max = alpha_max
        t = torch.arange(num_train_timesteps + 1, dtype=torch.float64) / num_train_timesteps
        # cosine ramp: beta(u) = 1 - cos^2-like curve normalised so endpoints are exact.
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        beta = 1.0 - f / f[0]
        beta = (beta - beta[0]) / (beta[-1] - beta[0])
        self.betas = beta.float()
        self.alphas = (t * alpha_max).float()
        self.timesteps = torch.tensor([num_train_timesteps], dtype=torch.long)

    def _gather(self, table: Tensor, t: Tensor | int, ref: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=torch.long, device=table.device)
        v = table[t].to(device=ref.device, dtype=ref.dtype)
        return v.reshape(v.shape + (1,) * (ref.dim() - v.dim()))

    def beta(self, t: Tensor | int) -> Tensor:
        return self.betas[torch.as_tensor(t, dtype=torch.long)]

    def alpha(self, t: Tensor | int) -> Tensor:
        return self.alphas[torch.as_tensor(t, dtype=torch.long)]

    def add_noise(
        self, x_clean: Tensor, noise: Tensor, sine: Tensor, mask: Tensor, t: Tensor | int
    ) -> Tensor:
        """Equation 2 for x [B, C, T]; t int or [B]."""
        b = self._gather(self.betas, t, x_clean)
        a = self._gather(self.alphas, t, x_clean)
        return x_clean + noise * b + sine * a * mask

    def adsr_at(self, envelope: Tensor, t: Tensor | int) -> Tensor:
        """Equation 3: envelope [B, ..., T] -> ``ADSR * beta_t + (1 - beta_t)``."""
        b = self._gather(self.betas, t, envelope)
        return envelope * b + (1.0 - b)

    def set_timesteps(self, n: int) -> Tensor:
        """Choose `n` descending inference timesteps from T down to (excluding) 0."""
        if n < 1:
            raise ValueError(f"number of steps must be >= 1, got {n}")
        ts = torch.linspace(self.num_train_timesteps, 0, n + 1).round().long()[:-1]
        self.timesteps = ts
        return ts

    def timesteps_from_strength(self, strength: float) -> Tensor:
        """img2img: keep the last ``round(strength * n)`` of the current timesteps."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        k = int(round(strength * len(self.timesteps)))
        return self.timesteps[len(self.timesteps) - k :]

    def prev_timestep(self, t: int) -> int:
        ts = self.timesteps.tolist()
        i = ts.index(int(t))
        return ts[i + 1] if i + 1 < len(ts) else 0

    def step(
        self,
        model_output: tuple[Tensor, Tensor],
        t: int,
        sample: Tensor,
        sine: Tensor,
        mask: Tensor,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
    ) -> Tensor:
        """DDIM-like update: re-noise the predicted x0 to the previous timestep.

        With ``eta = 0`` the predicted noise is reused (deterministic); with ``eta > 0`` a
        fraction of fresh Gaussian noise (drawn from `generator`) is mixed in, keeping unit
        variance: ``eps' = sqrt(1 - eta^2) * eps_hat + eta * z``.
        """
        x0_hat, eps_hat = model_output
        t_prev = self.prev_timestep(t)
        if eta > 0:
            z = torch.randn(sample.shape, generator=generator, dtype=sample.dtype)
            eps_hat = math.sqrt(1 - eta**2) * eps_hat + eta * z.to(sample.device)
        return self.add_noise(x0_hat, eps_hat, sine, mask, t_prev)
