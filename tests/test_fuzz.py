"""Property-based fuzzing of the input boundary (issue 9): formulas from the grammar (valid
and broken), data frames of every dtype with missing values, infinities and degenerate
groupings, odd arguments, new data for prediction, the command line.

Whatever the input, the package must

* raise nothing but :class:`~mixedmodels.errors.MixedModelsError` subclasses,
* warn nothing but :class:`~mixedmodels.errors.MixedModelsWarning` subclasses (numpy's
  RuntimeWarnings and pandas' warnings are defects: a user sees them),
* leave the caller's DataFrame unchanged (compared with a deep copy by pandas.testing),
* never run code written in a formula (an injected fragment would create a file),
* never crash the interpreter or hang: every example runs in a forked child process
  (``isolated`` in conftest.py), so a SIGABRT from memory corrupted by non-finite numbers
  fails the example, which hypothesis then shrinks.

The default run is bounded (few examples each, derandomized so CI sees the same inputs every
time, well under a minute for the file); ``-m slow`` runs the same properties with many
more random examples.  One test also runs risky inputs through a fresh interpreter started
with subprocess, as a user's script would.
"""

from __future__ import annotations

import functools
import io
import json
import os
import subprocess
import sys
import tempfile
import traceback
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

import mixedmodels as mm
from mixedmodels.cli import main
from mixedmodels.errors import MixedModelsError, MixedModelsWarning

