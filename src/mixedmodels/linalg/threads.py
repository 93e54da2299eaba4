"""BLAS thread control for small problems.

On matrices of a few dozen rows a multi-threaded BLAS spends longer handing work to its
threads than computing: the dense objective of sleepstudy (q = 36) takes 77 us per
evaluation with two OpenBLAS threads and 49 us with one (measured on the 2-core CI
machine).  Small fits therefore run with one BLAS thread; large ones keep the default.

Entering the context inside another one is free: the limit is already in place, and
threadpoolctl's set-and-restore costs ~0.2 ms (it inspects every loaded library), which a
GLMM paid twice per scoring step (sleepstudy Gamma: 3,000 nested entries, 0.5 s of 4.9 s
under cProfile).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager, nullcontext

_controller = None
_depth = 0  # how many single-threaded contexts are open


@contextmanager
def _limited():
    global _depth
    if _depth:
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return
    with _controller.limit(limits=1, user_api="blas"):
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1


def single_threaded_blas(enabled: bool = True) -> AbstractContextManager:
    """A context in which BLAS/LAPACK use one thread (a no-op when ``enabled`` is False;
    nested inside another such context it does nothing more)."""
    global _controller
    if not enabled:
        return nullcontext()
    if _controller is None:
        import scipy.linalg  # noqa: F401  (load scipy's BLAS so the controller sees it)
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _limited()
