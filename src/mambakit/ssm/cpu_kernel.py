"""Fused C kernels for the scan forwards (Mamba-1 and Mamba-2) on CPU, built on first use.

The chunked PyTorch scan (``mambakit.ssm.ops._selective_scan_chunked``) makes several
passes over ``[L, d_inner, d_state]`` tensors; the recurrence itself only needs the
``[d_inner, d_state]`` state, a few KB that stay in the L1 cache. This kernel runs the
per-step recurrence of :func:`~mambakit.ssm.ops.selective_scan_ref` exactly, in one pass::

    h[c, k] = exp(dt[t, c] * A[c, k]) * h[c, k] + dt[t, c] * u[t, c] * B[t, k]
    y[t, c] = sum_k h[c, k] * C[t, k] + D[c] * u[t, c]

with the ``d_state`` loop vectorised (``#pragma omp simd``, glibc's vector ``expf``, within a
few ulp of the scalar one),
channels split between threads (each thread owns a channel range for the whole sequence,
so there is no synchronisation per step). Forward only: it serves inference (no autograd);
training keeps the chunked path, whose backward is autograd's.

It is plain C (no PyTorch headers), compiled once with the system C compiler into
``~/.cache/mambakit/kernels`` (about a second) and loaded with :mod:`ctypes`, which
releases the GIL during the call. :func:`available` says whether that worked;
``selective_scan(backend="auto")`` falls back to the PyTorch path when it did not.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["available", "selective_scan_fused", "ssd_scan_fused", "unavailable_reason"]

logger = logging.getLogger(__name__)

_SOURCE = r"""
#include <math.h>

/* Channels [c0, c1) of batch row `bi`; every array is contiguous float32:
   u, delta, y [b, L, d]; A [d, n]; B, C [b, L, n]; D [d] or NULL; h0, hT [b, d, n]
   (h0 may be NULL: zero state). hT holds the running state. */
void selective_scan_fwd(const float *u, const float *delta, const float *A, const float *B,
                        const float *C, const float *D, const float *h0, float *y, float *hT,
                        long bi, long L, long d, long n, long c0, long c1) {
    float *s = hT + bi * d * n;
    for (long i = c0 * n; i < c1 * n; ++i) s[i] = h0 ? h0[bi * d * n + i] : 0.0f;
    for (long t = 0; t < L; ++t) {
        const long row = bi * L + t;
        const float *ut = u + row * d, *dtt = delta + row * d;
        const float *Bt = B + row * n, *Ct = C + row * n;
        float *yt = y + row * d;
        for (long c = c0; c < c1; ++c) {
            const float dtc = dtt[c], xc = dtc * ut[c];
            const float *Ac = A + c * n;
            float *sc = s + c * n;
            float acc = 0.0f;
            #pragma omp simd reduction(+:acc)
            for (long k = 0; k < n; ++k) {
                const float v = expf(dtc * Ac[k]) * sc[k] + xc * Bt[k];
                sc[k] = v;
                acc += v * Ct[k];
            }
            yt[c] = D ? acc + D[c] * ut[c] : acc;
        }
    }
}

/* SSD (Mamba-2): scalar decay per head. Channels [c0, c1) of the h * p channels of batch row
   `bi` (channel c is head c / p); x, y [b, L, h * p]; dt [b, L, h]; A, D [h] (D may be NULL);
   B, C [b, L, g, n] with head hh reading group hh / (h / g); h0, hT [b, h * p, n]. */
