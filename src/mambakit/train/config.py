"""Training configuration and the learning-rate schedule (pure functions of the step)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

Precision = Literal["auto", "fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything the generic :class:`~mambakit.train.Trainer` needs besides model and data.

    Attributes:
        lr: peak learning rate of AdamW, reached at the end of warmup.
        weight_decay: decoupled weight decay for matrices; norms, biases and every
            1-D parameter get none (decaying a gain or a bias only shrinks the model).
        betas: AdamW ``(beta1, beta2)``.
        warmup_steps: linear warmup length in optimizer steps.
        max_steps: number of optimizer steps to train for; ``None``: as many as
            ``max_minutes`` allows (then the learning rate stays constant after warmup).
        max_minutes: wall-clock budget; training stops at whichever of ``max_steps`` and
            ``max_minutes`` comes first and then writes a final checkpoint. ``None``: no budget.
        min_lr_ratio: the cosine decays from ``lr`` to ``lr * min_lr_ratio`` at ``max_steps``.
        grad_clip: max global L2 norm of the gradients per optimizer (``None`` or 0: off).
        grad_accum: micro-batches per optimizer step. ``batch_size`` is the micro-batch,
            so the effective batch is ``batch_size * grad_accum * world_size``.
        batch_size: samples per micro-batch when ``train_data`` is a Dataset.
        ema_decay: keep an exponential moving average of the weights with this decay
            (e.g. 0.999); the saved ``model.safetensors`` then holds the EMA weights.
        precision: ``"auto"`` = bf16 autocast on CUDA, fp32 elsewhere; or force
            ``"fp32"``, ``"bf16"`` or ``"fp16"`` (fp16 uses a gradient scaler).
        log_every: write a metrics line every this many steps (and at the last step).
        ckpt_every: write a checkpoint every this many steps (and always at the end).
        seed: seeds model-independent randomness: batch sampling and the per-step
            Python / NumPy / torch RNGs are all derived from ``(seed, step, rank)``.
        resume: continue from ``out_dir/trainer_state.pt`` when it exists.
        device: ``None`` = CPU, ``"auto"`` = CUDA if available, else a torch device string.
            Under torchrun on CUDA each rank uses ``cuda:LOCAL_RANK``.
        num_workers: DataLoader worker processes that prepare batches ahead of the loop.
        progress: show a tqdm progress bar (rank 0 only).
    """

    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100
    max_steps: int | None = 1000
    max_minutes: float | None = None
    min_lr_ratio: float = 0.1
    grad_clip: float | None = 1.0
    grad_accum: int = 1
    batch_size: int = 8
    ema_decay: float | None = None
    precision: Precision = "auto"
    log_every: int = 10
    ckpt_every: int = 500
    seed: int = 0
    resume: bool = True
    device: str | None = None
    num_workers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.max_steps is None and self.max_minutes is None:
            raise ValueError("TrainConfig needs max_steps, max_minutes or both")
        # (field, test of its value, what it must be); a None budget is checked above
        rules: tuple[tuple[str, Any, str], ...] = (
            ("max_steps", lambda v: v is None or v >= 1, ">= 1"),
            ("max_minutes", lambda v: v is None or v >= 0, ">= 0"),
            ("grad_accum", lambda v: v >= 1, ">= 1"),
            ("batch_size", lambda v: v >= 1, ">= 1"),
            ("warmup_steps", lambda v: v >= 0, ">= 0"),
            ("min_lr_ratio", lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
            ("ema_decay", lambda v: v is None or 0.0 < v < 1.0, "in (0, 1)"),
            ("precision", lambda v: v in ("auto", "fp32", "bf16", "fp16"), "auto|fp32|bf16|fp16"),
            ("log_every", lambda v: v >= 1, ">= 1"),
            ("ckpt_every", lambda v: v >= 1, ">= 1"),
        )
        for name, ok, must in rules:
            value = getattr(self, name)
            if not ok(value):
                raise ValueError(f"TrainConfig.{name} must be {must}, got {value!r}")

    @property
    def time_only(self) -> bool:
        """The run is budgeted by wall-clock minutes alone (no step count)."""
        return self.max_steps is None

    @classmethod
    def from_budget(
        cls,
        steps: int | None = None,
        minutes: float | None = None,
        *,
        warmup_divisor: int = 10,
        max_warmup: int = 100,
        time_only_warmup: int | None = None,
        **fields: Any,
    ) -> TrainConfig:
        """A run of ``steps``, ``minutes`` or both (whichever ends first), with the
        warmup, checkpoint and log intervals the generators' CLIs use.

        A time budget alone cannot place a cosine schedule (the step rate depends on the
        machine and its load; a timed first step over-estimates it), so such a run trains at
        a constant rate after ``time_only_warmup`` steps (default ``max_warmup``) and
        checkpoints every 100 steps. With ``steps`` the warmup is ``1 / warmup_divisor`` of
        the run (at most ``max_warmup``), ten checkpoints, about twenty log lines. ``fields``
        set or override any other :class:`TrainConfig` field.
        """
        if steps is None and minutes is None:
            raise ValueError("give a budget: steps, minutes or both")
        if steps is None:
            budget: dict[str, Any] = {
                "warmup_steps": max_warmup if time_only_warmup is None else time_only_warmup,
                "min_lr_ratio": 1.0,
                "ckpt_every": 100,
                "log_every": 25,
            }
        else:
            budget = {
                "warmup_steps": min(max_warmup, max(1, steps // warmup_divisor)),
                "ckpt_every": max(50, steps // 10),
                "log_every": max(1, min(25, steps // 20)),
            }
        return cls(**{"max_steps": steps, "max_minutes": minutes, **budget, **fields})


def cosine_with_warmup(
    step: int, warmup_steps: int, max_steps: int | None, min_lr_ratio: float = 0.1
) -> float:
    """The learning-rate multiplier for optimizer step ``step`` (0-based, the step about to run).

    Linear warmup then half-cosine decay:

        m(s) = (s + 1) / W                                           for s < W
        m(s) = r + (1 - r) * 0.5 * (1 + cos(pi * (s - W) / (S - W)))  for W <= s <= S

    with ``W = warmup_steps``, ``S = max_steps``, ``r = min_lr_ratio``; ``m = r`` past ``S``.
    Warmup counts from ``1 / W`` (not 0) so the first step already moves the weights.
    The schedule is a pure function of the step, so resuming needs only the step counter.
    ``max_steps=None`` (a run budgeted in minutes): ``m = 1`` after warmup.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if max_steps is None:
        return 1.0
    decay_steps = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
