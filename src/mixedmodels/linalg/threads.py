"""BLAS thread control for small problems.

On matrices of a few dozen rows a multi-threaded BLAS spends longer handing work to its
threads than computing: the dense objective of sleepstudy (q = 36) takes 77 us per
evaluation with two OpenBLAS threads and 49 us with one (measured on the 2-core CI
machine).  Small fits therefore run with one BLAS thread; large ones keep the default.

Entering the context inside another one is free: the limit is already in place, and
threadpoolctl's set-and-restore costs ~0.2 ms (it inspects every loaded library), which a
GLMM paid twice per scoring step (sleepstudy Gamma: 3,000 nested entries, 0.5 s of 4.9 s
under cProfile).  Nor is anything set or restored when every BLAS library runs one thread
already (``OMP_NUM_THREADS=1``, or a limit the caller set): the libraries' own thread
counts, read once each (~1 us), decide (a whole small fit paid ~12 us for threadpoolctl's
set-and-restore of a limit that was in place).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

_controller = None
_blas: list = []  # threadpoolctl's controllers of the BLAS libraries it found
_depth = 0  # how many single-threaded contexts are open


def _single_threaded_already() -> bool:
    """Whether every BLAS library found runs one thread."""
    return all(lib.get_num_threads() == 1 for lib in _blas)


class _Limited(AbstractContextManager):
    """One BLAS thread inside: threadpoolctl's limit at the outermost entry, unless every
    BLAS library runs one thread already; nothing at nested entries."""

    __slots__ = ("_limiter",)

    def __enter__(self):
        global _depth
        self._limiter = None
        if not _depth and not _single_threaded_already():
            limiter = _controller.limit(limits=1, user_api="blas")  # sets the limit
            limiter.__enter__()
            self._limiter = limiter
        _depth += 1
        return None

    def __exit__(self, kind, value, traceback) -> None:
        global _depth
        _depth -= 1
        if self._limiter is not None:
            self._limiter.__exit__(kind, value, traceback)  # restores the limits
            self._limiter = None
        return None


def single_threaded_blas(enabled: bool = True) -> AbstractContextManager:
    """A context in which BLAS/LAPACK use one thread (a no-op when ``enabled`` is False;
    nested inside another such context, or with every BLAS library on one thread
    already, it does nothing more)."""
    global _controller, _blas
    if not enabled:
        return nullcontext()
    if _controller is None:
        import scipy.linalg  # noqa: F401  (load scipy's BLAS so the controller sees it)
        from threadpoolctl import ThreadpoolController

        controller = ThreadpoolController()
        _blas = list(controller.select(user_api="blas").lib_controllers)
        _controller = controller
    return _Limited()