void ssd_scan_fwd(const float *x, const float *dt, const float *A, const float *B,
                  const float *C, const float *D, const float *h0, float *y, float *hT,
                  long bi, long L, long h, long p, long g, long n, long c0, long c1) {
    const long hp = h * p, heads_per_group = h / g;
    float *s = hT + bi * hp * n;
    for (long i = c0 * n; i < c1 * n; ++i) s[i] = h0 ? h0[bi * hp * n + i] : 0.0f;
    for (long t = 0; t < L; ++t) {
        const long row = bi * L + t;
        const float *xt = x + row * hp, *dtt = dt + row * h;
        float *yt = y + row * hp;
        for (long c = c0; c < c1;) {
            const long hh = c / p, end = (hh + 1) * p < c1 ? (hh + 1) * p : c1;
            const float step = dtt[hh], decay = expf(step * A[hh]);
            const long gi = hh / heads_per_group;
            const float *Bt = B + (row * g + gi) * n, *Ct = C + (row * g + gi) * n;
            for (; c < end; ++c) {
                const float xc = step * xt[c];
                float *sc = s + c * n;
                float acc = 0.0f;
                #pragma omp simd reduction(+:acc)
                for (long k = 0; k < n; ++k) {
                    const float v = decay * sc[k] + xc * Bt[k];
                    sc[k] = v;
                    acc += v * Ct[k];
                }
                yt[c] = D ? acc + D[hh] * xt[c] : acc;
            }
        }
    }
}
"""
# -ffast-math with -fopenmp (which defines _OPENMP) lets glibc map expf in the simd loop to
# its vector version (libmvec); no OpenMP runtime is used or linked.
_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-shared", "-fPIC"]
_library: ctypes.CDLL | None = None
_build_failed: str | None = None
_pool: ThreadPoolExecutor | None = None


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "mambakit" / "kernels"


def _load() -> ctypes.CDLL | None:
    """Compile (once, cached by source hash) and load the kernel; ``None`` if impossible."""
    global _library, _build_failed
    if _library is not None or _build_failed is not None:
        return _library
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        _build_failed = "no C compiler (cc/gcc) on PATH"
        return None
    machine = torch.backends.cpu.get_cpu_capability()  # -march=native builds per CPU
    key = hashlib.sha256(f"{_SOURCE}{_FLAGS}{compiler}{machine}".encode()).hexdigest()[:16]
    target = _cache_dir() / f"selective_scan_{key}.so"
    try:
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                src = Path(tmp) / "selective_scan.c"
                src.write_text(_SOURCE)
                out = Path(tmp) / target.name
                subprocess.run(
                    [compiler, *_FLAGS, str(src), "-o", str(out), "-lm"],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                os.replace(out, target)  # atomic: concurrent builders never load a half file
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        _build_failed = f"building the C kernel failed: {detail.strip()[:500]}"
        logger.info("selective_scan: %s", _build_failed)
        return None
    lib.selective_scan_fwd.restype = None
    lib.selective_scan_fwd.argtypes = [ctypes.c_void_p] * 9 + [ctypes.c_long] * 6
    lib.ssd_scan_fwd.restype = None
    lib.ssd_scan_fwd.argtypes = [ctypes.c_void_p] * 9 + [ctypes.c_long] * 8
    _library = lib
    return lib


def available() -> bool:
    """Whether the C kernel is built (building it now if needed) and loadable."""
    return _load() is not None


def unavailable_reason() -> str | None:
    """Why :func:`available` is false (``None`` when it is true or was not tried)."""
    return _build_failed


def _ptr(t: Tensor | None) -> int | None:  # NULL for an absent optional argument
    return t.data_ptr() if t is not None else None


def selective_scan_fused(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The selective scan by the C kernel: shapes as :func:`~mambakit.ssm.ops.selective_scan_ref`;
    returns ``(y [B, L, D] float32, final_state [B, D, N] float32)``. No autograd.

    Inputs are made contiguous float32 CPU tensors (a copy only when they are not).
    """
    lib = _require()
    b, length, d = u.shape
    n = A.shape[1]
    u_, dt_, A_, B_, C_, D_, h0 = (_prep(t) for t in (u, delta, A, B, C, D, initial_state))
    y = torch.empty(b, length, d, dtype=torch.float32)
    state = torch.empty(b, d, n, dtype=torch.float32)
    ptrs = [_ptr(t) for t in (u_, dt_, A_, B_, C_, D_, h0, y, state)]
    _run_channels(
        lambda bi, c0, c1: lib.selective_scan_fwd(*ptrs, bi, length, d, n, c0, c1),
        b,
        d,
        b * length * d * n,
    )
    return y, state


def ssd_scan_fused(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The SSD scan (Mamba-2) by the C kernel: shapes as :func:`~mambakit.ssm.ops.ssd_scan_ref`;
    returns ``(y [B, L, H, P] float32, final_state [B, H, P, N] float32)``. No autograd.

    The same per-step recurrence as the Mamba-1 kernel with one ``exp`` per head and step
    (the decay is a scalar per head), every channel of a head sharing its group's ``B_t``,
    ``C_t``: ``h[c] = exp(dt A_h) h[c] + dt x_c B_t``, ``y_c = h[c] . C_t + D_h x_c``.
    """
    lib = _require()
    b, length, h, p = x.shape
    g, n = B.shape[2:]
    x_, dt_, A_, B_, C_, D_, h0 = (_prep(t) for t in (x, dt, A, B, C, D, initial_state))
    y = torch.empty(b, length, h, p, dtype=torch.float32)
    state = torch.empty(b, h, p, n, dtype=torch.float32)
    ptrs = [_ptr(t) for t in (x_, dt_, A_, B_, C_, D_, h0, y, state)]

    def run(bi: int, c0: int, c1: int) -> None:
        lib.ssd_scan_fwd(*ptrs, bi, length, h, p, g, n, c0, c1)

    _run_channels(run, b, h * p, b * length * h * p * n)
    return y, state


def _require() -> ctypes.CDLL:
    lib = _load()
    if lib is None:
        raise RuntimeError(f"the CPU scan kernel is unavailable: {_build_failed}")
    return lib


def _prep(t: Tensor | None) -> Tensor | None:
    """A contiguous float32 copy of ``t`` only where it is not one already."""
    return None if t is None else t.detach().to(torch.float32).contiguous()


# State updates (batch x length x channels x d_state) below which a scan runs on one thread:
# handing work to the pool costs tens of microseconds, more than a small scan takes.
_MIN_PARALLEL_UPDATES = 2**20


def _run_channels(
    run: Callable[[int, int, int], None], batch: int, channels: int, updates: int
) -> None:
    """``run(batch_row, c0, c1)`` over every batch row, channels split over the threads of
    ``torch.get_num_threads()`` (ctypes calls release the GIL, so they run in parallel)
    when the scan has at least ``_MIN_PARALLEL_UPDATES`` state ``updates``."""
    global _pool
    threads = max(1, min(torch.get_num_threads(), channels // 8))
    if updates < _MIN_PARALLEL_UPDATES:
        threads = 1
    bounds = [(channels * i // threads, channels * (i + 1) // threads) for i in range(threads)]
    jobs = [(bi, c0, c1) for bi in range(batch) for c0, c1 in bounds]
    if threads == 1:
        for job in jobs:
            run(*job)
        return
    if _pool is None or _pool._max_workers < threads:
        _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mambakit-scan")
    for future in [_pool.submit(run, *job) for job in jobs]:
        future.result()
