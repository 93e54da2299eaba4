"""single_threaded_blas: one BLAS thread inside, nested entries keep it, the original
limits come back on leaving (read back from threadpoolctl, the independent reference)."""

from threadpoolctl import threadpool_info

from mixedmodels.linalg.threads import single_threaded_blas


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_nested_contexts_keep_one_thread_and_restore():
    with single_threaded_blas():  # loads scipy's BLAS
        pass
    before = _blas_threads()
    with single_threaded_blas():
        assert all(n == 1 for n in _blas_threads())
        with single_threaded_blas():
            assert all(n == 1 for n in _blas_threads())
        assert all(n == 1 for n in _blas_threads())  # the inner exit did not restore
    assert _blas_threads() == before


def test_disabled_context_changes_nothing():
    with single_threaded_blas():
        pass
    before = _blas_threads()
    with single_threaded_blas(False):
        assert _blas_threads() == before


def test_exception_inside_restores():
    with single_threaded_blas():
        pass
    before = _blas_threads()
    try:
        with single_threaded_blas():
            with single_threaded_blas():
                raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert _blas_threads() == before
    with single_threaded_blas():  # the depth count came back to 0: a new entry limits again
        assert all(n == 1 for n in _blas_threads())
