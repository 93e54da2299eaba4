"""The fit of a linear mixed model whose rows were read in chunks (Parquet, Dask).

Everything that depends only on the reduced problem works as for an in-memory fit: fixed
effects, vcov, theta, variance components, conditional modes and their variances, coef,
log-likelihood, AIC/BIC, the summary, Satterthwaite df, profiles, likelihood-ratio tests,
and predictions for new data in memory.  What needs the rows again (fitted values,
residuals, simulation, the bootstrap, Kenward-Roger, ``X``/``Z``) is a clear error.
"""

from __future__ import annotations

from mixedmodels.errors import DataError
from mixedmodels.results.fit import LmerFit


def _rows_needed(what: str) -> DataError:
    return DataError(
        f"{what} needs the rows, which this fit read in chunks and did not keep; fit the "
        "rows in memory (a pandas DataFrame) or compute it with a pass of your own over "
        "the data from fit.fixef and fit.ranef"
    )


class ChunkedLmerFit(LmerFit):
    """An :class:`LmerFit` from data read in chunks (no rows kept)."""

    rows_available = False

    @property
    def fitted(self):
        raise _rows_needed("fitted")

    @property
    def residuals(self):
        raise _rows_needed("residuals")

    @property
    def scaled_residuals(self):
        raise _rows_needed("scaled_residuals")

    @property
    def X(self):
        raise _rows_needed("X")

    @property
    def Z(self):
        raise _rows_needed("Z")

    def simulate(self, nsim: int = 1, seed=None):
        raise _rows_needed("simulate")

    def bootstrap(self, *args, **kwargs):
        raise _rows_needed("bootstrap")

    def fixef_table(self, ddf: str = "satterthwaite"):
        if str(ddf).lower().replace("_", "-") in ("kenward-roger", "kr"):
            raise _rows_needed("Kenward-Roger")
        return super().fixef_table(ddf)
