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


def test_already_single_threaded_sets_and_restores_nothing(monkeypatch):
    """With every BLAS library on one thread (a caller's limit, OMP_NUM_THREADS=1) the
    context neither sets nor restores: threadpoolctl's limiter is never built, and the
    caller's limit stays as the caller left it."""
    from threadpoolctl import threadpool_limits

    from mixedmodels.linalg import threads

    with single_threaded_blas():
        pass
    before = _blas_threads()
    with threadpool_limits(limits=1, user_api="blas"):

        def refuse(*args, **kwargs):
            raise AssertionError("threadpoolctl's limit was called")

        monkeypatch.setattr(threads._controller, "limit", refuse)
        with single_threaded_blas():
            assert all(n == 1 for n in _blas_threads())
        assert all(n == 1 for n in _blas_threads())
        monkeypatch.undo()
    assert _blas_threads() == before


def test_two_threads_limited_inside_and_restored():
    """From two BLAS threads (where the machine allows them) to one inside, and back."""
    from threadpoolctl import threadpool_limits

    with single_threaded_blas():
        pass
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        with single_threaded_blas():
            assert all(n == 1 for n in _blas_threads())
        assert _blas_threads() == before