# ---------------------------------------------------------------------------- settings
_COMMON = dict(
    deadline=None,  # a forked fit takes 10-200 ms, more on a loaded machine
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# the default run does not shrink a failing example (that can take minutes): it reports the
# example as found; the slow run shrinks
FAST = settings(
    max_examples=25,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    report_multiple_bugs=False,
    **_COMMON,
)
SLOW = settings(max_examples=400, **_COMMON)

SENTINEL = Path(tempfile.gettempdir()) / f"mixedmodels-fuzz-sentinel-{os.getpid()}"

# ---------------------------------------------------------------------------- formulas
COLUMNS = ["y", "x", "z", "f", "g", "h", "b", "w"]
NAMES = st.sampled_from([*COLUMNS, *COLUMNS, "nope", "Y", "x.1", "`x`", "`odd name`"])
FUNCTIONS = [
    "log", "exp", "sqrt", "abs", "I", "factor", "as.numeric", "scale", "poly", "offset",
    "log10", "log2", "sin", "cos", "floor", "ceiling", "mean", "sd", "cbind",
    # not in the language: must be a FormulaError naming them
    "frobnicate", "eval", "exec", "open", "getattr", "__import__", "np.log", "len", "print",
]  # fmt: skip
INJECTIONS = [
    f"__import__('os').system('touch {SENTINEL}')",
    f"os.system('touch {SENTINEL}')",
    f"open('{SENTINEL}', 'w')",
    f"exec(\"open('{SENTINEL}', 'w')\")",
    f"eval(\"open('{SENTINEL}', 'w')\")",
    f"(lambda: open('{SENTINEL}', 'w'))()",
    "().__class__.__base__.__subclasses__()",
    "x.__class__",
    "__builtins__",
    "globals()['__builtins__']",
    "[c for c in ().__class__.__mro__]",
]
TOKENS = [
    *COLUMNS, "~", "+", "-", "*", "/", "^", ":", "|", "||", "%in%", "(", ")", ",", "0", "1",
    "-1", "2", "0.5", "1e300", "Inf", "NaN", "NA", "TRUE", "'a'", '"b"', "`", ".", "[", "]",
    "{", "}", "$", "@", ";", "=", "==", "!", "&", "#", "\\", "\n", "\t", "lambda", "import",
    "__class__", "__import__", "offset", "log", "I", "poly", "cbind", "\u00e9", "\u2713",
    "\x00",
]  # fmt: skip


@st.composite
def _expression(draw, depth: int = 0) -> str:
    """An argument expression: a name, a number, arithmetic, a call."""
    if depth >= 2:
        return draw(st.one_of(NAMES, st.sampled_from(["1", "2", "0.5", "10"])))
    kind = draw(st.sampled_from(["name", "name", "number", "arith", "call", "injection"]))
    if kind == "name":
        return draw(NAMES)
    if kind == "number":
        return draw(st.sampled_from(["1", "2", "0.5", "1e-3", "100", "-1"]))
    if kind == "arith":
        op = draw(st.sampled_from(["+", "-", "*", "/", "^"]))
        return f"{draw(_expression(depth + 1))} {op} {draw(_expression(depth + 1))}"
    if kind == "call":
        fn = draw(st.sampled_from(FUNCTIONS))
        args = draw(st.lists(_expression(depth + 1), min_size=1, max_size=2))
        return f"{fn}({', '.join(args)})"
    return draw(st.sampled_from(INJECTIONS))


@st.composite
def _term(draw) -> str:
    kind = draw(st.sampled_from(["name", "name", "call", "I", "interaction", "crossing", "const"]))
    if kind == "name":
        return draw(NAMES)
    if kind == "call":
        return f"{draw(st.sampled_from(FUNCTIONS))}({draw(_expression(1))})"
    if kind == "I":
        return f"I({draw(_expression())})"
    if kind == "interaction":
        return f"{draw(NAMES)}:{draw(NAMES)}"
    if kind == "crossing":
        return f"{draw(NAMES)} * {draw(NAMES)}"
    return draw(st.sampled_from(["0", "1", "-1"]))


@st.composite
def _random_term(draw) -> str:
    lhs = draw(st.sampled_from(["1", "0 + x", "1 + x", "x", "z", "f", "b"]) | _term())
    bar = draw(st.sampled_from(["|", "|", "||"]))
    group = draw(st.sampled_from(["g", "g", "h", "g:h", "g/h", "f", "b", "nope", "x"]))
    return f"({lhs} {bar} {group})"


@st.composite
def valid_formulas(draw, random_terms: bool = True) -> str:
    """Formulas from the grammar; they may still name absent columns or unknown functions."""
    response = draw(
        st.sampled_from(["y", "y", "y", "log(y)", "I(y * 2)", "z", "b", "f", "nope"])
        | _expression(1)
    )
    fixed = draw(st.lists(_term(), min_size=1, max_size=4))
    terms = [*fixed]
    if random_terms:
        terms += draw(st.lists(_random_term(), min_size=1, max_size=2))
    return f"{response} ~ {' + '.join(terms)}"


@st.composite
def broken_formulas(draw) -> str:
    """Token soup, a valid formula with characters changed, or arbitrary text."""
    kind = draw(st.sampled_from(["tokens", "mutated", "mutated", "text"]))
    if kind == "tokens":
        tokens = draw(st.lists(st.sampled_from(TOKENS + INJECTIONS), min_size=0, max_size=12))
        return draw(st.sampled_from([" ", ""])).join(tokens)
    if kind == "text":
        return draw(st.text(max_size=30))
    text = list(draw(valid_formulas()))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        char = draw(st.sampled_from(["(", ")", "|", "~", "+", "*", ":", "^", ",", " ", "'", "`"]))
        if action == "insert" or not text:
            text.insert(at, char)
        elif action == "delete":
            del text[min(at, len(text) - 1)]
        else:
            text[min(at, len(text) - 1)] = char
    return "".join(text)


FORMULAS = st.one_of(valid_formulas(), broken_formulas())

# ---------------------------------------------------------------------------- data frames
NUMERIC_KINDS = ["float64", "float64", "float64", "Float64", "Int64", "int64", "boolean",
                 "object", "string", "category"]  # fmt: skip
FACTOR_KINDS = ["category", "category", "string", "object", "int64", "float64", "Int64", "boolean"]
SAFE_FLOATS = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
RISKY_FLOATS = st.one_of(
    SAFE_FLOATS,
    st.sampled_from([np.inf, -np.inf, 1e300, -1e300, 1e-300, 5e-324, 1.7e308, 0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
)


def _with_missing(values: np.ndarray, mask: np.ndarray, kind: str):
    """``values`` as a column of dtype ``kind`` with missing values where ``mask``."""
    n = len(values)
    if kind in ("float64",):
        out = values.astype(float)
        out[mask] = np.nan
        return out
    if kind in ("int64", "boolean-plain"):  # no missing value possible: numpy falls back
        if mask.any():
            out = values.astype(float)
            out[mask] = np.nan
            return out
        return values.astype(np.int64)
    if kind == "object":
        out = np.array(values.tolist(), dtype=object)
        out[mask] = None
        return out
    if kind == "category":
        labels = pd.Series(values).astype(str).to_numpy(dtype=object)
        labels[mask] = None
        return pd.Categorical(labels)
    if kind == "string":
        labels = pd.array([str(v) for v in values], dtype="string")
        labels[mask] = pd.NA
        return labels
    array = pd.array(values.tolist() if n else [], dtype=kind)
    array[mask] = pd.NA
    return array


@st.composite
def frames(draw, risky: bool = False) -> pd.DataFrame:
    """Frames with the columns of :data:`COLUMNS` (some left out), of any dtype, with
    missing values, degenerate groupings (one level, a level per row), empty and one-row."""
    n = draw(st.sampled_from([0, 1, 2, 3, 6, 12, 12, 24, 24, 24]))
    floats = RISKY_FLOATS if risky else SAFE_FLOATS
    columns: dict[str, object] = {}
    for name in COLUMNS:
        if draw(st.integers(0, 9)) == 0:  # now and then a column is absent
            continue
        share = draw(st.sampled_from([0.0, 0.0, 0.0, 0.1, 0.5, 1.0]))
        mask = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
        mask &= np.array(draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))) < share
        if name in ("f", "g", "h"):
            levels = draw(st.sampled_from([1, 2, 3, 4, max(n, 1)]))
            codes = np.array(draw(st.lists(st.integers(0, levels - 1), min_size=n, max_size=n)))
            kind = draw(st.sampled_from(FACTOR_KINDS))
            values = codes % 2 == 1 if kind == "boolean" else codes
            if kind in ("category", "string", "object"):
                values = np.array([f"L{c}" for c in codes], dtype=object)
            elif kind == "float64":
                values = codes.astype(float)
        else:
            values = np.array(draw(st.lists(floats, min_size=n, max_size=n)), dtype=float)
            if name == "w" and not risky:
                values = np.abs(values) + 0.5  # usable weights, mostly
            kind = draw(st.sampled_from(NUMERIC_KINDS))
            finite = np.isfinite(values).all()
            if kind in ("Int64", "int64") and finite and np.abs(values).max(initial=0) < 1e15:
                values = np.round(values).astype(np.int64)
            elif kind in ("Int64", "int64"):
                kind = "float64"
            elif kind == "boolean":
                values = values > 0
        if kind == "boolean" and not mask.any():
            columns[name] = values.astype(bool)
        else:
            columns[name] = _with_missing(np.asarray(values), mask, kind)
    return pd.DataFrame(columns, index=pd.RangeIndex(n))


# ---------------------------------------------------------------------------- one attempt
def _attempt(call, *frames_given: pd.DataFrame) -> dict:
    """Run ``call()`` (in the child) and describe what happened, for the parent to judge."""
    copies = [f.copy(deep=True) for f in frames_given]
    outcome = {"raised": None, "foreign": None, "warnings": [], "changed": None}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            call()
        except MixedModelsError as exc:
            outcome["raised"] = f"{type(exc).__name__}: {exc}"
        except Exception:
            outcome["foreign"] = traceback.format_exc(limit=-6)
    outcome["warnings"] = [
        f"{w.category.__name__}: {w.message}"
        for w in caught
        if not issubclass(w.category, MixedModelsWarning | DeprecationWarning)
    ]
    for frame, copy in zip(frames_given, copies, strict=True):
        try:
            pd.testing.assert_frame_equal(frame, copy, check_exact=True)
        except AssertionError as exc:
            outcome["changed"] = str(exc)
    outcome["injected"] = SENTINEL.exists()
    return outcome


def _judge(outcome: dict) -> None:
    assert outcome["foreign"] is None, f"not a MixedModelsError:\n{outcome['foreign']}"
    assert outcome["warnings"] == [], f"not MixedModelsWarnings: {outcome['warnings']}"
    assert outcome["changed"] is None, f"the input was modified: {outcome['changed']}"
    assert not outcome["injected"], "code written in the formula ran"


def _check(isolated, call, *frames_given: pd.DataFrame) -> None:
    SENTINEL.unlink(missing_ok=True)
    try:
        _judge(isolated(lambda: _attempt(call, *frames_given), timeout=60))
    finally:
        SENTINEL.unlink(missing_ok=True)


ENTRY_POINTS = {
    "lmer": lambda formula, data: mm.lmer(formula, data),
    "lmer_ml": lambda formula, data: mm.lmer(formula, data, reml=False),
    "glmer_poisson": lambda formula, data: mm.glmer(formula, data, "poisson"),
    "glmer_binomial": lambda formula, data: mm.glmer(formula, data, "binomial"),
    "lm": lambda formula, data: mm.lm(formula, data),
    "lmlist": lambda formula, data: mm.lmlist(formula, data),
}
FIXED_FORMULAS = {
    "lmer": ["y ~ x + (1|g)", "y ~ x * f + (x|g)", "y ~ b + z + (1|g) + (1|h)", "y ~ 1 + (1|g/h)",
             "y ~ log(z) + I(x^2) + offset(w) + (x||g)"],
    "glmer_poisson": ["z ~ x + (1|g)", "z ~ f + offset(log(w)) + (1|g)"],
    "glmer_binomial": ["b ~ x + (1|g)", "cbind(z, w) ~ f + (1|g)"],
    "lm": ["y ~ x + f", "y ~ z * b"],
    "lmlist": ["y ~ x | g"],
}  # fmt: skip


@functools.cache
def _clean_frame() -> pd.DataFrame:
    rng = np.random.default_rng(9)
    n = 60
    g = np.repeat(np.arange(6), 10)
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "y": 1 + x + rng.normal(size=6)[g] + rng.normal(scale=0.5, size=n),
            "x": x,
            "z": rng.poisson(3, size=n),
            "f": pd.Categorical(np.where(np.arange(n) % 3 == 0, "L0", "L1")),
            "g": pd.Categorical([f"L{v}" for v in g]),
            "h": pd.Categorical([f"L{v % 2}" for v in range(n)]),
            "b": rng.random(n) < 0.5,
            "w": rng.uniform(0.5, 2, size=n),
        }
    )


