"""Command line: ``mixedmodels fit FORMULA --data NAME_OR_FILE [--ml] [--json]
[--family binomial|poisson]``."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from mixedmodels import datasets
from mixedmodels.api import glmer, lmer
from mixedmodels.errors import ArgumentError, DataError, MixedModelsError
from mixedmodels.results.fit import LmerFit


def read_data(source: str) -> tuple[pd.DataFrame, str]:
    """A bundled data set by name, or a CSV / Parquet file by path."""
    path = Path(source)
    if path.suffix.lower() in {".csv", ".gz", ".parquet", ".pq"} or path.exists():
        if not path.exists():
            raise DataError(f"data file {source!r} does not exist")
        if path.suffix.lower() in {".parquet", ".pq"}:
            try:
                return pd.read_parquet(path), path.stem
            except ImportError as exc:
                raise DataError(
                    "reading Parquet needs pyarrow: pip install 'mixedmodels[parquet]'"
                ) from exc
        return pd.read_csv(path), path.name.split(".")[0]
    return datasets.load(source), source


def fit_to_dict(fit) -> dict:
    """A JSON-ready description of a fit (lmer or glmer)."""
    se = np.sqrt(np.diagonal(fit.vcov.to_numpy()))
    vc = fit.varcorr
    glmm = not isinstance(fit, LmerFit)
    return {
        "formula": fit.formula,
        "family": str(fit.family) if glmm else "gaussian",
        "reml": False if glmm else fit.reml,
        "objective": fit.deviance if glmm else fit.objective,
        "loglik": fit.loglik,
        "aic": fit.aic,
        "bic": fit.bic,
        "nobs": fit.nobs,
        "n_dropped": fit.n_dropped,
        "ngroups": fit.ngroups,
        "fixef": dict(zip(fit.fixef.index, fit.fixef.to_numpy().tolist(), strict=True)),
        "std_errors": dict(zip(fit.fixef.index, se.tolist(), strict=True)),
        "vcov": fit.vcov.to_numpy().tolist(),
        "sigma": fit.sigma,
        "theta": fit.theta.tolist(),
        "varcorr": [
            {k: (None if (isinstance(v, float) and np.isnan(v)) else v) for k, v in row.items()}
            for row in vc.to_dict(orient="records")
        ],
        "is_singular": fit.is_singular,
        "converged": fit.converged,
        "n_evaluations": fit.n_evaluations,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mixedmodels", description="Linear mixed-effects models in lme4's formula language."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit a linear mixed model and print its summary")
    fit.add_argument("formula", help='e.g. "Reaction ~ Days + (Days|Subject)"')
    fit.add_argument("--data", required=True, help="bundled data set name or CSV/Parquet path")
    fit.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    fit.add_argument("--json", action="store_true", help="print a JSON result instead")
    fit.add_argument("--weights", help="column of prior weights")
    fit.add_argument(
        "--family",
        choices=["gaussian", "binomial", "poisson"],
        default="gaussian",
        help="response distribution: gaussian fits lmer, the others glmer (Laplace)",
    )
    fit.add_argument("--link", help="link function for --family binomial/poisson")
    fit.add_argument(
        "--ddf",
        default="satterthwaite",
        choices=["satterthwaite", "kenward-roger", "none"],
        help="denominator df for the fixed-effect t tests (none: lme4's plain layout)",
    )
    fit.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also write a figure (needs matplotlib: pip install 'mixedmodels[plot]')",
    )
    fit.add_argument(
        "--plot-kind",
        default="residuals",
        choices=["residuals", "caterpillar"],
        help="which figure --plot writes",
    )
    sub.add_parser("datasets", help="list the bundled data sets")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mixedmodels`` command."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "datasets":
            print("\n".join(datasets.list_datasets()))
            return 0
        data, name = read_data(args.data)
        if args.plot and args.family != "gaussian":
            raise ArgumentError("--plot draws figures of gaussian (lmer) fits only")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if args.family == "gaussian":
                fit = lmer(
                    args.formula, data, reml=not args.ml, weights=args.weights, data_name=name
                )
            else:
                fit = glmer(
                    args.formula,
                    data,
                    args.family,
                    link=args.link,
                    weights=args.weights,
                    data_name=name,
                )
        if args.plot:
            from mixedmodels import plots

            figure = (
                plots.plot_residuals(fit)
                if args.plot_kind == "residuals"
                else plots.plot_caterpillar(fit)
            )
            figure.savefig(args.plot, dpi=110)
            print(f"wrote {args.plot}", file=sys.stderr)
        if args.json:
            payload = fit_to_dict(fit)
            payload["warnings"] = [str(w.message) for w in caught]
            print(json.dumps(payload, indent=2))
        else:
            print(fit.summary(ddf=args.ddf) if isinstance(fit, LmerFit) else fit.summary())
            for w in caught:
                print(f"warning: {w.message}", file=sys.stderr)
    except MixedModelsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
