"""The generic training loop shared by every generator (drums diffusion, codec LM, timbre GAN).

One optimizer step (``step`` counts from 0) is:

1. Seed Python / NumPy / torch from ``(seed, step, rank)`` and draw the step's
   micro-batches, also from ``(seed, step, rank)``. Nothing depends on RNG state
   carried over from earlier steps, so a resumed run sees exactly the batches and the
   random crops / noise an uninterrupted run would have seen.
2. For each optimizer stage in order (``"main"``, or e.g. ``"disc"`` then ``"gen"``):
   zero the grads; for each micro-batch ``loss, logs = loss_fn(model, batch, stage)``
   and backward ``loss / grad_accum``; unscale (fp16), clip, AdamW step with the lr of
   :func:`~mambakit.train.cosine_with_warmup`.
3. Update the EMA weights, log, checkpoint.

Checkpoints are two things in ``out_dir``: the export (``model.safetensors`` +
``config.json`` via ``save_pretrained``, the EMA weights when EMA is on), and
``trainer_state.pt`` with everything needed to resume (raw training weights, optimizer
states, EMA, step, RNG states, config). Each file is written atomically, and resume
reads only ``trainer_state.pt``, so a kill at any instant leaves a consistent run.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm.auto import tqdm

from mambakit.pretrained import PretrainedMixin, atomic_write_bytes
from mambakit.train.config import TrainConfig, cosine_with_warmup
from mambakit.train.ema import EMA
from mambakit.utils import resolve_device, seed_everything

STATE_NAME = "trainer_state.pt"
METRICS_NAME = "metrics.jsonl"

LossFn = Callable[[nn.Module, Any, str], tuple[torch.Tensor, Mapping[str, float]]]
SaveFn = Callable[[nn.Module, Path, dict[str, Any]], Any]
BatchFn = Callable[[int, torch.Generator], Any]
TrainData = Dataset | BatchFn
ParamSource = nn.Module | Iterable[nn.Parameter]

# Norm layers whose weights are gains, never decayed (1-D parameters are caught anyway;
# this also covers norms with matrix-shaped affine parameters, e.g. per-head gains).
_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.modules.batchnorm._NormBase,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


@dataclass(frozen=True)
class FitSummary:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        steps: optimizer steps completed in total (including those before a resume).
        final_loss: loss of the last step (sum over stages), ``nan`` if no step ran.
        seconds: wall-clock seconds spent in this call of ``fit``.
        stopped_by: ``"max_steps"``, ``"max_minutes"`` or ``"interrupt"``.
    """

    steps: int
    final_loss: float
    seconds: float
    stopped_by: str

    def describe(self, run_dir: str | os.PathLike[str]) -> str:
        """One line for a terminal: steps, time, final loss, why it stopped, where the run is."""
        return (
            f"trained {self.steps} steps in {self.seconds:.0f} s (final loss "
            f"{self.final_loss:.4f}, stopped by {self.stopped_by}); the run is in {run_dir}"
        )


def last_logged(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The last complete line of ``run_dir/metrics.jsonl`` (``step``, ``time`` in seconds,
    ``loss``, ...), or None when the run has no log yet. A line cut by a kill is skipped."""
    path = Path(run_dir) / METRICS_NAME
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return None


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integer keys such as ``(seed, step, rank, stream)``."""
    state = np.random.SeedSequence([int(k) % (2**63) for k in keys]).generate_state(2, np.uint32)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & (2**63 - 1)


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) dict / list / tuple batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return type(batch)({k: move_to_device(v, device) for k, v in batch.items()})  # type: ignore[call-arg]
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def build_param_groups(
    model: nn.Module, params: Iterable[nn.Parameter], weight_decay: float
) -> list[dict[str, Any]]:
    """Split ``params`` into an AdamW group with ``weight_decay`` and one without.

    No decay for biases, for every parameter with fewer than 2 dimensions, and for the
    parameters of normalisation layers: decaying gains and offsets pulls them to 0,
    which is not a prior anyone wants. Matrices and embeddings are decayed.
    """
    no_decay_ids: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if isinstance(module, _NORM_TYPES) or name.endswith("bias") or p.ndim < 2:
                no_decay_ids.add(id(p))
    decay, no_decay, seen = [], [], set()
    for p in params:
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (no_decay if id(p) in no_decay_ids or p.ndim < 2 else decay).append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


