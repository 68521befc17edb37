"""Shared benchmark machinery: timing, honest peak memory, machine facts, JSON.

Every benchmark in :mod:`mambakit.bench` builds on these helpers so that numbers from
different benches are measured the same way:

- :func:`time_callable` runs warm-up calls, then ``repeats`` timed calls, and reports the
  median (robust to the noise of a shared machine) in seconds.
- :func:`measure_peak_memory` reports the peak memory *growth* of one call in bytes. On
  CUDA it is ``torch.cuda.max_memory_allocated`` above the allocation before the call. On
  CPU it is the growth of the process' resident high-water mark (``VmHWM`` in
  ``/proc/self/status``): freed heap is first returned to the OS (``malloc_trim``) and the
  high-water mark reset to the current RSS (``/proc/self/clear_refs`` with ``5``), so each
  case starts from a fresh baseline in the same process instead of needing a subprocess.
  Where that is unavailable (non-Linux), the value is ``None`` rather than a wrong number.
- :func:`measure_matmul_flops` measures this machine's fp32 matmul rate, the roofline that
  achieved GFLOP/s are compared against.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from mambakit.utils import resolve_device


@dataclass(frozen=True)
class Timing:
    """Wall-clock times of one benchmarked call, in seconds."""

    median_s: float
    min_s: float
    times_s: tuple[float, ...]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_callable(
    fn: Callable[[], Any],
    *,
    warmup: int = 1,
    repeats: int = 3,
    device: str | torch.device | None = None,
) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then the median of ``repeats`` timed calls.

    The device is synchronised around each call so asynchronous CUDA work is counted.
    Whether gradients are recorded is up to ``fn`` (see :func:`forward_fn`).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    dev = resolve_device(device)
    for _ in range(warmup):
        fn()
    _synchronize(dev)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _synchronize(dev)
        times.append(time.perf_counter() - start)
    return Timing(statistics.median(times), min(times), tuple(times))


def time_interleaved(
    fns: dict[str, Callable[[], Any]],
    repeats: int,
    device: str | torch.device | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """First-call seconds of each ``fns`` entry (compiling or lazy set-up included), then
    the median of ``repeats`` further calls, the entries taking turns so that a busy machine
    slows all of them alike. Synchronised like :func:`time_callable`."""
    dev = resolve_device(device)

    def seconds(fn: Callable[[], Any]) -> float:
        _synchronize(dev)
        start = time.perf_counter()
        fn()
        _synchronize(dev)
        return time.perf_counter() - start

    first = {name: seconds(fn) for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(seconds(fn))
    return first, {name: statistics.median(t) for name, t in times.items()}


def forward_fn(module: torch.nn.Module, x: torch.Tensor, *, backward: bool) -> Callable[[], None]:
    """A closure running one forward (under ``torch.no_grad``) or forward+backward pass.

    ``x``: ``[B, L, d_model]``. For the backward pass, ``x`` gets ``requires_grad`` so the
    input gradient is computed too (as inside a deep network), and parameter gradients
    are cleared after each call so memory does not accumulate between repeats.
    """
    if not backward:

        def run() -> None:
            with torch.no_grad():
                module(x)

        return run

    x_grad = x.detach().requires_grad_(True)

    def run_backward() -> None:
        out = module(x_grad)
        y = out[0] if isinstance(out, tuple) else out
        y.sum().backward()
        module.zero_grad(set_to_none=True)
        x_grad.grad = None

    return run_backward


# ---------------------------------------------------------------------- memory


def _read_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _malloc_trim() -> None:
    # glibc keeps freed small/medium blocks resident; without trimming, a later case could
    # reuse them and show no RSS growth at all.
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_cpu_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # 5 = reset the peak RSS (VmHWM) to the current RSS
        return True
    except OSError:
        return False


def measure_peak_memory(
    fn: Callable[[], Any], device: str | torch.device | None = None
) -> int | None:
    """Peak memory growth of one call of ``fn()`` above the memory held before it, in bytes.

    CUDA: ``max_memory_allocated`` after minus ``memory_allocated`` before (tensors only).
    CPU (Linux): resident high-water mark after minus resident size before, after trimming
    the heap and resetting the mark; includes everything the process touched (tensors,
    allocator slack, autograd buffers), so it is an honest upper bound of what the call
    needs. Returns ``None`` where the OS offers no way to measure it.
    """
    dev = resolve_device(device)
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
        fn()
        torch.cuda.synchronize(dev)
        return int(torch.cuda.max_memory_allocated(dev) - before)
    _malloc_trim()
    if not _reset_cpu_high_water_mark():
        return None
    before_kb = _read_status_kb("VmRSS")
    fn()
    peak_kb = _read_status_kb("VmHWM")
    if before_kb is None or peak_kb is None:
        return None
    return max(0, peak_kb - before_kb) * 1024


# ---------------------------------------------------------------- machine facts


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(repo_dir: str | Path | None = None) -> str | None:
    """The current git commit of ``repo_dir`` (default: this package's checkout), or None."""
    cwd = Path(repo_dir) if repo_dir else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def machine_info(device: str | torch.device | None = None) -> dict[str, Any]:
    """What the numbers were measured on: CPU model, cores, threads, torch, GPU if used."""
    dev = resolve_device(device)
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(dev),
    }
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


def measure_matmul_flops(
    size: int = 2048,
    *,
    repeats: int = 3,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> float:
    """This machine's measured matmul rate in GFLOP/s: the roofline for achieved rates.

    Times ``a @ b`` for square ``size x size`` matrices; one product costs
    ``2 * size**3`` FLOPs (a multiply and an add per term). Median of ``repeats``.
    """
    dev = resolve_device(device)
    a = torch.randn(size, size, device=dev, dtype=dtype)
    b = torch.randn(size, size, device=dev, dtype=dtype)
    timing = time_callable(lambda: a @ b, warmup=1, repeats=repeats, device=dev)
    return 2.0 * size**3 / timing.median_s / 1e9


# ------------------------------------------------------------------- reporting


def result_metadata(command: str | None = None, device: str | torch.device | None = None) -> dict:
    """The ``meta`` saved beside every result (:class:`mambakit.results.Meta`) as JSON data."""
    from mambakit.results import Meta

    return Meta.collect(command, device).as_dict()


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (dataclasses converted) as indented JSON, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def convert(obj: Any) -> Any:
        if hasattr(obj, "__dataclass_fields__"):
            return asdict(obj)
        raise TypeError(f"cannot write {type(obj).__name__} to JSON")

    path.write_text(json.dumps(payload, indent=2, default=convert) + "\n")
    return path
