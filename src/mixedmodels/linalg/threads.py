"""BLAS thread control for small problems.

On matrices of a few dozen rows a multi-threaded BLAS spends longer handing work to its
threads than computing: the dense objective of sleepstudy (q = 36) takes 77 us per
evaluation with two OpenBLAS threads and 49 us with one (measured on the 2-core CI
machine).  Small fits therefore run with one BLAS thread; large ones keep the default.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

_controller = None


def single_threaded_blas(enabled: bool = True) -> AbstractContextManager:
    """A context in which BLAS/LAPACK use one thread (a no-op when ``enabled`` is False)."""
    global _controller
    if not enabled:
        return nullcontext()
    if _controller is None:
        import scipy.linalg  # noqa: F401  (load scipy's BLAS so the controller sees it)
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")
