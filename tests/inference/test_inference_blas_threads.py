"""Inference on a small lmer fit runs with one BLAS thread, as the fit itself does
(``LmmProblem.blas_context``): with two OpenBLAS threads on 2 loaded cores the
Satterthwaite df of sleepstudy ``(Days | Subject)`` took 0.60 s CPU against 0.006 s with
one, its profile intervals 4.8 s against 0.53 s, and the summary of a structured fit
(``cs(0 + cond | subj)``, 360 rows) 4.6 s against 0.04 s.  The thread count is read back
from threadpoolctl inside the computations (the independent reference); the limit is gone
again afterwards."""

import pytest
from threadpoolctl import threadpool_info

import mixedmodels as mm
import mixedmodels.inference.profile as profile_module
import mixedmodels.inference.satterthwaite as satterthwaite_module
from mixedmodels.linalg.threads import single_threaded_blas


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.fixture(scope="module")
def fit():
    return mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))


def _recording(monkeypatch, module, name: str) -> list[list[int]]:
    seen: list[list[int]] = []
    original = getattr(module, name)

    def wrapped(*args, **kwargs):
        seen.append(_blas_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)
    return seen


def test_satterthwaite_runs_single_threaded(fit, monkeypatch):
    with single_threaded_blas():  # loads scipy's BLAS, so that there is a limit to read
        pass
    before = _blas_threads()
    seen = _recording(monkeypatch, satterthwaite_module, "_variance_parameter_info")
    table = fit.fixef_table()
    assert seen and all(n == 1 for threads in seen for n in threads)
    assert _blas_threads() == before
    assert table.shape[0] == 2


def test_profile_intervals_run_single_threaded(fit, monkeypatch):
    with single_threaded_blas():
        pass
    before = _blas_threads()
    seen = _recording(monkeypatch, profile_module, "_solve_end")
    fit.confint("profile")
    assert len(seen) == 2 * 6  # both ends of 3 sd/cor, sigma and 2 fixed effects
    assert all(n == 1 for threads in seen for n in threads)
    assert _blas_threads() == before
