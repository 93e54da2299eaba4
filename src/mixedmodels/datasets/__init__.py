"""Classic mixed-model data sets, bundled compressed, loaded with R's factor dtypes.

The CSV files and their factor schema were exported from R's lme4 and nlme packages
(see ``data/ORIGIN.md``); ``seedsim`` is the simulated data of M. Clark's tutorial
"Thinking About Mixed Models" (2016).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

import pandas as pd

from mixedmodels.errors import DataError

__all__ = ["list_datasets", "load"]


@cache
def _schema() -> dict:
    text = resources.files(__name__).joinpath("data/schema.json").read_text()
    return json.loads(text)


def list_datasets() -> list[str]:
    """Names of the bundled data sets."""
    return sorted(_schema())


def load(name: str) -> pd.DataFrame:
    """A bundled data set as a DataFrame with categorical factor columns.

    Parameters
    ----------
    name : str
        One of :func:`list_datasets` (case-insensitive).
    """
    lookup = {k.lower(): k for k in _schema()}
    key = lookup.get(str(name).lower())
    if key is None:
        raise DataError(
            f"no bundled data set named {name!r}; available: {', '.join(list_datasets())}"
        )
    with resources.files(__name__).joinpath(f"data/{key}.csv.gz").open("rb") as fh:
        frame = pd.read_csv(fh, compression="gzip")
    for column, spec in _schema()[key].get("factors", {}).items():
        frame[column] = pd.Categorical(
            frame[column].astype(str), categories=spec["levels"], ordered=bool(spec.get("ordered"))
        )
    frame.attrs["dataset"] = key  # the summary's "Data:" line names a bundled data set
    return frame
