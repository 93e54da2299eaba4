"""What linear and generalized fits share about their random effects: group counts, the
singularity rule, conditional modes as tables, per-level coefficients, and the random part
of a prediction for new rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mixedmodels.design.grouping import group_codes, level_labels
from mixedmodels.design.model import RandomTerm
from mixedmodels.errors import NewLevelError

SINGULAR_TOLERANCE = 1e-4  # lme4's isSingular(tol = 1e-4)


def group_counts(terms: list[RandomTerm]) -> dict[str, int]:
    """Number of levels of each grouping factor (each factor once, lme4's ``ngrps``)."""
    out: dict[str, int] = {}
    for t in terms:
        out.setdefault(t.group_name, t.n_levels)
    return out


def is_singular(theta: np.ndarray, lower: np.ndarray) -> bool:
    """True when a theta element bounded below by 0 is below 1e-4 (lme4's rule)."""
    return bool(np.any(theta[lower == 0] < SINGULAR_TOLERANCE))


def ranef_frames(terms: list[RandomTerm], b: list[np.ndarray]) -> dict[str, pd.DataFrame]:
    """Conditional modes: group name -> DataFrame (levels x coefficients); terms of one
    grouping factor side by side."""
    out: dict[str, pd.DataFrame] = {}
    for t, modes in zip(terms, b, strict=True):
        frame = pd.DataFrame(
            modes, index=pd.Index(t.levels, name=t.group_name), columns=t.column_names
        )
        if t.group_name in out:
            out[t.group_name] = out[t.group_name].join(frame, rsuffix="_")
        else:
            out[t.group_name] = frame
    return out


def ranef_long(terms: list[RandomTerm], b: list[np.ndarray], sd: list[np.ndarray]) -> pd.DataFrame:
    """lme4's ``as.data.frame(ranef(m, condVar = TRUE))``: grpvar, term, grp, condval,
    condsd (``sd[k]`` has the shape of ``b[k]``)."""
    parts = []
    for t, modes, sds in zip(terms, b, sd, strict=True):
        for j, name in enumerate(t.column_names):
            parts.append(
                pd.DataFrame(
                    {
                        "grpvar": t.group_name,
                        "term": name,
                        "grp": t.levels,
                        "condval": modes[:, j],
                        "condsd": sds[:, j],
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def level_coefficients(
    ranef: dict[str, pd.DataFrame], beta: np.ndarray, fixed_names: list[str]
) -> dict[str, pd.DataFrame]:
    """lme4's ``coef``: per level, the fixed effects plus that level's random effects."""
    out = {}
    for group, re in ranef.items():
        frame = pd.DataFrame(np.tile(beta, (len(re), 1)), index=re.index, columns=fixed_names)
        for col in re.columns:
            base = frame[col].to_numpy() if col in frame.columns else 0.0
            frame[col] = base + re[col].to_numpy()
        out[group] = frame
    return out


def new_data_codes(
    term: RandomTerm, newdata: pd.DataFrame, allow_new_levels: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, z)`` of new rows for one term; codes are -1 for levels not seen in
    fitting, which is a :class:`NewLevelError` naming them unless ``allow_new_levels``."""
    codes = term.codes_for(newdata)
    unseen = codes < 0
    if unseen.any() and not allow_new_levels:
        new = sorted(set(group_codes(newdata.loc[unseen], term.spec.group_factors)[1]))
        new = level_labels(pd.Index(new))
        raise NewLevelError(
            f"new levels of grouping factor {term.group_name!r} in newdata: "
            f"{', '.join(new[:10])}{' ...' if len(new) > 10 else ''}; "
            "pass allow_new_levels=True to predict them with zero random effects"
        )
    return codes, term.builder.build(newdata)


def random_part(codes: np.ndarray, z: np.ndarray, modes: np.ndarray) -> np.ndarray:
    """``z_i' b_{level(i)}`` per row, 0 for unseen levels (code -1)."""
    unseen = codes < 0
    safe = np.where(unseen, 0, codes)
    return np.where(unseen, 0.0, np.einsum("np,np->n", z, modes[safe]))
