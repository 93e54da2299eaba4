"""broom.mixed's names of the random-effect parameters (``tidy``'s ``ran_pars`` rows)."""

from __future__ import annotations

import numpy as np


def broom_terms(term_info: list[tuple[str, list[str], np.ndarray]]) -> dict[str, str]:
    """Our parameter names (``sd_<col>|<group>``, ``cor_<row>.<col>|<group>``, as
    :func:`mixedmodels.results.parameters.parameter_names` gives them) -> broom.mixed's
    terms ``sd__<col>`` and ``cor__<col>.<row>`` (the earlier column first, as
    ``VarCorr``'s ``var1``, ``var2``), for each ``(group label, columns, covariance)``.

    Names of other covariance structures' parameters are absent: their callers keep the
    name's part before ``|``.
    """
    out: dict[str, str] = {}
    for group, cols, _ in term_info:
        for i, first in enumerate(cols):
            out[f"sd_{first}|{group}"] = f"sd__{first}"
            for second in cols[i + 1 :]:
                out[f"cor_{second}.{first}|{group}"] = f"cor__{first}.{second}"
    return out
