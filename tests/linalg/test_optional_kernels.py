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