class _StepBatches(Dataset):
    """Item ``step`` = the list of ``grad_accum`` micro-batches of that optimizer step.

    Indexing by step (not by sample) lets a DataLoader prepare whole steps in worker
    processes while the batches stay a pure function of ``(seed, step, rank)``.
    """

    def __init__(self, data: TrainData, config: TrainConfig, rank: int) -> None:
        self.data, self.config, self.rank = data, config, rank

    def __len__(self) -> int:
        return self.config.max_steps

    def __getitem__(self, step: int) -> list[Any]:
        cfg = self.config
        # Dataset __getitem__ may draw random crops: make those a function of the step too.
        seed_everything(derive_seed(cfg.seed, step, self.rank, 1))
        generator = torch.Generator().manual_seed(derive_seed(cfg.seed, step, self.rank, 2))
        if callable(self.data) and not isinstance(self.data, Dataset):
            return [self.data(step, generator) for _ in range(cfg.grad_accum)]
        n = len(self.data)  # type: ignore[arg-type]
        if n == 0:
            raise ValueError("train_data is an empty Dataset: nothing to train on")
        # One draw of the whole effective batch, split into micro-batches: accum=2 with
        # batch b sees exactly the samples of accum=1 with batch 2b.
        total = cfg.batch_size * cfg.grad_accum
        indices = torch.randint(n, (total,), generator=generator).tolist()
        return [
            default_collate([self.data[i] for i in indices[k : k + cfg.batch_size]])
            for k in range(0, total, cfg.batch_size)
        ]


def _save_pretrained(model: nn.Module, out_dir: Path, extra: dict[str, Any]) -> None:
    model.save_pretrained(out_dir, extra=extra)  # type: ignore[operator]


def _identity(x: Any) -> Any:
    return x


