"""The design's prototypes and factor levels are computed on first access: they must be
what the eager computation gives (the reference: each used column without rows, and
``label_table`` of each factor of the rows used), and pickle as plain dicts."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.design import build_design
from mixedmodels.design.grouping import label_table
from mixedmodels.design.model import LazyTable
from mixedmodels.errors import MixedModelsError


def _frame():
    rng = np.random.default_rng(3)
    n = 60
    return pd.DataFrame(
        {
            "y": rng.standard_normal(n),
            "x": rng.standard_normal(n),
            "f": pd.Categorical(rng.choice(["lo", "mid", "hi"], n), ["lo", "mid", "hi", "none"]),
            "h": rng.choice([1, 2, 3], n),
            "g": np.repeat([f"s{i}" for i in range(10)], 6),
        }
    )


def test_lazy_tables_equal_the_eager_ones():
    data = _frame()
    design = build_design("y ~ x * f + factor(h) + (x | g)", data)
    assert isinstance(design.prototypes, LazyTable)
    expected = {name: data[name].iloc[:0] for name in ["y", "x", "f", "h", "g"]}
    assert list(design.prototypes) == list(expected)
    for name, proto in expected.items():
        assert len(design.prototypes[name]) == 0
        assert design.prototypes[name].dtype == proto.dtype
    assert dict(design.model_levels) == {
        "f": label_table(data["f"]),
        "h": label_table(data["h"]),
    }
    assert design.model_levels.get("x") is None


def test_lazy_tables_pickle_as_dicts():
    design = build_design("y ~ x + f + (1 | g)", _frame())
    levels = pickle.loads(pickle.dumps(design.model_levels))
    assert type(levels) is dict and levels == dict(design.model_levels)
    protos = pickle.loads(pickle.dumps(design.prototypes))
    assert type(protos) is dict and list(protos) == ["y", "x", "f", "g"]


def test_new_level_still_caught_after_lazy_levels():
    data = _frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pure-noise data: the fit may be singular
        fit = mm.lmer("y ~ x + f + (1 | g)", data)
    new = data.head(3).copy()
    new["f"] = pd.Categorical(["none"] * 3, ["lo", "mid", "hi", "none"])
    with pytest.raises(MixedModelsError, match="none"):
        fit.predict(new, include_random=False)
    # the levels it saw are accepted, and give the fit's own population predictions
    np.testing.assert_allclose(
        fit.predict(data.head(3), include_random=False),
        fit.predict(include_random=False)[:3],
        rtol=1e-12,
    )
