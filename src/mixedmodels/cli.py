"""Command line: ``mixedmodels fit FORMULA --data NAME_OR_FILE [--ml] [--json]
[--family binomial|poisson]``.

Every failure is one ``mixedmodels: error: ...`` message on stderr and a non-zero exit
status, never a traceback (``--debug`` lets the exception propagate, traceback and all):
exit status 2 for a problem with the input (a :class:`~mixedmodels.errors.MixedModelsError`,
an unreadable data file, a bad option), 1 for anything unexpected, 130 on Ctrl-C.  A closed
pipe (``mixedmodels fit ... --json | head``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from mixedmodels import datasets
from mixedmodels.api import glmer, lmer
from mixedmodels.errors import ArgumentError, DataError, MixedModelsError
from mixedmodels.results.fit import LmerFit

PROG = "mixedmodels"
EXIT_INPUT = 2  # a problem with what the user gave (as argparse's usage errors)
EXIT_INTERNAL = 1  # anything the package did not anticipate
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
EXIT_BROKEN_PIPE = 1  # the reader of stdout left early; Python's documented recipe exits 1

_FILE_SUFFIXES = {".csv", ".gz", ".parquet", ".pq"}


def read_data(source: str) -> tuple[pd.DataFrame, str]:
    """A bundled data set by name, or a CSV / Parquet file by path.

    Raises
    ------
    DataError
        When the file is missing, a folder, empty, unreadable or not valid CSV/Parquet, or
        when no bundled data set has that name.
    """
    path = Path(source)
    looks_like_path = path.suffix.lower() in _FILE_SUFFIXES or os.sep in source
    if not (looks_like_path or path.exists()):
        return datasets.load(source), source
    if path.is_dir():
        raise DataError(f"--data {source!r} is a folder, not a CSV or Parquet file")
    if not path.exists():
        raise DataError(f"--data {source!r}: no such file (and no bundled data set by that name)")
    name = path.name.split(".")[0]
    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            return pd.read_parquet(path), name
        return pd.read_csv(path), name
    except ImportError as exc:
        raise DataError(
            "reading Parquet needs pyarrow: pip install 'mixedmodels[parquet]'"
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"--data {source!r} is empty: no columns to read") from exc
    except (OSError, ValueError) as exc:  # ParserError, UnicodeDecodeError, ArrowInvalid
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"--data {source!r} could not be read: {reason}") from exc


def _finite_or_none(value):
    """``value`` with every non-finite float (NaN, inf) replaced by None: strict JSON."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    return value


def fit_to_dict(fit) -> dict:
    """A JSON-ready description of a fit (lmer or glmer); NaN and inf become null."""
    se = np.sqrt(np.diagonal(fit.vcov.to_numpy()))
    vc = fit.varcorr
    glmm = not isinstance(fit, LmerFit)
    return _finite_or_none(
        {
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
            "varcorr": vc.to_dict(orient="records"),
            "is_singular": fit.is_singular,
            "converged": fit.converged,
            "n_evaluations": fit.n_evaluations,
        }
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Linear mixed-effects models in lme4's formula language."
    )
    debug_help = "on failure show the Python traceback instead of a one-line message"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit a linear mixed model and print its summary")
    # also accepted after the subcommand; SUPPRESS keeps a --debug given before it
    fit.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
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
        choices=["satterthwaite", "kenward-roger", "none"],
        help="denominator df for the fixed-effect t tests of a gaussian fit (default "
        "satterthwaite; none: lme4's plain layout)",
    )
    fit.add_argument(
        "--plot",
        metavar="FILE.png",
        help="also write a figure (needs matplotlib: pip install 'mixedmodels[plot]')",
    )
    fit.add_argument(
        "--plot-kind",
        choices=["residuals", "caterpillar"],
        help="which figure --plot writes (default residuals)",
    )
    datasets_cmd = sub.add_parser("datasets", help="list the bundled data sets")
    datasets_cmd.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help
    )
    return parser