class Trainer:
    """Train any ``nn.Module`` with AdamW, warmup + cosine, accumulation, DDP.

    Args:
        model: the ``nn.Module`` to train. Its export is written by ``save_fn``, by default
            ``model.save_pretrained(out_dir, extra=...)`` of a
            :class:`~mambakit.pretrained.PretrainedMixin` model.
        loss_fn: ``loss_fn(model, batch, stage) -> (loss, logs)``; ``loss`` a scalar
            tensor, ``logs`` a dict of floats averaged over micro-batches and logged (use
            distinct keys per stage). ``stage`` names the
            optimizer being stepped. Under torchrun with one optimizer, ``model`` is the
            ``DistributedDataParallel`` wrapper: call ``model(...)`` so gradients are
            synchronised (submodules are at ``model.module``, see :func:`unwrap_model`, but
            gradients only sync through the wrapper's forward). With several optimizers
            ``model`` is the plain model and the trainer all-reduces each stage's gradients
            itself, so ``model.disc(...)`` style calls are safe.
        train_data: a map-style ``Dataset`` (the trainer samples ``batch_size`` indices
            per micro-batch with replacement from a generator seeded by
            ``(seed, step, rank)`` and collates with ``default_collate``) or a callable
            ``batch_fn(step, generator) -> batch``, called once per micro-batch with the
            optimizer step and a generator seeded the same way.
        config: :class:`TrainConfig`.
        out_dir: run directory for checkpoints and ``metrics.jsonl``; ``None``: train in
            memory only (no checkpoints, no log file, no resume), e.g. for probes and
            comparisons that time the very loop a real run uses.
        optimizers: ``{stage: params or module}`` for several optimizers stepped in
            this order every step (e.g. ``{"disc": model.disc, "gen": model.gen}``);
            each gets its own AdamW and its own warmup + cosine schedule.
            ``None``: one optimizer ``"main"`` over all parameters.
        eval_fn: optional ``eval_fn(model, step) -> dict[str, float]``, called on rank 0
            (with the EMA weights when EMA is on) at every checkpoint; its values are
            logged with an ``eval/`` prefix.
        save_fn: ``save_fn(model, out_dir, extra)`` writes the export of ``model`` (the
            EMA weights when EMA is on); ``extra`` is JSON metadata (the training step).
            Needed when ``model`` is not a ``PretrainedMixin`` and ``out_dir`` is given.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        train_data: TrainData,
        config: TrainConfig,
        out_dir: str | os.PathLike[str] | None,
        optimizers: Mapping[str, ParamSource] | None = None,
        eval_fn: Callable[[nn.Module, int], Mapping[str, float]] | None = None,
        save_fn: SaveFn | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"Trainer trains an nn.Module, got {type(model).__name__}")
        if save_fn is None and isinstance(model, PretrainedMixin):
            save_fn = _save_pretrained
        if save_fn is None and out_dir is not None:
            raise TypeError(
                f"Trainer needs save_fn(model, out_dir, extra) to checkpoint a "
                f"{type(model).__name__} (not a mambakit.pretrained.PretrainedMixin)"
            )
        if not (isinstance(train_data, Dataset) or callable(train_data)):
            raise TypeError(
                "train_data must be a map-style torch Dataset or a callable "
                f"batch_fn(step, generator), got {type(train_data).__name__}"
            )
        self.config = config
        self.loss_fn = loss_fn
        self.train_data = train_data
        self.eval_fn = eval_fn
        self.save_fn = save_fn
        self.out_dir = Path(out_dir) if out_dir is not None else None

        self._setup_distributed()
        self.model: nn.Module = model.to(self.device)
        stages: dict[str, ParamSource] = dict(optimizers) if optimizers else {"main": model}
        self.optimizers = self._build_optimizers(stages)
        self.wrapped = self._wrap_for_ddp(model, n_stages=len(stages))

        precision = config.precision
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "fp32"
        self.precision = precision
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        self.ema = EMA(model, config.ema_decay) if config.ema_decay is not None else None
        self.step = 0
        self._interrupt_requested = False
        # True while the weights hold part of a step (some optimizers stepped, not all).
        self._mid_update = False

    def _setup_distributed(self) -> None:
        """Rank, world size and device from the torchrun environment (one process: rank 0)."""
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.distributed = self.world_size > 1
        self.device = resolve_device(self.config.device)
        if self.distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        if self.distributed and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
        self.is_main = self.rank == 0

    def _build_optimizers(
        self, stages: Mapping[str, ParamSource]
    ) -> dict[str, torch.optim.Optimizer]:
        """One AdamW per stage, with the weight-decay groups of :func:`build_param_groups`."""
        if not stages:
            raise ValueError("optimizers must name at least one parameter group")
        cfg, optimizers = self.config, {}
        for stage, source in stages.items():
            params = list(source.parameters() if isinstance(source, nn.Module) else source)
            groups = build_param_groups(self.model, params, cfg.weight_decay)
            if not groups:
                raise ValueError(f"optimizer {stage!r} has no trainable parameters")
            optimizers[stage] = torch.optim.AdamW(
                groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay
            )
        return optimizers

    def _wrap_for_ddp(self, model: nn.Module, n_stages: int) -> nn.Module:
        """The module ``loss_fn`` calls: ``DistributedDataParallel`` under torchrun with one
        optimizer (gradient all-reduce overlapped with backward), else the plain model.

        With several optimizers (GANs), loss functions reach into sub-networks
        (``model.disc(...)``), which DDP's forward hooks would never see, so the trainer
        passes the plain model and averages each stage's gradients itself."""
        self.manual_grad_sync = self.distributed and n_stages > 1
        if self.distributed and not self.manual_grad_sync:
            ddp_kwargs: dict[str, Any] = {}
            if self.device.type == "cuda":
                ddp_kwargs["device_ids"] = [self.device.index]
            return nn.parallel.DistributedDataParallel(model, **ddp_kwargs)
        if self.manual_grad_sync:
            with torch.no_grad():  # start every rank from rank 0's weights, as DDP does
                for tensor in model.state_dict().values():
                    dist.broadcast(tensor, src=0)
        return model

    # ------------------------------------------------------------------ schedule
    def lr_at(self, step: int) -> float:
        """The learning rate used for optimizer step ``step`` (0-based)."""
        cfg = self.config
        return cfg.lr * cosine_with_warmup(step, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)

    # ------------------------------------------------------------------ checkpoints
    @property
    def state_path(self) -> Path:
        if self.out_dir is None:
            raise RuntimeError("this Trainer has no out_dir (in-memory training)")
        return self.out_dir / STATE_NAME

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly (saved in ``trainer_state.pt``)."""
        return {
            "step": self.step,
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
            },
            "config": asdict(self.config),
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (the model, optimizers, EMA, step, RNGs)."""
        self.model.load_state_dict(state["model"])
        if set(state["optimizers"]) != set(self.optimizers):
            raise ValueError(
                f"{self.state_path}: checkpoint has optimizers {sorted(state['optimizers'])}, "
                f"this trainer has {sorted(self.optimizers)}"
            )
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            if state["ema"] is None:
                # EMA switched on mid-run: start it from the current weights.
                self.ema = EMA(self.model, self.config.ema_decay)  # type: ignore[arg-type]
            else:
                self.ema.load_state_dict(state["ema"])
        self.step = int(state["step"])
        rng = state.get("rng")
        if rng:
            random.setstate(rng["python"])
            np.random.set_state(rng["numpy"])
            torch.set_rng_state(rng["torch"])
        saved = state.get("config", {})
        changed = {
            k
            for k in ("batch_size", "grad_accum", "seed")
            if saved.get(k) != getattr(self.config, k)
        }
        if changed or state.get("world_size", 1) != self.world_size:
            warnings.warn(
                f"{self.state_path}: resuming with a different {sorted(changed) or 'world size'} "
                "than the checkpoint; the run will not match an uninterrupted one",
                stacklevel=2,
            )

    def save_checkpoint(self) -> None:
        """Write ``trainer_state.pt`` and the export (``model.safetensors`` + ``config.json``).

        Only rank 0 writes. Every file goes through a temp file + ``os.replace``.
        """
        if not self.is_main or self.out_dir is None:
            return
        assert self.save_fn is not None  # checked in __init__
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        atomic_write_bytes(self.state_path, buffer.getvalue())
        extra = {"train_step": self.step}
        with self.ema.applied_to(self.model) if self.ema is not None else nullcontext():
            self.save_fn(self.model, self.out_dir, extra)

    def maybe_resume(self) -> bool:
        """Load ``out_dir/trainer_state.pt`` if ``config.resume`` and it exists."""
        if self.out_dir is None or not (self.config.resume and self.state_path.is_file()):
            return False
        try:
            state = torch.load(self.state_path, map_location="cpu", weights_only=False)
        except Exception as e:  # a corrupt file is a user-facing problem, say which
            raise RuntimeError(f"{self.state_path}: cannot read trainer state ({e})") from e
        self.load_state_dict(state)
        self._truncate_metrics()
        return True

    # ------------------------------------------------------------------ logging
    def _truncate_metrics(self) -> None:
        """Drop log lines past the resumed step (written after the last checkpoint)."""
        if self.out_dir is None or not self.is_main:
            return
        path = self.out_dir / METRICS_NAME
        if not path.is_file():
            return
        lines = path.read_text().splitlines()
        kept = []
        for line in lines:
            try:
                if json.loads(line).get("step", 0) <= self.step:
                    kept.append(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
        atomic_write_bytes(path, ("".join(f"{line}\n" for line in kept)).encode())

    def _log(self, record: dict[str, Any]) -> None:
        if not self.is_main or self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / METRICS_NAME, "a") as f:
            f.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ training
    def _batches(self, start: int) -> Iterable[list[Any]]:
        source = _StepBatches(self.train_data, self.config, self.rank)
        max_steps = self.config.max_steps
        steps: Iterable[int] = range(start, max_steps) if max_steps is not None else count(start)
        if self.config.num_workers > 0:
            return DataLoader(
                source,
                sampler=steps,
                batch_size=None,
                num_workers=self.config.num_workers,
                collate_fn=_identity,
                pin_memory=self.device.type == "cuda",
            )
        return (source[s] for s in steps)

    def _train_step(self, micro_batches: Sequence[Any]) -> tuple[float, dict[str, float]]:
        """One optimizer step for every stage; returns (summed loss, averaged logs)."""
        cfg = self.config
        # Noise / dropout inside loss_fn: a function of (seed, step, rank) only.
        seed_everything(derive_seed(cfg.seed, self.step, self.rank, 3))
        lr = self.lr_at(self.step)
        total_loss = 0.0
        logs: dict[str, float] = {}
        autocast = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else nullcontext()
        )
        for stage, opt in self.optimizers.items():
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            stage_loss = 0.0
            for k, batch in enumerate(micro_batches):
                batch = move_to_device(batch, self.device)
                last = k == len(micro_batches) - 1
                # Skip the gradient all-reduce on all but the last micro-batch.
                ddp = isinstance(self.wrapped, nn.parallel.DistributedDataParallel)
                sync = self.wrapped.no_sync() if ddp and not last else nullcontext()
                with sync:
                    with autocast:
                        loss, stage_logs = self.loss_fn(self.wrapped, batch, stage)
                    if not torch.is_tensor(loss) or loss.ndim != 0:
                        raise ValueError(
                            f"loss_fn must return a scalar tensor loss (stage {stage!r})"
                        )
                    self.scaler.scale(loss / len(micro_batches)).backward()
                stage_loss += float(loss.detach()) / len(micro_batches)
                for key, value in (stage_logs or {}).items():
                    logs[key] = logs.get(key, 0.0) + float(value) / len(micro_batches)
            if self.manual_grad_sync:
                self._average_gradients(opt)
            if cfg.grad_clip:
                self.scaler.unscale_(opt)
                params = [p for g in opt.param_groups for p in g["params"]]
                norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                suffix = f"/{stage}" if len(self.optimizers) > 1 else ""
                logs[f"grad_norm{suffix}"] = float(norm)
            self._mid_update = True
            self.scaler.step(opt)
            self.scaler.update()
            if len(self.optimizers) > 1:
                logs[f"loss/{stage}"] = stage_loss
            total_loss += stage_loss
        if self.ema is not None:
            self.ema.update(self.model)
        return total_loss, logs

    def _average_gradients(self, opt: torch.optim.Optimizer) -> None:
        """Mean of one optimizer's gradients over ranks (one flat all-reduce per dtype)."""
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for group in opt.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
        for dtype in sorted(by_dtype, key=str):  # the same order on every rank
            grads = by_dtype[dtype]
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= self.world_size
            offset = 0
            for g in grads:
                g.copy_(flat[offset : offset + g.numel()].view_as(g))
                offset += g.numel()

    def _out_of_time(self, started: float) -> bool:
        if self.config.max_minutes is None:
            return False
        over = time.monotonic() - started > 60.0 * self.config.max_minutes
        if self.distributed:  # every rank must stop at the same step
            flag = torch.tensor([float(over)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            over = bool(flag.item())
        return over

    def _evaluate(self) -> dict[str, float]:
        if self.eval_fn is None or not self.is_main:
            return {}
        was_training = self.model.training
        self.model.eval()
        try:
            ctx = self.ema.applied_to(self.model) if self.ema is not None else nullcontext()
            with ctx, torch.no_grad():
                values = self.eval_fn(self.model, self.step)
        finally:
            self.model.train(was_training)
        return {f"eval/{k}": float(v) for k, v in values.items()}

    def _defer_sigint(self) -> Any:
        """Make the first Ctrl-C finish the current step before stopping (a second one stops now).

        Stopping between steps means the checkpoint written on the way out is a real
        step boundary, so resuming from it is exact.
        """
        self._interrupt_requested = False
        if threading.current_thread() is not threading.main_thread():
            return None
        previous = signal.getsignal(signal.SIGINT)

        def request_stop(signum: int, frame: Any) -> None:
            if self._interrupt_requested:
                raise KeyboardInterrupt
            self._interrupt_requested = True

        signal.signal(signal.SIGINT, request_stop)
        return previous

    @staticmethod
    def _restore_sigint(previous: Any) -> None:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)

    def _progress_bar(self) -> Any:
        """A bar over the steps, or over the seconds of a time-only budget."""
        cfg = self.config
        by_time = cfg.time_only
        return tqdm(
            total=round(cfg.max_minutes * 60) if by_time else cfg.max_steps,  # type: ignore[operator]
            initial=0 if by_time else self.step,
            unit="s" if by_time else "it",
            disable=not (cfg.progress and self.is_main),
            desc="train",
            dynamic_ncols=True,
        )

    def _show_progress(self, bar: Any, started: float, loss: float, lr: float) -> None:
        if self.config.time_only:
            bar.update(min(bar.total, int(time.monotonic() - started)) - bar.n)
            bar.set_postfix(step=self.step, loss=f"{loss:.4g}", lr=f"{lr:.3g}")
        else:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4g}", lr=f"{lr:.3g}")

    def _after_step(self, started: float, lr: float, loss: float, logs: dict[str, float]) -> bool:
        """Evaluate, log and checkpoint as the intervals say; True if a checkpoint was written."""
        cfg = self.config
        done = cfg.max_steps is not None and self.step >= cfg.max_steps
        if self.step % cfg.ckpt_every == 0 or done:
            logs.update(self._evaluate())
        if self.step % cfg.log_every == 0 or done:
            elapsed = round(time.monotonic() - started, 3)
            self._log({"step": self.step, "time": elapsed, "lr": lr, "loss": loss, "logs": logs})
        if self.step % cfg.ckpt_every == 0 and not done:
            self.save_checkpoint()
            return True
        return False

    def _save_on_interrupt(self, last_saved: int) -> None:
        """Ctrl-C: save the step just finished, unless it was cut in the middle."""
        if self._mid_update:
            # Raised inside a step after some weights moved: saving would mix two steps.
            warnings.warn(
                f"interrupted in the middle of step {self.step}; the last checkpoint "
                f"(step {last_saved}) in {self.out_dir} is kept",
                stacklevel=3,
            )
        elif self.out_dir is not None and (
            self.step != last_saved or not self.state_path.is_file()
        ):
            if self.is_main:
                print(f"interrupted: saving step {self.step} to {self.out_dir}", flush=True)
            self.save_checkpoint()

    def fit(self) -> FitSummary:
        """Train until ``max_steps`` or ``max_minutes``, then write a final checkpoint.

        Resumes from ``out_dir`` first when ``config.resume``. Ctrl-C lets the current step
        finish, writes a checkpoint, and then raises ``KeyboardInterrupt`` (press twice to
        stop at once; then the last regular checkpoint is kept if the step was half done).
        """
        started = time.monotonic()
        self.maybe_resume()
        self.model.train()
        final_loss = math.nan
        stopped_by = "max_steps"
        bar = self._progress_bar()
        last_saved = self.step
        previous_handler = self._defer_sigint()
        try:
            for micro_batches in self._batches(self.step):
                if self._out_of_time(started):
                    stopped_by = "max_minutes"
                    break
                lr = self.lr_at(self.step)
                final_loss, logs = self._train_step(micro_batches)
                if not math.isfinite(final_loss):
                    warnings.warn(f"non-finite loss {final_loss} at step {self.step}", stacklevel=2)
                self.step += 1
                self._mid_update = False
                self._show_progress(bar, started, final_loss, lr)
                if self._after_step(started, lr, final_loss, logs):
                    last_saved = self.step
                if self._interrupt_requested:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            bar.close()
            self._save_on_interrupt(last_saved)
            raise
        finally:
            self._restore_sigint(previous_handler)
        bar.close()
        self.save_checkpoint()
        if self.distributed:
            dist.barrier()
        return FitSummary(
            steps=self.step,
            final_loss=final_loss,
            seconds=time.monotonic() - started,
            stopped_by=stopped_by,
        )
