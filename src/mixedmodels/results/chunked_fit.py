"""The fit of a linear mixed model whose rows were read in chunks (Parquet, Dask).

Everything that depends only on the reduced problem works as for an in-memory fit: fixed
effects, vcov, theta, variance components, conditional modes and their variances, coef,
log-likelihood, AIC/BIC, the summary, Satterthwaite df, profiles, likelihood-ratio tests,
and predictions for new data in memory.

Row-level outputs take a further pass over the rows, chunk by chunk, with the fit's
estimates:

* a Dask DataFrame: ``fit.fitted``, ``fit.residuals`` and ``fit.predict(dask_frame)`` are
  lazy Dask Series (one task per partition, computed where the partitions live);
* a Parquet path: ``fit.write_fitted("fitted.parquet")`` writes the fitted values and
  residuals of the complete rows (with each row's position in the data) and
  ``fit.predict("new/*.parquet", out="predictions.parquet")`` the predictions for new
  rows, batch by batch; ``fit.fitted`` says so;
* ``mm.FrameSource`` (rows in memory): arrays, as an in-memory fit gives them.

What needs all rows at once (simulation, the bootstrap, Kenward-Roger, ``X``/``Z``) is a
clear error.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from mixedmodels.design.sources import DaskSource, FrameSource, ParquetSource, is_dask_frame
from mixedmodels.errors import ArgumentError, DataError
from mixedmodels.results.fit import LmerFit


def _rows_needed(what: str) -> DataError:
    return DataError(
        f"{what} needs the rows, which this fit read in chunks and did not keep; fit the "
        "rows in memory (a pandas DataFrame) or compute it with a pass of your own over "
        "the data from fit.fixef and fit.ranef"
    )


def row_values(frame: pd.DataFrame, design, beta: np.ndarray, b: list[np.ndarray]) -> pd.DataFrame:
    """Fitted values ``X beta + Z b + offset`` and residuals ``y - fitted`` of one chunk's
    complete rows, indexed by the rows' labels (the in-memory fit's sums, in its order)."""
    chunk = design.encoder.encode(frame)
    X = chunk.X[:, design.fixed_keep]
    fitted = X @ beta
    random = np.zeros(X.shape[0])
    for j, position in enumerate(design.permutation):
        block = chunk.blocks[position]
        random += np.einsum("np,np->n", block.z, b[j][block.codes])
    fitted = fitted + random
    if chunk.offset is not None:
        fitted = fitted + chunk.offset
    return pd.DataFrame({"fitted": fitted, "residuals": chunk.y - fitted}, index=chunk.index)


def _row_series(frame: pd.DataFrame, design, beta, b, what: str) -> pd.Series:
    return row_values(frame, design, beta, b)[what]


def _predict_partition(frame: pd.DataFrame, fit: LmerFit, options: dict) -> pd.Series:
    return pd.Series(LmerFit.predict(fit, frame, **options), index=frame.index, name="predicted")


class ChunkedLmerFit(LmerFit):
    """An :class:`LmerFit` from data read in chunks (no rows kept)."""

    rows_available = False

    def __dask_tokenize__(self) -> tuple:
        """Dask's name for this fit in task graphs: the model and its estimates."""
        return (
            type(self).__name__,
            self.formula,
            tuple(self._solution.theta.tolist()),
            tuple(self._solution.beta.tolist()),
        )

    # ------------------------------------------------------------------ row-level outputs
    def _portable(self) -> ChunkedLmerFit:
        """This fit without its row source (what travels to workers)."""
        light = copy.copy(self)
        light._design = dataclasses.replace(self._design, source=None)
        return light

    def _row_output(self, what: str):
        source = self._design.source
        beta, b = self._solution.beta, self._solution.b
        design = self._portable()._design
        if isinstance(source, DaskSource):
            data = source.data[design.encoder.needed]
            meta = pd.Series(dtype=float, name=what)
            return data.map_partitions(_row_series, design, beta, b, what, meta=meta)
        if isinstance(source, FrameSource):
            parts = source.map(lambda f: row_values(f, design, beta, b), design.encoder.needed)
            return pd.concat(list(parts))[what].to_numpy()
        raise DataError(
            f"{what} of data read from Parquet are written to Parquet, not held in memory: "
            'fit.write_fitted("fitted.parquet") writes the fitted values and residuals of '
            "every complete row (with its position in the data)"
        )

    @property
    def fitted(self):
        """Conditional fitted values ``X beta + Z b (+ offset)`` of the complete rows: a
        lazy Dask Series for a Dask DataFrame, an array for ``mm.FrameSource``; for
        Parquet data see :meth:`write_fitted`."""
        return self._row_output("fitted")

    @property
    def residuals(self):
        """Response minus conditional fitted values, as :attr:`fitted`."""
        return self._row_output("residuals")

    def write_fitted(self, out: str | Path) -> str:
        """Write the fitted values and residuals of every complete row to the Parquet file
        ``out`` (columns ``row``: the row's position in the data for Parquet input, its
        index label otherwise; ``fitted``; ``residuals``), one pass over the rows.

        Returns
        -------
        str
            The path written.
        """
        source = self._design.source
        design = self._portable()._design
        beta, b = self._solution.beta, self._solution.b
        parts = source.map(lambda f: row_values(f, design, beta, b), design.encoder.needed)
        return _write_parts(parts, out)

    def predict(self, newdata=None, *, out: str | Path | None = None, **options):
        """Predictions as :meth:`LmerFit.predict`; ``newdata`` may also be a Dask
        DataFrame (a lazy Dask Series, aligned with its rows) or a Parquet path (file,
        directory or glob: the predictions of every row, NaN where a value the prediction
        reads is missing, written batch by batch to the Parquet file ``out`` with each
        row's position, ``row``; the path is returned).  Without ``newdata``: the fitted
        rows (:attr:`fitted`)."""
        if newdata is None:
            if options.get("include_random", True) is False or options.get("interval"):
                raise _rows_needed("predict without newdata (other than the fitted values)")
            return self.fitted
        if is_dask_frame(newdata):
            if options.get("interval") is not None:
                raise ArgumentError("intervals are not available for Dask newdata")
            meta = pd.Series(dtype=float, name="predicted")
            return newdata.map_partitions(_predict_partition, self._portable(), options, meta=meta)
        if isinstance(newdata, str | Path):
            if out is None:
                raise ArgumentError(
                    "predictions for a Parquet path are written to Parquet: pass "
                    'out="predictions.parquet"'
                )
            return self._predict_parquet(ParquetSource(newdata), out, options)
        if out is not None:
            raise ArgumentError("out= applies to Parquet newdata (a path) only")
        return super().predict(newdata, **options)

    def _predict_parquet(self, source: ParquetSource, out: str | Path, options: dict) -> str:
        fit = self._portable()

        def predicted(frame: pd.DataFrame) -> pd.DataFrame:
            values = LmerFit.predict(fit, frame, **options)
            if isinstance(values, pd.DataFrame):
                return values.set_axis(frame.index)
            return pd.DataFrame({"predicted": values}, index=frame.index)

        return _write_parts((predicted(f) for f in source.map(lambda f: f, source.columns)), out)

    # ------------------------------------------------------------------ what needs all rows
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


def _write_parts(parts: Iterable[pd.DataFrame], out: str | Path) -> str:
    """Write frames one after another to the Parquet file ``out``, each frame's index as
    the column ``row``; the path is returned."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for part in parts:
            rows = part.rename_axis("row").reset_index()
            table = pa.Table.from_pandas(rows, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(str(out), table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return str(out)
