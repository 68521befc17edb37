"""Building, caching and loading C sources (mambakit.ssm.cbuild)."""

import ctypes
import shutil

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
