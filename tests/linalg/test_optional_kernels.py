"""The loader of optional compiled kernels: a module when it imports, else None and one
warning naming the failure."""

from __future__ import annotations

import sys
import warnings

import pytest

from mixedmodels.errors import MixedModelsWarning
from mixedmodels.linalg.fillin import numba_available
from mixedmodels.linalg.optional_kernels import OptionalKernels

needs_numba = pytest.mark.skipif(not numba_available(), reason="needs numba (fast extra)")


@needs_numba
def test_a_module_that_imports_is_returned():
    kernels = OptionalKernels("json", "the test's kernels", "using numpy")
    assert kernels.load() is sys.modules["json"]
    assert kernels.available() and kernels.failure is None


@needs_numba
def test_a_failing_import_warns_once_then_stays_off(monkeypatch):
    monkeypatch.setitem(sys.modules, "mixedmodels_missing_kernels", None)  # ImportError
    kernels = OptionalKernels("mixedmodels_missing_kernels", "the test's kernels", "using numpy")
    with pytest.warns(MixedModelsWarning, match="the test's kernels: unavailable .*numba "
                      "failed to load: ModuleNotFoundError.*; using numpy"):
        assert kernels.load() is None
    assert kernels.failure.startswith("ModuleNotFoundError") and not kernels.available()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        assert kernels.load() is None


@needs_numba
def test_the_chunk_sums_fall_back_when_their_kernels_fail(monkeypatch):
    from mixedmodels.core import reduce

    kernels = OptionalKernels("mixedmodels_missing_kernels", "the chunk sums", "using numpy")
    monkeypatch.setitem(sys.modules, "mixedmodels_missing_kernels", None)
    monkeypatch.setattr(reduce, "_REDUCE_KERNELS", kernels)
    with pytest.warns(MixedModelsWarning, match="numba failed to load"):
        assert reduce.reduce_kernels() is None
    monkeypatch.setattr(reduce, "USE_KERNELS", False)
    assert reduce.reduce_kernels() is None


@needs_numba
def test_a_loaded_module_is_kept(monkeypatch):
    """A small fit asks for its kernels at every step: once loaded the module is returned
    without looking for numba or importing again."""
    kernels = OptionalKernels("json", "the test's kernels", "using numpy")
    first = kernels.load()
    monkeypatch.setitem(sys.modules, "json", None)  # an import now would fail
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)  # and numba "missing"
    assert kernels.load() is first and kernels.available()


_CALLEE = """from numba import njit


@njit(cache=True)
def value():
    return {value}
"""

_CALLER = """from numba import njit

from stalepkg.callee import value


@njit(cache=True)
def twice():
    return 2.0 * value()
"""

_CHILD = """import sys
from mixedmodels.linalg.optional_kernels import clear_stale_cache
removed = clear_stale_cache("stalepkg.caller") if sys.argv[1] == "1" else 0
import stalepkg.caller
print(stalepkg.caller.twice(), removed)
"""


def _run_child(root, check: bool) -> tuple[float, int]:
    import os
    import subprocess
    from pathlib import Path

    import mixedmodels

    src = str(Path(mixedmodels.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), src]))
    env.pop("NUMBA_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", _CHILD, "1" if check else "0"], env=env,
                         capture_output=True, text=True, check=True, cwd=root)
    value, removed = out.stdout.split()
    return float(value), int(removed)


@pytest.mark.skipif(not numba_available(), reason="numba is not installed")
def test_a_cached_kernel_sees_an_edited_callee_of_another_module(tmp_path):
    """numba keys a function's disk cache by its own file only: a cached caller keeps an
    edited callee's old code.  clear_stale_cache (run by OptionalKernels.load before the
    import) removes the caller's cache when a module it imports changed."""
    package = tmp_path / "stalepkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "caller.py").write_text(_CALLER)
    callee = package / "callee.py"
    callee.write_text(_CALLEE.format(value="1.0"))
    assert _run_child(tmp_path, check=True)[0] == 2.0  # compiled and cached
    assert _run_child(tmp_path, check=True) == (2.0, 0)  # the cache is kept while current
    callee.write_text(_CALLEE.format(value="5.0  # edited"))
    stale, _ = _run_child(tmp_path, check=False)  # numba alone (2.0: the old callee)
    value, removed = _run_child(tmp_path, check=True)
    assert value == 10.0, f"stale cache kept (numba alone gave {stale})"
    assert removed >= 2  # the caller's index and code files
    assert _run_child(tmp_path, check=True) == (10.0, 0)


def test_the_digest_follows_the_imported_modules_of_the_package(tmp_path, monkeypatch):
    """The digest changes with a module the kernel module imports (also through
    ``from package.sub import module``), not with one it does not import."""
    from mixedmodels.linalg.optional_kernels import dependency_digest

    package = tmp_path / "digestpkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "used.py").write_text("A = 1\n")
    (package / "other.py").write_text("B = 1\n")
    (package / "kernels.py").write_text(
        "from digestpkg.sub import (  # a comment\n    used,\n)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = dependency_digest("digestpkg.kernels")
    (package / "other.py").write_text("B = 2\n")
    assert dependency_digest("digestpkg.kernels") == before
    (package / "sub" / "used.py").write_text("A = 2\n")
    assert dependency_digest("digestpkg.kernels") != before