def _with_infinity(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    values = frame[column].to_numpy(dtype=float).copy()
    values[[3, 30]] = np.inf
    return frame.assign(**{column: values})


# ---------------------------------------------------------------------------- properties
def _formula_property(isolated, entry: str, formula: str, data: pd.DataFrame) -> None:
    _check(isolated, lambda: ENTRY_POINTS[entry](formula, data), data)


@FAST
@given(entry=st.sampled_from(list(ENTRY_POINTS)), formula=FORMULAS, data=frames())
@example(entry="lmer", formula=f"y ~ x + I({INJECTIONS[0]}) + (1|g)", data=_clean_frame())
@example(entry="lm", formula=f"log({INJECTIONS[2]}) ~ x", data=_clean_frame())
def test_formulas(isolated, entry, formula, data):
    _formula_property(isolated, entry, formula, data)


@FAST
@given(formula=valid_formulas(random_terms=False), data=frames())
def test_formulas_without_random_terms(isolated, formula, data):
    _formula_property(isolated, "lm", formula, data)
    _formula_property(isolated, "lmer", formula, data)


@st.composite
def _fixed_model(draw) -> tuple[str, str]:
    entry = draw(st.sampled_from(list(FIXED_FORMULAS)))
    return entry, draw(st.sampled_from(FIXED_FORMULAS[entry]))


@FAST
@given(model=_fixed_model(), data=frames())
def test_frames(isolated, model, data):
    _formula_property(isolated, *model, data)


@FAST
@given(model=_fixed_model(), data=frames(risky=True))
@example(model=("lmer", "y ~ x * f + (x|g)"), data=_with_infinity(_clean_frame(), "y"))
@example(model=("lm", "y ~ x + f"), data=_with_infinity(_clean_frame(), "x"))
def test_frames_with_infinities_and_huge_values(isolated, model, data):
    _formula_property(isolated, *model, data)


@functools.cache
def _clean_fit() -> mm.LmerFit:
    return mm.lmer("y ~ x + f + (x|g)", _clean_frame())


@functools.cache
def _clean_glmer_fit() -> mm.GlmerFit:
    return mm.glmer("z ~ x + f + (1|g)", _clean_frame(), "poisson")


@FAST
@given(
    newdata=frames(),
    glmm=st.booleans(),
    include_random=st.booleans(),
    allow_new_levels=st.booleans(),
    interval=st.sampled_from([None, None, "confidence", "prediction"]),
)
@example(  # a level of the fixed-effect factor f that the fit never saw
    newdata=_clean_frame().assign(f="L9"),
    glmm=False,
    include_random=True,
    allow_new_levels=True,
    interval=None,
)
def test_prediction_on_new_data(
    isolated, newdata, glmm, include_random, allow_new_levels, interval
):
    fit = _clean_glmer_fit() if glmm else _clean_fit()
    options = dict(include_random=include_random, allow_new_levels=allow_new_levels)
    if not glmm:
        options["interval"] = interval
    _check(isolated, lambda: fit.predict(newdata, **options), newdata)


ODD_VALUES = st.sampled_from(
    [None, True, False, 0, 1, -1, 2, 2.5, -5, 1e300, np.nan, np.inf, "", "no", "x", "g",
     "w", "nope", [], [1.0], [np.nan], np.ones(3), np.ones(60), -np.ones(60),
     np.full(60, np.inf), {"a": 1}, object()]
)  # fmt: skip


@FAST
@given(
    argument=st.sampled_from(["reml", "weights", "offset", "start", "contrasts", "optimize"]),
    value=ODD_VALUES,
)
def test_odd_arguments_to_lmer(isolated, argument, value):
    data = _clean_frame()
    _check(isolated, lambda: mm.lmer("y ~ x + f + (1|g)", data, **{argument: value}), data)


def _method_call(fit, method: str, argument: str, value):
    """One fit method with one argument set to ``value``, the others ordinary."""
    if method == "simulate":
        return lambda: fit.simulate(**{"nsim": 2, "seed": 1, argument: value})
    if method == "bootstrap":  # few replicates: a huge nsim, if accepted, would run for ever
        kwargs = {"nsim": 2, "seed": 1, "progress": False, argument: value}
        return lambda: fit.bootstrap(**kwargs)
    if method == "confint":
        return lambda: fit.confint(**{"method": "wald", "level": 0.95, argument: value})
    if method == "predict":
        return lambda: fit.predict(**{"interval": "confidence", argument: value})
    return lambda: mm.refit(fit, value)


FIT_ARGUMENTS = [
    ("simulate", "nsim"), ("simulate", "seed"), ("bootstrap", "nsim"), ("bootstrap", "n_jobs"),
    ("bootstrap", "statistic"), ("confint", "method"), ("confint", "level"),
    ("predict", "interval"), ("predict", "level"), ("predict", "include_random"),
    ("refit", "y"),
]  # fmt: skip


@FAST
@given(target=st.sampled_from(FIT_ARGUMENTS), value=ODD_VALUES)
def test_odd_arguments_to_fit_methods(isolated, target, value):
    method, argument = target
    if method == "bootstrap" and isinstance(value, int | float) and not abs(value) <= 5:
        value = -3  # keep the run short whatever the package accepts
    _check(isolated, _method_call(_clean_fit(), method, argument, value))


@functools.cache
def _clean_csv() -> str:
    folder = Path(tempfile.mkdtemp(prefix="mixedmodels-fuzz-"))
    path = folder / "clean.csv"
    _clean_frame().to_csv(path, index=False)
    return str(path)


def _cli_attempt(argv: list[str]) -> dict:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        except BaseException:
            return {"code": None, "err": traceback.format_exc(), "injected": SENTINEL.exists()}
    return {"code": code, "err": err.getvalue(), "injected": SENTINEL.exists()}


@FAST
@given(
    formula=FORMULAS,
    extra=st.lists(
        st.sampled_from(
            ["--ml", "--json", "--family", "poisson", "binomial", "gaussian", "--link", "log",
             "logit", "--weights", "w", "g", "--ddf", "none", "--plot-kind", "caterpillar"]
        ),
        max_size=4,
    ),
)  # fmt: skip
def test_command_line(isolated, formula, extra):
    SENTINEL.unlink(missing_ok=True)
    argv = ["fit", formula, "--data", _clean_csv(), *extra]
    result = isolated(lambda: _cli_attempt(argv), timeout=60)
    assert result["code"] in (0, 2), f"exit status {result['code']}:\n{result['err']}"
    assert "Traceback" not in result["err"], result["err"]
    if result["code"] == 2 and result["err"]:
        assert result["err"].startswith(("mixedmodels: error: ", "usage: ")), result["err"]
    assert not result["injected"], "code written in the formula ran"


# ---------------------------------------------------------------------------- slow runs
@pytest.mark.slow
@SLOW
@given(entry=st.sampled_from(list(ENTRY_POINTS)), formula=FORMULAS, data=frames())
def test_formulas_long(isolated, entry, formula, data):
    _formula_property(isolated, entry, formula, data)


@pytest.mark.slow
@SLOW
@given(model=_fixed_model(), data=st.booleans().flatmap(lambda risky: frames(risky=risky)))
def test_frames_long(isolated, model, data):
    _formula_property(isolated, *model, data)


@pytest.mark.slow
@SLOW
@given(model=_fixed_model(), data=frames(risky=True))
def test_frames_with_infinities_long(isolated, model, data):
    _formula_property(isolated, *model, data)


# ---------------------------------------------------------------------------- a fresh process
RISKY_SCRIPT = r"""
import json, sys, traceback, warnings
import numpy as np, pandas as pd
import mixedmodels as mm
from mixedmodels.errors import MixedModelsError

warnings.simplefilter("ignore")
rng = np.random.default_rng(int(sys.argv[1]))
bad = [np.inf, -np.inf, 1e300, -1e300, 1e-300, np.nan]
report = {"foreign": [], "done": 0}
for i in range(int(sys.argv[2])):
    n, k = 40, 5
    frame = pd.DataFrame({
        "y": rng.normal(size=n), "x": rng.normal(size=n),
        "z": rng.poisson(3, size=n).astype(float), "w": rng.uniform(0.5, 2, size=n),
        "g": [f"L{v}" for v in rng.integers(0, k, size=n)],
    })
    column = ["y", "x", "z", "w"][i % 4]
    rows = rng.choice(n, size=1 + i % 3, replace=False)
    frame.loc[rows, column] = bad[i % len(bad)]
    if i % 7 == 6:
        frame[column] = frame[column] * 1e300
    for name, call in [
        ("lmer", lambda: mm.lmer("y ~ x + (x|g)", frame, weights="w")),
        ("lmer_offset", lambda: mm.lmer("y ~ x + offset(z) + (1|g)", frame)),
        ("glmer", lambda: mm.glmer("z ~ x + (1|g)", frame, "poisson")),
        ("lm", lambda: mm.lm("y ~ x + z", frame, weights="w")),
    ]:
        try:
            call()
        except MixedModelsError:
            pass
        except Exception:
            report["foreign"].append(f"{name} #{i}: {traceback.format_exc(limit=-1)}")
    report["done"] = i + 1
print(json.dumps(report))
"""


def test_risky_inputs_in_a_fresh_interpreter():
    """Infinite and huge values reaching the optimizer, in a process of its own: it must
    end normally (a negative return code is death by a signal, e.g. SIGABRT from
    "double free or corruption") within its time, with no exception but the package's."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parent.parent / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-c", RISKY_SCRIPT, "2024", "24"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode >= 0, f"killed by signal {-done.returncode}: {done.stderr[-2000:]}"
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["done"] == 24
    assert report["foreign"] == []
