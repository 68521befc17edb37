"""Building, caching and loading C sources (mambakit.ssm.cbuild)."""

import contextlib
import ctypes
import os
import shutil
import sys

import pytest
import torch

from mambakit.ssm import cbuild

needs_cc = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler"
)
SOURCE = "long add_longs(long a, long b) { return a + b; }\n/* %s */\n"


@needs_cc
def test_builds_once_into_the_cache_and_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    source = SOURCE % tmp_path  # a source no other test built in this process
    lib = cbuild.load_library("adder", source)
    lib.add_longs.restype = ctypes.c_long
    assert lib.add_longs(40, 2) == 42
    built = list((tmp_path / "mambakit" / "kernels").glob("adder_*.so"))
    assert len(built) == 1
    assert cbuild.load_library("adder", source) is lib


@needs_cc
def test_a_compile_error_says_why_every_time(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    source = f"int broken( {{ /* {tmp_path} */"
    for _ in range(2):
        with pytest.raises(cbuild.KernelBuildError, match="broken: building the C kernel failed"):
            cbuild.load_library("broken", source)
    assert not list((tmp_path / "mambakit" / "kernels").glob("broken_*.so"))


def test_a_missing_compiler_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", str(tmp_path / "no-cc"))
    with pytest.raises(cbuild.KernelBuildError, match="no-cc"):
        cbuild.load_library("adder", SOURCE % "missing compiler")


@needs_cc
def test_kernel_library_types_its_functions_and_remembers_a_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = tmp_path / "add.c"
    path.write_text("void add_to(long *x, long y) { *x += y; }\n")
    kernels = cbuild.KernelLibrary("add_to", path, {"add_to": [ctypes.c_void_p, ctypes.c_long]})
    assert kernels.available() and kernels.failed is None
    x = ctypes.c_long(40)
    kernels.lib.add_to(ctypes.addressof(x), 2)  # the argtypes make a Python int a long
    assert x.value == 42
    assert kernels.load() is kernels.lib  # loaded once
    assert kernels.supports(torch.zeros(2), torch.zeros(3, 1))
    assert not kernels.supports(torch.zeros(2), torch.zeros(2, dtype=torch.float64))
    missing = cbuild.KernelLibrary("gone", tmp_path / "gone.c", {})
    assert missing.load() is None and not missing.available()
    assert "gone: cannot read" in missing.unavailable_reason()
    assert not missing.supports(torch.zeros(2))


def test_range_bounds_are_the_starts_then_the_last_end():
    bounds, count = cbuild.range_bounds([(0, 3), (3, 7), (7, 8)])
    assert list(bounds) == [0, 3, 7, 8] and count == 3
    with pytest.raises(ValueError, match="not consecutive"):
        cbuild.range_bounds([(0, 3), (4, 7)])


# Each range i writes i + 1 over its elements and the OpenMP thread that ran it.
RANGES_SOURCE = """
#include <omp.h>
void mark_par(long *value, long *thread, const long *rg, long n_ranges) {
    FOR_RANGES for (long j = rg[i]; j < rg[i + 1]; ++j) {
        value[j] += i + 1;
        thread[j] = omp_get_thread_num();
    }
}
"""


@needs_cc
def test_for_ranges_runs_each_range_once_on_torchs_openmp_team(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = tmp_path / "mark.c"
    path.write_text(RANGES_SOURCE)
    flags = [f for f in cbuild.DEFAULT_FLAGS if f != "-fopenmp-simd"] + ["-fopenmp"]
    signature = {"mark_par": [ctypes.c_void_p] * 3 + [ctypes.c_long]}
    kernels = cbuild.KernelLibrary("mark", path, signature, flags)
    if not kernels.available():
        pytest.skip(f"no OpenMP build here: {kernels.unavailable_reason()}")
    value, thread = torch.zeros(10, dtype=torch.long), torch.full((10,), -1, dtype=torch.long)
    ranges = [(0, 4), (4, 9), (9, 10)]
    kernels.lib.mark_par(value.data_ptr(), thread.data_ptr(), *cbuild.range_bounds(ranges))
    assert value.tolist() == [1] * 4 + [2] * 5 + [3]
    assert thread.tolist() == [0] * 4 + [1] * 5 + [2]  # one thread per range
    with open("/proc/self/maps") if sys.platform == "linux" else contextlib.nullcontext() as maps:
        if maps is not None:  # the team is torch's: one runtime of the soname libgomp.so.1
            # (other wheels may bring their own under renamed sonames: scikit-learn does)
            paths = {line.split()[-1] for line in maps if "libgomp" in line}
            runtimes = {p for p in paths if os.path.basename(p).startswith("libgomp.so")}
            assert len(runtimes) == 1, paths
