"""A fused C kernel for the Mamba-1 selective scan forward on CPU, built on first use.

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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["available", "selective_scan_fused"]

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
    fn = lib.selective_scan_fwd
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p] * 9 + [ctypes.c_long] * 6
    _library = lib
    return lib


def available() -> bool:
    """Whether the C kernel is built (building it now if needed) and loadable."""
    return _load() is not None


def unavailable_reason() -> str | None:
    """Why :func:`available` is false (``None`` when it is true or was not tried)."""
    return _build_failed


def _ptr(t: Tensor | None) -> int | None:
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
    Channels are split over ``torch.get_num_threads()`` threads.
    """
    lib = _load()
    if lib is None:
        raise RuntimeError(f"the selective-scan C kernel is unavailable: {_build_failed}")
    b, length, d = u.shape
    n = A.shape[1]

    def prep(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.detach().to(torch.float32).contiguous()

    u_, dt_, A_, B_, C_, D_, h0 = (prep(t) for t in (u, delta, A, B, C, D, initial_state))
    y = torch.empty(b, length, d, dtype=torch.float32)
    state = torch.empty(b, d, n, dtype=torch.float32)
    threads = max(1, min(torch.get_num_threads(), d // 8))
    ptrs = [_ptr(t) for t in (u_, dt_, A_, B_, C_, D_, h0, y, state)]

    def run(bi: int, c0: int, c1: int) -> None:
        lib.selective_scan_fwd(*ptrs, bi, length, d, n, c0, c1)

    jobs = [
        (bi, d * i // threads, d * (i + 1) // threads) for bi in range(b) for i in range(threads)
    ]
    if threads == 1:
        for job in jobs:
            run(*job)
    else:
        global _pool
        if _pool is None or _pool._max_workers < threads:
            _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mambakit-scan")
        for future in [_pool.submit(run, *job) for job in jobs]:
            future.result()
    return y, state
