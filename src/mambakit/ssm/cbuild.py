"""Build a small C source into a shared library once, cache it by hash, load it with ctypes.

The fused CPU kernels (:mod:`~mambakit.ssm.cpu_decode`) are plain C with no PyTorch
headers. :func:`load_library` compiles a source with the system C compiler into
``$XDG_CACHE_HOME/mambakit/kernels`` (``~/.cache`` by default) under a name keyed by the
hash of the source, the flags, the compiler and the CPU (``-march=native`` builds per
CPU), and loads it with :mod:`ctypes`, whose foreign calls
release the GIL. A process builds each source at most once: a failure is remembered, and
every later call raises the same :class:`KernelBuildError`, whose message says why (no
compiler, the compiler's error output, a library that does not load), so that callers can
fall back to PyTorch and report the reason.

Threads: a kernel that splits its work takes the ranges as bounds (``lo_0, lo_1, ...,
hi``, :func:`range_bounds`) and runs one range per thread of an OpenMP team
(:data:`PARALLEL_PRELUDE`, prepended to every source). Built with ``-fopenmp``, the
library needs ``libgomp.so.1``, and the dynamic loader hands it the copy that torch has
already loaded (it matches by soname): the team is torch's own intra-op thread pool. A
pool of our own would compete with torch's workers, which spin for a while after every
torch operation and, measured here, slowed a C kernel run right after one by a third.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = [
    "DEFAULT_FLAGS", "PARALLEL_PRELUDE", "KernelBuildError", "KernelLibrary", "kernel_cache_dir",
    "load_library", "range_bounds",
]  # fmt: skip

logger = logging.getLogger(__name__)

# -fopenmp-simd honours `#pragma omp simd` (vectorised reductions) without -ffast-math and
# without linking an OpenMP runtime.
DEFAULT_FLAGS = ("-O3", "-march=native", "-fopenmp-simd", "-shared", "-fPIC")

# Prepended to every source of a KernelLibrary. FOR_RANGES runs the statement after it once
# per range i of the bounds `rg` (n_ranges of them), each on its own thread of the team.
PARALLEL_PRELUDE = """\
#define FOR_RANGES \\
    _Pragma("omp parallel for num_threads(n_ranges) schedule(static, 1)") \\
    for (long i = 0; i < n_ranges; ++i)
"""

_loaded: dict[str, ctypes.CDLL | KernelBuildError] = {}


class KernelBuildError(RuntimeError):
    """A C source could not be compiled or loaded here; the message says why."""


class KernelLibrary:
    """One C source of the package as a library of kernels, built on first use.

    ``source`` is the C text, or the path of a package-data ``.c`` file (read on first
    use: an install without it counts as a failed build). :meth:`load` builds it with
    :func:`load_library`, gives each function of ``signatures`` (``{name: argtypes}``, all
    returning void) its argument types, and returns the library, or ``None`` when that is
    impossible; :attr:`failed` then says why (logged once), and the caller runs its torch
    code. ``lib`` and ``failed`` are plain attributes (a test may set them)."""

    def __init__(
        self,
        name: str,
        source: str | Path,
        signatures: dict[str, list],
        flags: Sequence[str] = DEFAULT_FLAGS,
    ) -> None:
        self.name, self.source, self.signatures, self.flags = name, source, signatures, flags
        self.lib: ctypes.CDLL | None = None
        self.failed: str | None = None

    def load(self) -> ctypes.CDLL | None:
        if self.lib is not None or self.failed is not None:
            return self.lib
        try:
            source = self.source
            if isinstance(source, Path):
                try:
                    source = source.read_text()
                except OSError as e:
                    raise KernelBuildError(f"{self.name}: cannot read {source}: {e}") from e
            lib = load_library(self.name, PARALLEL_PRELUDE + source, self.flags)
        except KernelBuildError as e:
            self.failed = str(e)
            logger.info("%s", self.failed)
            return None
        for function, argtypes in self.signatures.items():
            getattr(lib, function).restype = None
            getattr(lib, function).argtypes = argtypes
        self.lib = lib
        return lib

    def available(self) -> bool:
        """Whether the kernels are built (building them now if needed) and loadable."""
        return self.load() is not None

    def unavailable_reason(self) -> str | None:
        """Why :meth:`available` is false (``None`` when it is true or was not tried)."""
        return self.failed

    def supports(self, *tensors: torch.Tensor) -> bool:
        """Whether the kernels can run on ``tensors``: float32 CPU tensors, nothing being
        traced by ``torch.compile``, and the library loads."""
        return (
            not torch.compiler.is_compiling()
            and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
            and self.available()
        )


def range_bounds(ranges: Sequence[tuple[int, int]]) -> tuple[ctypes.Array, int]:
    """Consecutive ``ranges`` ``[(lo, hi), ...]`` as a kernel takes them: the array of
    their bounds (``lo_0, ..., lo_{n-1}, hi_{n-1}``) and their count ``n``."""
    for (_, hi), (lo, _) in zip(ranges[:-1], ranges[1:], strict=True):
        if hi != lo:
            raise ValueError(f"range_bounds: ranges {list(ranges)} are not consecutive")
    bounds = [lo for lo, _ in ranges] + [ranges[-1][1]]
    return (ctypes.c_long * len(bounds))(*bounds), len(ranges)


def kernel_cache_dir() -> Path:
    """Where built libraries are kept: ``$XDG_CACHE_HOME/mambakit/kernels``."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "mambakit" / "kernels"


def load_library(name: str, source: str, flags: Sequence[str] = DEFAULT_FLAGS) -> ctypes.CDLL:
    """The library built from C ``source`` with ``flags``, compiled on first use.

    ``name`` prefixes the cached file (``<name>_<hash>.so``). The build writes to a
    temporary file and renames it into place, so concurrent builders never load a partial
    library. Raises :class:`KernelBuildError` (every time, once it failed in this process).
    """
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    key = hashlib.sha256(f"{source}{list(flags)}{compiler}{_machine()}".encode()).hexdigest()[:16]
    memo = _loaded.get(key)
    if memo is None:
        try:
            memo = _build_and_load(name, source, list(flags), compiler, key)
        except KernelBuildError as e:
            memo = e
        _loaded[key] = memo
    if isinstance(memo, KernelBuildError):
        raise memo
    return memo


def _machine() -> str:
    """What a ``-march=native`` build depends on: the architecture, torch's view of the
    vector units and, on Linux, the CPU's feature flags (a cache folder shared between
    machines must not hand one CPU another's instructions)."""
    flags = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        flags = next((line for line in cpuinfo if line.startswith("flags")), "")
    return f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()} {flags}"


def _build_and_load(
    name: str, source: str, flags: list[str], compiler: str | None, key: str
) -> ctypes.CDLL:
    if compiler is None:
        raise KernelBuildError(f"{name}: no C compiler (cc/gcc) on PATH")
    target = kernel_cache_dir() / f"{name}_{key}.so"
    try:
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                src = Path(tmp) / f"{name}.c"
                src.write_text(source)
                out = Path(tmp) / target.name
                subprocess.run(
                    [compiler, *flags, str(src), "-o", str(out), "-lm"],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                os.replace(out, target)
        return ctypes.CDLL(str(target))
    except (OSError, subprocess.CalledProcessError) as e:
        detail = (getattr(e, "stderr", "") or str(e)).strip()[:500]
        raise KernelBuildError(f"{name}: building the C kernel failed: {detail}") from e