def _check_options(args: argparse.Namespace) -> None:
    """Options that would be silently ignored are errors instead."""
    gaussian = args.family == "gaussian"
    if gaussian and args.link is not None and args.link != "identity":
        raise ArgumentError(
            f"--link {args.link}: the gaussian family (lmer) has only the identity link; "
            "use --family binomial or poisson for other links"
        )
    if not gaussian and args.ddf is not None:
        raise ArgumentError(
            f"--ddf {args.ddf} applies to gaussian (lmer) fits; a {args.family} fit's "
            "summary has Wald z tests"
        )
    if args.plot_kind is not None and not args.plot:
        raise ArgumentError("--plot-kind needs --plot FILE.png")
    if args.plot:
        if not gaussian:
            raise ArgumentError("--plot draws figures of gaussian (lmer) fits only")
        folder = Path(args.plot).parent
        if not folder.is_dir():
            raise ArgumentError(f"--plot {args.plot!r}: folder {str(folder)!r} does not exist")
        _check_plot_format(args.plot)


def _check_plot_format(path: str) -> None:
    """An :class:`ArgumentError` before the fit when matplotlib cannot write ``path``'s
    extension (no extension: matplotlib's default format)."""
    suffix = Path(path).suffix.lower().removeprefix(".")
    if not suffix:
        return
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        return  # the plot module says how to install matplotlib
    supported = FigureCanvasBase.get_supported_filetypes()
    if suffix not in supported:
        raise ArgumentError(
            f"--plot {path!r}: matplotlib cannot write '.{suffix}' files "
            f"(choose from {', '.join(sorted(supported))})"
        )


def _run(args: argparse.Namespace) -> int:
    if args.command == "datasets":
        print("\n".join(datasets.list_datasets()))
        return 0
    _check_options(args)
    data, name = read_data(args.data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = _fit(args, data, name)
        if args.plot:
            _write_plot(fit, args.plot, args.plot_kind or "residuals")
        if args.json:
            payload = fit_to_dict(fit)
            text = None
        else:
            text = (
                fit.summary(ddf=args.ddf or "satterthwaite")
                if isinstance(fit, LmerFit)
                else fit.summary()
            )
    messages = [" ".join(str(w.message).split()) for w in caught]
    if text is None:
        payload["warnings"] = messages
        print(json.dumps(payload, indent=2, allow_nan=False))
    else:
        print(text)
        for message in messages:
            print(f"warning: {message}", file=sys.stderr)
    sys.stdout.flush()  # a closed pipe shows up here, inside main's handler, not at exit
    return 0


def _fit(args: argparse.Namespace, data: pd.DataFrame, name: str):
    if args.family == "gaussian":
        return lmer(args.formula, data, reml=not args.ml, weights=args.weights, data_name=name)
    return glmer(
        args.formula, data, args.family, link=args.link, weights=args.weights, data_name=name
    )


def _write_plot(fit, path: str, kind: str) -> None:
    from mixedmodels import plots

    figure = plots.plot_residuals(fit) if kind == "residuals" else plots.plot_caterpillar(fit)
    try:
        figure.savefig(path, dpi=110)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ArgumentError(f"--plot {path!r} could not be written: {reason}") from exc
    print(f"wrote {path}", file=sys.stderr)


def _silence_stdout() -> None:
    """After a broken pipe: send what is left of stdout to devnull, so that the flush at
    interpreter exit does not raise a second BrokenPipeError (Python's documented recipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # stdout is not a file (tests, IDEs)
        sys.stdout = open(os.devnull, "w")  # lives until exit


def _report(message: str) -> None:
    text = f"{PROG}: error: {message}"
    try:
        print(text, file=sys.stderr)
    except (BrokenPipeError, OSError, ValueError):  # stderr gone too: nothing left to tell
        pass


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mixedmodels`` command; returns the exit status.

    Failures print one ``mixedmodels: error: ...`` message to stderr (a formula error adds
    the formula with a caret under the fault) and return 2 for bad input, 1 for anything
    unexpected.  With ``--debug`` the exception propagates with its traceback.
    """
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE  # the reader left early: not an error worth a message
    except KeyboardInterrupt:
        if args.debug:
            raise
        _report("interrupted")
        return EXIT_INTERRUPTED
    except MixedModelsError as exc:
        if args.debug:
            raise
        _report(str(exc))
        return EXIT_INPUT
    except Exception as exc:  # the promise: no traceback, whatever went wrong
        if args.debug:
            raise
        where = traceback.extract_tb(exc.__traceback__)[-1]
        detail = " ".join(str(exc).split())
        _report(
            f"unexpected {type(exc).__name__}: {detail} (in {Path(where.filename).name}:"
            f"{where.lineno}); rerun with --debug for the traceback, and please report it"
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
