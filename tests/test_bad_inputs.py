"""The bad-input catalogue (issue 9): every input a careless or hostile caller can give the
public API, with the error it must get.

Each case of :data:`BAD` is one call of the public API (``mm.lmer``, ``mm.glmer``, ``mm.lm``,
``mm.lmlist``, ``fit.predict``, ``fit.simulate``, ``fit.bootstrap``, ``fit.confint``,
``mm.refit``, the CLI's ``main``) with one bad input.  The test asserts

* the exception class: the package's own, the most specific that fits (``FormulaError`` for
  formula text, ``ColumnNotFoundError`` for a name that is not a column, ``DataError`` for
  values that cannot be used, ``NewLevelError`` for unseen levels, ``ArgumentError`` for
  arguments);
* that the message names the fault: the column, argument, level or function, checked in the
  message's own first line (the formula a ``FormulaError`` echoes below it does not count);
* for formula-injection attempts, that the injected code did not run: the file it would
  create does not exist;
* that the caller's DataFrames are unchanged (deep copies compared with pandas.testing).

Cases whose input could reach native code with non-finite numbers (these crashed the
interpreter: "double free or corruption") run in a forked child (the ``isolated`` fixture
of conftest.py), so a crash fails the one case instead of killing the test run.

:data:`GOOD` holds inputs whose correct outcome is a fit (missing values of every pandas
dtype dropped and counted, ...): each asserts the fit equals the fit on the rows removed by
hand (an identity: same rows, same order, same arithmetic) and the drop count.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.cli import main
from mixedmodels.errors import (
    ArgumentError,
    ColumnNotFoundError,
    DataError,
    FormulaError,
    MixedModelsError,
    MixedModelsWarning,
    NewLevelError,
    RowsDroppedWarning,
)

# ---------------------------------------------------------------------------- the inputs
SLEEP_SLOPES = "Reaction ~ Days + (Days|Subject)"
SLEEP = "Reaction ~ Days + (1|Subject)"
CBPP = "cbind(incidence, size - incidence) ~ period + (1|herd)"
THREE = [3, 77, 150]  # rows given a bad value where a case needs a few


@functools.cache
def _sleepstudy() -> pd.DataFrame:
    return mm.datasets.load("sleepstudy")


@functools.cache
def _cbpp() -> pd.DataFrame:
    return mm.datasets.load("cbpp")


def _sleep_phase() -> pd.DataFrame:
    """sleepstudy with a fixed-effect factor: the first five days 'early', then 'late'."""
    ss = _sleepstudy()
    return ss.assign(phase=np.where(ss.Days < 5, "early", "late"))


_ORIGINALS: dict[str, Callable[[], pd.DataFrame]] = {
    "ss": _sleepstudy,
    "cb": _cbpp,
    "ph": _sleep_phase,
}


@functools.cache
def _fit() -> mm.LmerFit:
    return mm.lmer(SLEEP_SLOPES, _sleepstudy())


@functools.cache
def _phase_fit() -> mm.LmerFit:
    return mm.lmer("Reaction ~ phase + (1|Subject)", _sleep_phase())


@functools.cache
def _gfit() -> mm.GlmerFit:
    return mm.glmer(CBPP, _cbpp(), "binomial")


@functools.cache
def _lmfit() -> mm.LmFit:
    return mm.lm("Reaction ~ Days", _sleepstudy())


class Ctx:
    """What a case works with: copies of the data sets, fits, a sentinel path.

    Every frame a case hands to the API goes through :meth:`given` (or the ``ss``/``cb``/
    ``ph`` properties), which keeps a deep copy to compare with afterwards.
    """

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.sentinel = tmp_path / "INJECTED"
        self._given: list[tuple[pd.DataFrame, pd.DataFrame]] = []

    def given(self, frame: pd.DataFrame) -> pd.DataFrame:
        self._given.append((frame, frame.copy(deep=True)))
        return frame

    def _original(self, key: str) -> pd.DataFrame:
        return self.given(_ORIGINALS[key]().copy(deep=True))

    @property
    def ss(self) -> pd.DataFrame:
        return self._original("ss")

    @property
    def cb(self) -> pd.DataFrame:
        return self._original("cb")

    @property
    def ph(self) -> pd.DataFrame:
        return self._original("ph")

    def ss_with(self, **columns) -> pd.DataFrame:
        """sleepstudy with columns added or replaced (a new frame, registered)."""
        return self.given(_sleepstudy().assign(**columns))

    def cb_with(self, **columns) -> pd.DataFrame:
        return self.given(_cbpp().assign(**columns))

    @property
    def payload(self) -> str:
        """Python that would create the sentinel file if a formula were evaluated."""
        return f"__import__('os').system('touch {self.sentinel}')"

    def file(self, name: str, text: str | bytes) -> str:
        path = self.tmp / name
        (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
        return str(path)

    def assert_inputs_unchanged(self) -> None:
        for frame, copy in self._given:
            pd.testing.assert_frame_equal(frame, copy, check_exact=True)


def _with_bad(values: pd.Series | np.ndarray, bad, rows=THREE) -> np.ndarray:
    """``values`` as floats with ``bad`` at ``rows``."""
    out = np.asarray(values, dtype=float).copy()
    out[rows] = bad
    return out


def _cli(*args: str) -> int:
    """The command line with --debug: the exception propagates, so its class is checked."""
    return main(["fit", *args, "--debug"])


class AnyOf(tuple):
    """The message must contain one of these (for faults a message may name two ways)."""

    def __new__(cls, *options: str):
        return super().__new__(cls, options)


@dataclass(frozen=True)
class Bad:
    """One bad input: ``call(ctx)`` must raise ``error`` with every item of ``says`` in the
    message's first line (a str: a substring; a compiled pattern: a search; AnyOf: one of)."""

    id: str
    call: Callable[[Ctx], object]
    error: type[MixedModelsError] | tuple[type[MixedModelsError], ...]
    says: tuple = ()
    injection: bool = False  # the sentinel file must not exist afterwards
    isolate: bool = False  # may reach native code with non-finite numbers: run forked
    at: str | None = None  # FormulaError: its position must point at this text


def B(id, call, error, *says, injection=False, isolate=False, at=None) -> Bad:  # noqa: N802
    return Bad(id, call, error, tuple(says), injection, isolate, at)


def count(n: int) -> re.Pattern:
    """The message states a count of ``n`` (as a whole number)."""
    return re.compile(rf"(?<![\d.]){n}(?![\d.])")


NONFINITE = AnyOf("non-finite", "Inf", "inf", "NaN", "finite")

# ---------------------------------------------------------------------------- the catalogue
# fmt: off
BAD: list[Bad] = [
    # ---- formula injection: the formula is data, never code; in every position
    B("inject_fixed_I", lambda c: mm.lmer(f"Reaction ~ Days + I({c.payload}) + (1|Subject)", c.ss),
      FormulaError, "__import__", injection=True),
    B("inject_fixed_bare", lambda c: mm.lmer(f"Reaction ~ Days + {c.payload} + (1|Subject)", c.ss),
      FormulaError, "__import__", injection=True),
    B("inject_log", lambda c: mm.lmer(f"Reaction ~ log({c.payload}) + (1|Subject)", c.ss),
      FormulaError, "__import__", injection=True),
    B("inject_nested_calls",
      lambda c: mm.lmer(f"Reaction ~ sqrt(abs(log({c.payload}))) + (1|Subject)", c.ss),
      FormulaError, "__import__", injection=True),
    B("inject_poly_argument", lambda c: mm.lmer(f"Reaction ~ poly({c.payload}, 2) + (1|Subject)",
                                                c.ss),
      FormulaError, "__import__", injection=True),
    B("inject_factor_argument", lambda c: mm.lmer(f"Reaction ~ factor({c.payload}) + (1|Subject)",
                                                  c.ss),
      FormulaError, "__import__", injection=True),
    B("inject_keyword_argument",
      lambda c: mm.lmer(f"Reaction ~ log(Days + 1, base = {c.payload}) + (1|Subject)", c.ss),
      FormulaError, "__import__", injection=True),
    B("inject_response_I", lambda c: mm.lmer(f"I({c.payload}) ~ Days + (1|Subject)", c.ss),
      FormulaError, "__import__", injection=True),
    B("inject_response_bare", lambda c: mm.lmer(f"{c.payload} ~ Days + (1|Subject)", c.ss),
      FormulaError, "__import__", injection=True),
    B("inject_random_lhs_I",
      lambda c: mm.lmer(f"Reaction ~ Days + (I({c.payload})|Subject)", c.ss),
      FormulaError, "__import__", injection=True),
    B("inject_random_lhs_bare", lambda c: mm.lmer(f"Reaction ~ Days + ({c.payload}|Subject)", c.ss),
      FormulaError, "__import__", injection=True),
    B("inject_random_lhs_double_bar",
      lambda c: mm.lmer(f"Reaction ~ Days + (1 + I({c.payload})||Subject)", c.ss),
      FormulaError, "__import__", injection=True),
    B("inject_grouping_factor", lambda c: mm.lmer(f"Reaction ~ Days + (1|{c.payload})", c.ss),
      FormulaError, "__import__", injection=True),
    B("inject_offset_term",
      lambda c: mm.lmer(f"Reaction ~ Days + offset({c.payload}) + (1|Subject)", c.ss),
      FormulaError, "__import__", injection=True),
    B("inject_glmer_fixed",
      lambda c: mm.glmer(f"cbind(incidence, size - incidence) ~ period + I({c.payload}) + (1|herd)",
                         c.cb, "binomial"),
      FormulaError, "__import__", injection=True),
    B("inject_glmer_response_cbind",
      lambda c: mm.glmer(f"cbind(I({c.payload}), size) ~ period + (1|herd)", c.cb, "binomial"),
      FormulaError, "__import__", injection=True),
    B("inject_glmer_offset",
      lambda c: mm.glmer(f"incidence ~ period + offset(log({c.payload})) + (1|herd)", c.cb,
                         "poisson"),
      FormulaError, "__import__", injection=True),
    B("inject_lm_fixed", lambda c: mm.lm(f"Reaction ~ Days + I({c.payload})", c.ss),
      FormulaError, "__import__", injection=True),
    B("inject_lm_response", lambda c: mm.lm(f"log({c.payload}) ~ Days", c.ss),
      FormulaError, "__import__", injection=True),
    B("inject_lmlist_fixed", lambda c: mm.lmlist(f"Reaction ~ I({c.payload}) | Subject", c.ss),
      FormulaError, "__import__", injection=True),
    B("inject_lmlist_group", lambda c: mm.lmlist(f"Reaction ~ Days | {c.payload}", c.ss),
      FormulaError, "__import__", injection=True),
    B("inject_cli_fixed", lambda c: _cli(f"Reaction ~ Days + I({c.payload}) + (1|Subject)",
                                         "--data", "sleepstudy"),
      FormulaError, "__import__", injection=True),
    B("inject_cli_response", lambda c: _cli(f"log({c.payload}) ~ Days + (1|Subject)",
                                            "--data", "sleepstudy"),
      FormulaError, "__import__", injection=True),
    B("inject_cli_glmer", lambda c: _cli(f"incidence ~ I({c.payload}) + (1|herd)", "--data",
                                         "cbpp", "--family", "poisson"),
      FormulaError, "__import__", injection=True),
    B("inject_os_system_call",
      lambda c: mm.lmer(f"Reaction ~ os.system('touch {c.sentinel}') + (1|Subject)", c.ss),
      FormulaError, "os.system", injection=True, at="os.system"),
    B("inject_open_call",
      lambda c: mm.lmer(f"Reaction ~ I(open('{c.sentinel}', 'w')) + (1|Subject)", c.ss),
      FormulaError, "open", injection=True, at="open"),
    B("inject_exec_call",
      lambda c: mm.lmer(f"Reaction ~ I(exec(\"open('{c.sentinel}', 'w')\")) + (1|Subject)", c.ss),
      FormulaError, "exec", injection=True, at="exec"),
    B("inject_lambda", lambda c: mm.lmer(f"Reaction ~ I((lambda: {c.payload})()) + (1|Subject)",
                                         c.ss),
      FormulaError, AnyOf("lambda", "__import__", "call"), injection=True),
    B("inject_backtick_name_is_a_column_name",
      lambda c: mm.lmer(f"Reaction ~ `{c.payload}` + (1|Subject)", c.ss),
      ColumnNotFoundError, "__import__", injection=True),
    B("inject_weights_name", lambda c: mm.lmer(SLEEP, c.ss, weights=c.payload),
      ColumnNotFoundError, "__import__", injection=True),
    B("inject_offset_name", lambda c: mm.lmer(SLEEP, c.ss, offset=c.payload),
      ColumnNotFoundError, "__import__", injection=True),
    B("inject_contrasts_key", lambda c: mm.lmer("Reaction ~ phase + (1|Subject)", c.ph,
                                                contrasts={c.payload: "sum"}),
      ColumnNotFoundError, "__import__", injection=True),
    B("inject_contrasts_value", lambda c: mm.lmer("Reaction ~ phase + (1|Subject)", c.ph,
                                                  contrasts={"phase": c.payload}),
      ArgumentError, "__import__", injection=True),
    B("inject_newdata_value", lambda c: _fit().predict(
        c.given(pd.DataFrame({"Days": [c.payload], "Subject": ["308"]}))),
      DataError, "Days", injection=True),
    # ---- escapes from an expression language: attributes, dunders, subscripts, statements
    B("escape_subclasses_in_I",
      lambda c: mm.lmer("Reaction ~ I(().__class__.__base__.__subclasses__()) + (1|Subject)", c.ss),
      FormulaError, AnyOf("__class__", "attribute", "()", "empty")),
    B("escape_subclasses_bare",
      lambda c: mm.lmer("Reaction ~ ().__class__.__base__.__subclasses__() + (1|Subject)", c.ss),
      FormulaError, AnyOf("__class__", "attribute", "()", "empty")),
    B("escape_attribute_of_call",
      lambda c: mm.lmer("Reaction ~ log(Days).real + (1|Subject)", c.ss),
      FormulaError, AnyOf("real", "attribute")),
    B("escape_dunder_attribute_of_column",
      lambda c: mm.lmer("Reaction ~ I(Days.__class__) + (1|Subject)", c.ss),
      (FormulaError, ColumnNotFoundError), "__class__"),
    B("escape_dunder_name", lambda c: mm.lmer("Reaction ~ __import__ + (1|Subject)", c.ss),
      FormulaError, "__import__"),
    B("escape_builtins_subscript",
      lambda c: mm.lmer("Reaction ~ I(__builtins__['eval']('1')) + (1|Subject)", c.ss),
      FormulaError, AnyOf("__builtins__", "[")),
    B("escape_subscript", lambda c: mm.lmer("Reaction ~ Days[0] + (1|Subject)", c.ss),
      FormulaError, "["),
    B("escape_eval_call", lambda c: mm.lmer("Reaction ~ I(eval('1 + 1')) + (1|Subject)", c.ss),
      FormulaError, "eval", at="eval"),
    B("escape_getattr_call",
      lambda c: mm.lmer("Reaction ~ I(getattr(Days, 'real')) + (1|Subject)", c.ss),
      FormulaError, "getattr", at="getattr"),
    B("escape_globals_call", lambda c: mm.lmer("Reaction ~ I(globals()) + (1|Subject)", c.ss),
      FormulaError, "globals", at="globals"),
    B("escape_numpy_module", lambda c: mm.lmer("Reaction ~ np.log(Days + 1) + (1|Subject)", c.ss),
      FormulaError, "np.log", at="np.log"),
    B("escape_python_builtin_len", lambda c: mm.lmer("Reaction ~ I(len(Days)) + (1|Subject)", c.ss),
      FormulaError, "len", at="len"),
    B("escape_statement_semicolon",
      lambda c: mm.lmer("Reaction ~ Days + (1|Subject); import os", c.ss),
      FormulaError, AnyOf(";", "import")),
    B("escape_conditional_expression",
      lambda c: mm.lmer("Reaction ~ Days if True else Days + (1|Subject)", c.ss),
      FormulaError, AnyOf("if", "else", "True")),
    B("escape_fstring",
      lambda c: mm.lmer("Reaction ~ I(f\"{__import__('os')}\") + (1|Subject)", c.ss),
      FormulaError, AnyOf('"', "string", "__import__")),
    B("escape_star_unpacking", lambda c: mm.lmer("Reaction ~ I(*Days) + (1|Subject)", c.ss),
      FormulaError, "*"),
    # ---- unknown functions: a FormulaError naming the function, at its position
    B("unknown_function_fixed",
      lambda c: mm.lmer("Reaction ~ frobnicate(Days) + (1|Subject)", c.ss),
      FormulaError, "frobnicate", at="frobnicate"),
    B("unknown_function_nested",
      lambda c: mm.lmer("Reaction ~ log(frobnicate(Days)) + (1|Subject)", c.ss),
      FormulaError, "frobnicate", at="frobnicate"),
    B("unknown_function_response",
      lambda c: mm.lmer("frobnicate(Reaction) ~ Days + (1|Subject)", c.ss),
      FormulaError, "frobnicate", at="frobnicate"),
    B("unknown_function_random_lhs",
      lambda c: mm.lmer("Reaction ~ Days + (frobnicate(Days)|Subject)", c.ss),
      FormulaError, "frobnicate", at="frobnicate"),
    B("unknown_function_offset",
      lambda c: mm.lmer("Reaction ~ Days + offset(frobnicate(Days)) + (1|Subject)", c.ss),
      FormulaError, "frobnicate", at="frobnicate"),
    B("unknown_function_glmer",
      lambda c: mm.glmer("cbind(incidence, size - incidence) ~ frobnicate(period) + (1|herd)",
                         c.cb, "binomial"),
      FormulaError, "frobnicate", at="frobnicate"),
    B("unknown_function_lm", lambda c: mm.lm("Reaction ~ frobnicate(Days)", c.ss),
      FormulaError, "frobnicate", at="frobnicate"),
    B("unknown_function_lmlist", lambda c: mm.lmlist("Reaction ~ frobnicate(Days) | Subject", c.ss),
      FormulaError, "frobnicate"),
    B("unknown_function_cli",
      lambda c: _cli("Reaction ~ frobnicate(Days) + (1|Subject)", "--data", "sleepstudy"),
      FormulaError, "frobnicate", at="frobnicate"),
    # ---- formula syntax
    B("formula_int", lambda c: mm.lmer(123, c.ss), FormulaError, "formula"),
    B("formula_none", lambda c: mm.lmer(None, c.ss), FormulaError, "formula"),
    B("formula_list", lambda c: mm.lmer([SLEEP], c.ss), FormulaError, "formula"),
    B("formula_bytes", lambda c: mm.lmer(SLEEP.encode(), c.ss), FormulaError, "formula"),
    B("formula_int_glmer", lambda c: mm.glmer(1.5, c.cb, "binomial"), FormulaError, "formula"),
    B("formula_int_lm", lambda c: mm.lm(7, c.ss), FormulaError, "formula"),
    B("formula_int_lmlist", lambda c: mm.lmlist(7, c.ss), FormulaError, "formula"),
    B("formula_empty", lambda c: mm.lmer("", c.ss), FormulaError, AnyOf("empty", "~")),
    B("formula_blank", lambda c: mm.lmer("   ", c.ss), FormulaError, AnyOf("empty", "~")),
    B("formula_no_tilde", lambda c: mm.lmer("Reaction Days + (1|Subject)", c.ss),
      FormulaError, AnyOf("~", "Days")),
    B("formula_two_tildes", lambda c: mm.lmer("Reaction ~ Days ~ Subject + (1|Subject)", c.ss),
      FormulaError, "~"),
    B("formula_unclosed_paren", lambda c: mm.lmer("Reaction ~ Days + (1|Subject", c.ss),
      FormulaError, AnyOf("(", "parenthes")),
    B("formula_unopened_paren", lambda c: mm.lmer("Reaction ~ Days) + (1|Subject)", c.ss),
      FormulaError, AnyOf(")", "parenthes")),
    B("formula_empty_parens", lambda c: mm.lmer("Reaction ~ Days + () + (1|Subject)", c.ss),
      FormulaError, AnyOf("()", "empty")),
    B("formula_no_response_lmer", lambda c: mm.lmer("~ Days + (1|Subject)", c.ss),
      FormulaError, AnyOf("response", "~")),
    B("formula_no_right_side", lambda c: mm.lmer("Reaction ~ ", c.ss),
      FormulaError, AnyOf("empty", "right", "predictor", "end", "~")),
    B("formula_trailing_plus", lambda c: mm.lmer("Reaction ~ Days + (1|Subject) +", c.ss),
      FormulaError, AnyOf("+", "end")),
    B("formula_double_operator", lambda c: mm.lmer("Reaction ~ Days * * Subject + (1|Subject)",
                                                   c.ss),
      FormulaError, "*"),
    B("formula_empty_bar_left", lambda c: mm.lmer("Reaction ~ Days + (|Subject)", c.ss),
      FormulaError, "|"),
    B("formula_empty_bar_right", lambda c: mm.lmer("Reaction ~ Days + (1|)", c.ss),
      FormulaError, AnyOf("|", "grouping")),
    B("formula_triple_bar", lambda c: mm.lmer("Reaction ~ Days + (1|||Subject)", c.ss),
      FormulaError, "|"),
    B("formula_nested_bars", lambda c: mm.lmer("Reaction ~ Days + (1|(1|Subject))", c.ss),
      FormulaError, AnyOf("|", "grouping")),
    B("formula_no_random_term_lmer", lambda c: mm.lmer("Reaction ~ Days", c.ss),
      FormulaError, AnyOf("random", "mm.lm")),
    B("formula_no_random_term_glmer", lambda c: mm.glmer("incidence ~ period", c.cb, "poisson"),
      FormulaError, AnyOf("random", "glm")),
    B("formula_random_term_in_lm", lambda c: mm.lm(SLEEP, c.ss), FormulaError,
      AnyOf("random", "lmer")),
    B("formula_lmlist_without_bar", lambda c: mm.lmlist("Reaction ~ Days", c.ss), FormulaError,
      "|"),
    B("formula_lmlist_without_tilde", lambda c: mm.lmlist("Reaction Days | Subject", c.ss),
      FormulaError, "~"),
    B("formula_dollar", lambda c: mm.lmer("Reaction ~ Days$x + (1|Subject)", c.ss), FormulaError,
      "$"),
    B("formula_at_sign", lambda c: mm.lmer("Reaction ~ Days@x + (1|Subject)", c.ss), FormulaError,
      "@"),
    B("formula_brace", lambda c: mm.lmer("Reaction ~ {Days} + (1|Subject)", c.ss), FormulaError,
      "{"),
    B("formula_symbol_character", lambda c: mm.lmer("Reaction ~ Days + \u2713 + (1|Subject)", c.ss),
      FormulaError, "\u2713"),
    B("formula_nul_character", lambda c: mm.lmer("Reaction ~ Days\x00 + (1|Subject)", c.ss),
      FormulaError, AnyOf("\\x00", "\x00", "character", "NUL")),
    B("formula_unterminated_string", lambda c: mm.lmer("Reaction ~ I('abc) + (1|Subject)", c.ss),
      FormulaError, AnyOf("'", "string", "quote")),
    B("formula_number_called", lambda c: mm.lmer("Reaction ~ 3(Days) + (1|Subject)", c.ss),
      FormulaError, AnyOf("3", "call")),
    B("formula_log_without_argument", lambda c: mm.lmer("Reaction ~ log() + (1|Subject)", c.ss),
      FormulaError, "log"),
    B("formula_log_three_arguments",
      lambda c: mm.lmer("Reaction ~ log(Days + 1, 2, 3) + (1|Subject)", c.ss),
      FormulaError, "log"),
    B("formula_unknown_keyword",
      lambda c: mm.lmer("Reaction ~ log(Days + 1, bass = 2) + (1|Subject)", c.ss),
      FormulaError, "bass"),
    # ---- names that are not columns
    B("column_missing_fixed", lambda c: mm.lmer("Reaction ~ Dayz + (1|Subject)", c.ss),
      ColumnNotFoundError, "'Dayz'", at="Dayz"),
    B("column_missing_response", lambda c: mm.lmer("Reactio ~ Days + (1|Subject)", c.ss),
      ColumnNotFoundError, "'Reactio'", at="Reactio"),
    B("column_missing_group", lambda c: mm.lmer("Reaction ~ Days + (1|Subjct)", c.ss),
      ColumnNotFoundError, "'Subjct'", at="Subjct"),
    B("column_missing_random_lhs", lambda c: mm.lmer("Reaction ~ Days + (Dayz|Subject)", c.ss),
      ColumnNotFoundError, "'Dayz'", at="Dayz"),
    B("column_missing_nested_group", lambda c: mm.lmer("Reaction ~ Days + (1|Subject/Nope)", c.ss),
      ColumnNotFoundError, "'Nope'", at="Nope"),
    B("column_missing_interaction_group",
      lambda c: mm.lmer("Reaction ~ Days + (1|Subject:Nope)", c.ss),
      ColumnNotFoundError, "'Nope'", at="Nope"),
    B("column_missing_in_offset", lambda c: mm.lmer("Reaction ~ Days + offset(Nope) + (1|Subject)",
                                                    c.ss),
      ColumnNotFoundError, "'Nope'", at="Nope"),
    B("column_missing_in_call", lambda c: mm.lmer("Reaction ~ log(Nope) + (1|Subject)", c.ss),
      ColumnNotFoundError, "'Nope'", at="Nope"),
    B("column_wrong_case", lambda c: mm.lmer("reaction ~ Days + (1|Subject)", c.ss),
      ColumnNotFoundError, "'reaction'"),
    B("column_lookalike_letter", lambda c: mm.lmer("Reaction ~ D\u0430ys + (1|Subject)", c.ss),
      ColumnNotFoundError, "D\u0430ys"),
    B("column_backticked_missing", lambda c: mm.lmer("Reaction ~ `Days x` + (1|Subject)", c.ss),
      ColumnNotFoundError, "Days x"),
    B("column_missing_weights", lambda c: mm.lmer(SLEEP, c.ss, weights="wts"),
      ColumnNotFoundError, "'wts'"),
    B("column_missing_offset", lambda c: mm.lmer(SLEEP, c.ss, offset="off"),
      ColumnNotFoundError, "'off'"),
    B("column_missing_contrasts", lambda c: mm.lmer(SLEEP, c.ss, contrasts={"Nope": "sum"}),
      ColumnNotFoundError, "'Nope'"),
    B("column_missing_glmer_cbind",
      lambda c: mm.glmer("cbind(incidence, sizee - incidence) ~ period + (1|herd)", c.cb,
                         "binomial"),
      ColumnNotFoundError, "'sizee'"),
    B("column_missing_lm", lambda c: mm.lm("Reaction ~ Dayz", c.ss), ColumnNotFoundError, "'Dayz'"),
    B("column_missing_lmlist_group", lambda c: mm.lmlist("Reaction ~ Days | Subj", c.ss),
      ColumnNotFoundError, "'Subj'"),
    B("column_missing_lmlist_predictor", lambda c: mm.lmlist("Reaction ~ Dayz | Subject", c.ss),
      ColumnNotFoundError, "'Dayz'"),
    B("column_missing_cli", lambda c: _cli("Reaction ~ Dayz + (1|Subject)", "--data", "sleepstudy"),
      ColumnNotFoundError, "'Dayz'"),
    B("newdata_missing_predictor", lambda c: _fit().predict(c.given(c.ss.drop(columns="Days"))),
      ColumnNotFoundError, "Days"),
    B("newdata_missing_group", lambda c: _fit().predict(c.given(c.ss.drop(columns="Subject"))),
      ColumnNotFoundError, "Subject"),
    B("newdata_missing_predictor_interval",
      lambda c: _fit().predict(c.given(c.ss.drop(columns="Days")), interval="confidence"),
      ColumnNotFoundError, "Days"),
    B("newdata_missing_glmer", lambda c: _gfit().predict(c.given(c.cb.drop(columns="period"))),
      ColumnNotFoundError, "period"),
    # ---- data that cannot be used
    B("data_dict", lambda c: mm.lmer(SLEEP, {"Reaction": [1.0], "Days": [0], "Subject": ["a"]}),
      DataError, "DataFrame"),
    B("data_none", lambda c: mm.lmer(SLEEP, None), DataError, "DataFrame"),
    B("data_ndarray", lambda c: mm.lmer(SLEEP, np.zeros((10, 3))), DataError, "DataFrame"),
    B("data_glmer_list", lambda c: mm.glmer(CBPP, [1, 2, 3], "binomial"), DataError, "DataFrame"),
    B("data_lm_series", lambda c: mm.lm("Reaction ~ Days", _sleepstudy()["Reaction"]), DataError,
      "DataFrame"),
    B("data_lmlist_dict", lambda c: mm.lmlist("Reaction ~ Days | Subject", {"Reaction": [1.0]}),
      DataError, "DataFrame"),
    B("data_no_rows", lambda c: mm.lmer(SLEEP, c.given(_sleepstudy().iloc[:0])), DataError,
      AnyOf("no rows", "empty", "0 rows")),
    B("data_no_columns", lambda c: mm.lmer(SLEEP, c.given(pd.DataFrame())), DataError,
      AnyOf("no rows", "empty", "0 rows", "Reaction")),
    B("data_one_row", lambda c: mm.lmer(SLEEP, c.given(_sleepstudy().iloc[:1])), DataError,
      "Subject"),
    B("data_one_row_glmer", lambda c: mm.glmer(CBPP, c.given(_cbpp().iloc[:1]), "binomial"),
      DataError, "herd"),
    B("group_one_level", lambda c: mm.lmer("Reaction ~ Days + (1|g)", c.ss_with(g="a")), DataError,
      "'g'"),
    B("group_one_level_glmer",
      lambda c: mm.glmer("cbind(incidence, size - incidence) ~ period + (1|g)", c.cb_with(g=1),
                         "binomial"),
      DataError, "'g'"),
    B("group_level_per_row", lambda c: mm.lmer("Reaction ~ Days + (1|g)", c.ss_with(g=range(180))),
      DataError, "'g'"),
    B("all_rows_missing_in_a_predictor",
      lambda c: mm.lmer("Reaction ~ allmissing + (1|Subject)", c.ss_with(allmissing=np.nan)),
      DataError, AnyOf("allmissing", "missing")),
    B("all_rows_missing_nullable",
      lambda c: mm.lmer("Reaction ~ allmissing + (1|Subject)",
                        c.ss_with(allmissing=pd.array([pd.NA] * 180, dtype="Int64"))),
      DataError, AnyOf("allmissing", "missing")),
    B("all_rows_missing_response", lambda c: mm.lmer(SLEEP, c.ss_with(Reaction=np.nan)),
      DataError, AnyOf("Reaction", "missing")),
    B("response_text", lambda c: mm.lmer("txt ~ Days + (1|Subject)",
                                         c.ss_with(txt=_sleepstudy().Subject.astype(str))),
      DataError, "txt"),
    B("response_categorical", lambda c: mm.lmer("fac ~ Days + (1|Subject)",
                                                c.ss_with(fac=_sleepstudy().Subject)),
      DataError, "fac"),
    B("response_mixed_object", lambda c: mm.lmer(
        "resp ~ Days + (1|Subject)",
        c.ss_with(resp=pd.Series([1.5, "two"] * 90, dtype=object))),
      DataError, "resp"),
    B("response_datetime", lambda c: mm.lmer(
        "when ~ Days + (1|Subject)",
        c.ss_with(when=pd.date_range("2020-01-01", periods=180, freq="D"))),
      DataError, "when"),
    B("response_complex", lambda c: mm.lmer(
        "cplx ~ Days + (1|Subject)", c.ss_with(cplx=_sleepstudy().Reaction.to_numpy() + 1j)),
      DataError, "cplx"),
    B("predictor_text_in_arithmetic", lambda c: mm.lmer(
        "Reaction ~ log(txt) + (1|Subject)", c.ss_with(txt=_sleepstudy().Subject.astype(str))),
      (DataError, FormulaError), "txt"),
    B("many_more_predictors_than_rows", lambda c: mm.lmer(
        "y ~ " + " + ".join(f"x{i}" for i in range(300)) + " + (1|g)", c.given(_wide_frame())),
      DataError, AnyOf("300", "301", "180", "column", "rank")),
    # ---- non-finite values: a DataError naming the column and counting the rows
    B("inf_response", lambda c: mm.lmer(SLEEP_SLOPES, c.ss_with(
        Reaction=_with_bad(_sleepstudy().Reaction, np.inf))),
      DataError, "Reaction", count(3), isolate=True),
    B("minus_inf_response", lambda c: mm.lmer(SLEEP_SLOPES, c.ss_with(
        Reaction=_with_bad(_sleepstudy().Reaction, -np.inf))),
      DataError, "Reaction", count(3), isolate=True),
    B("inf_predictor_lmer", lambda c: mm.lmer("Reaction ~ x + (Days|Subject)", c.ss_with(
        x=_with_bad(_sleepstudy().Days, np.inf))),
      DataError, "'x'", count(3), isolate=True),
    B("inf_predictor_lm", lambda c: mm.lm("Reaction ~ x", c.ss_with(
        x=_with_bad(_sleepstudy().Days, np.inf))),
      DataError, "'x'", count(3), isolate=True),
    B("inf_predictor_glmer", lambda c: mm.glmer(
        "cbind(incidence, size - incidence) ~ x + (1|herd)",
        c.cb_with(x=_with_bad(np.arange(56.0), np.inf, [1, 2, 3]))),
      DataError, "'x'", count(3), isolate=True),
    B("inf_from_log_of_zero", lambda c: mm.lmer("Reaction ~ log(zeros) + (Days|Subject)", c.ss_with(
        zeros=_sleepstudy().Days.to_numpy(dtype=float))),
      DataError, "zeros", isolate=True),
    B("inf_weights_array", lambda c: mm.lmer(SLEEP_SLOPES, c.ss, weights=_with_bad(
        np.ones(180), np.inf)),
      DataError, "weights", count(3), isolate=True),
    B("inf_weights_column", lambda c: mm.lmer(SLEEP_SLOPES, c.ss_with(
        wts=_with_bad(np.ones(180), np.inf)), weights="wts"),
      DataError, "wts", count(3), isolate=True),
    B("inf_offset_array", lambda c: mm.lmer(SLEEP_SLOPES, c.ss, offset=_with_bad(
        np.zeros(180), np.inf)),
      DataError, "offset", count(3), isolate=True),
    B("inf_offset_term", lambda c: mm.lmer("Reaction ~ Days + offset(off) + (Days|Subject)",
                                           c.ss_with(off=_with_bad(np.zeros(180), np.inf))),
      DataError, "off", count(3), isolate=True),
    B("inf_poisson_response", lambda c: mm.glmer("y ~ period + (1|herd)", c.cb_with(
        y=_with_bad(_cbpp().incidence, np.inf, [1, 2, 3])), "poisson"),
      DataError, "'y'", count(3), isolate=True),
    B("inf_binomial_cbind", lambda c: mm.glmer(
        "cbind(s, size - incidence) ~ period + (1|herd)",
        c.cb_with(s=_with_bad(_cbpp().incidence, np.inf, [1, 2, 3])), "binomial"),
      DataError, "s", count(3), isolate=True),
    B("inf_in_csv_via_cli", lambda c: _cli(SLEEP_SLOPES, "--data", c.file(
        "inf.csv", _sleepstudy().assign(
            Reaction=_with_bad(_sleepstudy().Reaction, np.inf)).to_csv(index=False))),
      DataError, "Reaction", count(3), isolate=True),
    B("refit_inf", lambda c: mm.refit(_fit(), _with_bad(_sleepstudy().Reaction, np.inf)),
      DataError, NONFINITE, isolate=True),
    # ---- GLM responses
    B("poisson_negative_counts", lambda c: mm.glmer("y ~ period + (1|herd)", c.cb_with(
        y=_cbpp().incidence - 1), "poisson"),
      DataError, AnyOf("negative", "'y'")),
    B("binomial_response_out_of_range", lambda c: mm.glmer(SLEEP, c.ss, "binomial"),
      DataError, AnyOf("Reaction", "binomial", "between 0 and 1", "[0, 1]")),
    B("binomial_cbind_negative", lambda c: mm.glmer(
        "cbind(incidence - 5, size) ~ period + (1|herd)", c.cb, "binomial"),
      DataError, AnyOf("negative", "cbind")),
    # ---- weights and offsets
    B("weights_negative", lambda c: mm.lmer(SLEEP, c.ss, weights=-np.ones(180)), DataError,
      "weights"),
    B("weights_wrong_length", lambda c: mm.lmer(SLEEP, c.ss, weights=np.ones(179)), DataError,
      "weights", "180"),
    B("weights_two_dimensional", lambda c: mm.lmer(SLEEP, c.ss, weights=np.ones((180, 1))),
      DataError, "weights"),
    B("weights_grouping_factor", lambda c: mm.lmer(SLEEP, c.ss, weights="Subject"), DataError,
      "Subject"),
    B("weights_text_column", lambda c: mm.lmer(SLEEP, c.ss_with(txt="a"), weights="txt"),
      DataError, "txt"),
    B("weights_text_array", lambda c: mm.lmer(SLEEP, c.ss, weights=np.array(["a"] * 180)),
      DataError, "weights"),
    B("weights_grouping_factor_glmer", lambda c: mm.glmer(
        "incidence / size ~ period + (1|herd)", c.cb, "binomial", weights="herd"),
      DataError, "herd"),
    B("weights_grouping_factor_lm", lambda c: mm.lm("Reaction ~ Days", c.ss, weights="Subject"),
      DataError, "Subject"),
    B("weights_grouping_factor_cli",
      lambda c: _cli(SLEEP, "--data", "sleepstudy", "--weights", "Subject"),
      DataError, "Subject"),
    B("offset_wrong_length", lambda c: mm.lmer(SLEEP, c.ss, offset=np.zeros(10)), DataError,
      "offset"),
    B("offset_text_column", lambda c: mm.lmer(SLEEP, c.ss_with(txt="a"), offset="txt"),
      DataError, "txt"),
    B("offset_grouping_factor", lambda c: mm.lmer(SLEEP, c.ss, offset="Subject"), DataError,
      "Subject"),
    # ---- duplicated column names
    B("duplicated_column_used", lambda c: mm.lmer(SLEEP, c.given(pd.concat(
        [_sleepstudy(), _sleepstudy()[["Days"]]], axis=1))),
      DataError, "Days"),
    B("duplicated_column_unused", lambda c: mm.lmer(SLEEP, c.given(pd.concat(
        [_sleepstudy(), pd.DataFrame({"junk": 1, "junk2": 2}, index=range(180))
         .set_axis(["junk", "junk"], axis=1)], axis=1))),
      DataError, "junk"),
    # ---- prediction
    B("newdata_dict", lambda c: _fit().predict({"Days": [1.0], "Subject": ["308"]}), DataError,
      "newdata"),
    B("newdata_ndarray", lambda c: _fit().predict(np.zeros((2, 2))), DataError, "newdata"),
    B("newdata_dict_glmer", lambda c: _gfit().predict({"period": ["1"], "herd": ["1"]}),
      DataError, "newdata"),
    B("newdata_duplicated_columns", lambda c: _fit().predict(c.given(
        pd.DataFrame([[1.0, 2.0, "308"]], columns=["Days", "Days", "Subject"]))),
      DataError, "Days"),
    B("newdata_text_predictor", lambda c: _fit().predict(c.given(
        pd.DataFrame({"Days": ["one", "two"], "Subject": ["308", "309"]}))),
      DataError, "Days"),
    B("newdata_number_for_a_factor", lambda c: _phase_fit().predict(c.given(
        pd.DataFrame({"phase": [1.5], "Subject": ["308"]}))),
      (DataError, NewLevelError), "phase"),
    B("newdata_new_fixed_level", lambda c: _phase_fit().predict(c.given(
        pd.DataFrame({"phase": ["early", "middle"], "Subject": ["308", "309"]}))),
      NewLevelError, "middle", "phase"),
    B("newdata_new_fixed_level_marginal", lambda c: _phase_fit().predict(c.given(
        pd.DataFrame({"phase": ["middle"], "Subject": ["308"]})), include_random=False),
      NewLevelError, "middle"),
    B("newdata_new_fixed_level_interval", lambda c: _phase_fit().predict(c.given(
        pd.DataFrame({"phase": ["middle"], "Subject": ["308"]})), interval="prediction"),
      NewLevelError, "middle"),
    B("newdata_new_fixed_level_glmer", lambda c: _gfit().predict(c.given(
        pd.DataFrame({"period": ["P9"], "herd": ["1"]}))),
      NewLevelError, "P9", "period"),
    B("newdata_new_group_level", lambda c: _fit().predict(c.given(
        pd.DataFrame({"Days": [1.0], "Subject": ["999"]}))),
      NewLevelError, "999"),
    B("newdata_new_group_level_glmer", lambda c: _gfit().predict(c.given(
        pd.DataFrame({"period": ["1"], "herd": ["H99"]}))),
      NewLevelError, "H99"),
    B("predict_interval_unknown", lambda c: _fit().predict(interval="credible"), ArgumentError,
      "interval"),
    B("predict_level_above_one", lambda c: _fit().predict(interval="confidence", level=1.5),
      ArgumentError, "level"),
    B("predict_include_random_text", lambda c: _fit().predict(c.ss, include_random="no"),
      ArgumentError, "include_random"),
    B("predict_type_unknown_glmer", lambda c: _gfit().predict(type="probability"), ArgumentError,
      "type"),
    # ---- arguments
    B("reml_text", lambda c: mm.lmer(SLEEP, c.ss, reml="no"), ArgumentError, "reml"),
    B("reml_none", lambda c: mm.lmer(SLEEP, c.ss, reml=None), ArgumentError, "reml"),
    B("reml_two", lambda c: mm.lmer(SLEEP, c.ss, reml=2), ArgumentError, "reml"),
    B("reml_list", lambda c: mm.lmer(SLEEP, c.ss, reml=[False]), ArgumentError, "reml"),
    B("optimize_text", lambda c: mm.lmer(SLEEP, c.ss, optimize="no"), ArgumentError, "optimize"),
    B("optimize_false_without_start", lambda c: mm.lmer(SLEEP, c.ss, optimize=False),
      ArgumentError, "start"),
    B("start_unknown_name", lambda c: mm.lmer(SLEEP, c.ss, start="best"), ArgumentError, "start"),
    B("start_wrong_length", lambda c: mm.lmer(SLEEP, c.ss, start=[1.0, 2.0]), ArgumentError,
      "start"),
    B("start_nan", lambda c: mm.lmer(SLEEP, c.ss, start=[np.nan]), ArgumentError, "start"),
    B("start_negative_diagonal", lambda c: mm.lmer(SLEEP, c.ss, start=[-1.0]), ArgumentError,
      "start"),
    B("contrasts_unknown_coding", lambda c: mm.lmer("Reaction ~ phase + (1|Subject)", c.ph,
                                                    contrasts={"phase": "bogus"}),
      ArgumentError, "bogus"),
    B("contrasts_not_a_dict", lambda c: mm.lmer("Reaction ~ phase + (1|Subject)", c.ph,
                                                contrasts="sum"),
      ArgumentError, "contrasts"),
    B("data_name_not_text", lambda c: mm.lmer(SLEEP, c.ss, data_name=["x"]), ArgumentError,
      "data_name"),
    B("family_unknown", lambda c: mm.glmer(CBPP, c.cb, "gama"), ArgumentError, "gama"),
    B("family_number", lambda c: mm.glmer(CBPP, c.cb, 3), ArgumentError, "family"),
    B("link_unknown", lambda c: mm.glmer(CBPP, c.cb, "binomial", link="bogus"), ArgumentError,
      "bogus"),
    B("link_of_another_family", lambda c: mm.glmer(CBPP, c.cb, "binomial", link="sqrt"),
      ArgumentError, "sqrt"),
    B("n_agq_negative", lambda c: mm.glmer(CBPP, c.cb, "binomial", n_agq=-1), ArgumentError,
      "n_agq"),
    B("n_agq_fraction", lambda c: mm.glmer(CBPP, c.cb, "binomial", n_agq=2.5), ArgumentError,
      "n_agq"),
    B("n_agq_vector_term", lambda c: mm.glmer(
        "cbind(incidence, size - incidence) ~ period + (period|herd)", c.cb, "binomial", n_agq=5),
      ArgumentError, "n_agq"),
    B("simulate_negative", lambda c: _fit().simulate(-1), ArgumentError, "nsim"),
    B("simulate_zero", lambda c: _fit().simulate(0), ArgumentError, "nsim"),
    B("simulate_fraction", lambda c: _fit().simulate(2.5), ArgumentError, "nsim"),
    B("simulate_text", lambda c: _fit().simulate("3"), ArgumentError, "nsim"),
    B("simulate_seed_text", lambda c: _fit().simulate(2, seed="abc"), ArgumentError, "seed"),
    B("simulate_negative_glmer", lambda c: _gfit().simulate(-1), ArgumentError, "nsim"),
    B("bootstrap_negative", lambda c: _fit().bootstrap(-5, progress=False), ArgumentError, "nsim"),
    B("bootstrap_fraction", lambda c: _fit().bootstrap(2.5, progress=False), ArgumentError,
      "nsim"),
    B("bootstrap_zero", lambda c: _fit().bootstrap(0, progress=False), ArgumentError, "nsim"),
    B("bootstrap_n_jobs_text", lambda c: _fit().bootstrap(3, n_jobs="two", progress=False),
      ArgumentError, "n_jobs"),
    B("bootstrap_statistic_not_callable",
      lambda c: _fit().bootstrap(3, statistic="fixef", progress=False),
      ArgumentError, "statistic"),
    B("bootstrap_negative_glmer", lambda c: _gfit().bootstrap(-5, progress=False),
      ArgumentError, "nsim"),
    B("confint_unknown_method", lambda c: _fit().confint("bayes"), ArgumentError, "method"),
    B("confint_level_above_one", lambda c: _fit().confint("wald", level=2), ArgumentError,
      "level"),
    B("confint_level_zero", lambda c: _fit().confint("wald", level=0), ArgumentError, "level"),
    B("confint_boot_negative_nsim",
      lambda c: _fit().confint("boot", nsim=-3, progress=False), ArgumentError, "nsim"),
    B("confint_unknown_method_glmer", lambda c: _gfit().confint("bayes"), ArgumentError,
      "method"),
    B("confint_level_above_one_glmer", lambda c: _gfit().confint("wald", level=1.5),
      ArgumentError, "level"),
    B("refit_nan", lambda c: mm.refit(_fit(), _with_bad(_sleepstudy().Reaction, np.nan)),
      DataError, AnyOf("NaN", "non-finite", "missing", "finite")),
    B("refit_wrong_length", lambda c: mm.refit(_fit(), np.ones(179)), DataError, "180"),
    B("refit_two_dimensional", lambda c: mm.refit(_fit(), np.ones((180, 2))), DataError, "180"),
    B("refit_text", lambda c: mm.refit(_fit(), ["a"] * 180), DataError,
      AnyOf("numeric", "number")),
    B("refit_not_a_fit", lambda c: mm.refit(None, np.ones(180)), ArgumentError,
      AnyOf("LmerFit", "fit")),
    B("refit_lm_fit", lambda c: mm.refit(_lmfit(), np.ones(180)), ArgumentError,
      AnyOf("LmerFit", "LmFit", "lm")),
    # ---- the command line (with --debug the exception itself comes out)
    B("cli_data_folder", lambda c: _cli(SLEEP, "--data", str(c.tmp)), DataError, "is a folder"),
    B("cli_data_empty_file", lambda c: _cli(SLEEP, "--data", c.file("e.csv", "")), DataError,
      "e.csv", "empty"),
    B("cli_data_parser_error", lambda c: _cli(SLEEP, "--data", c.file(
        "p.csv", 'a,b\n1,2\n"open quote\n')), DataError, "p.csv"),
    B("cli_data_not_utf8", lambda c: _cli(SLEEP, "--data", c.file(
        "l.csv", "y,g\n1,caf\xe9\n".encode("latin-1"))), DataError, "l.csv"),
    B("cli_data_missing_file", lambda c: _cli(SLEEP, "--data", str(c.tmp / "none.csv")),
      DataError, "none.csv"),
    B("cli_data_unknown_dataset", lambda c: _cli(SLEEP, "--data", "sleepstudyy"), DataError,
      "sleepstudyy"),
    B("cli_plot_missing_folder", lambda c: _cli(SLEEP, "--data", "sleepstudy", "--plot",
                                                str(c.tmp / "no_such_folder" / "fig.png")),
      ArgumentError, "no_such_folder"),
    B("cli_link_with_gaussian", lambda c: _cli(SLEEP, "--data", "sleepstudy", "--link", "log"),
      ArgumentError, "--link"),
    B("cli_ddf_with_glmer", lambda c: _cli(CBPP, "--data", "cbpp", "--family", "binomial",
                                           "--ddf", "none"),
      ArgumentError, "--ddf"),
    B("cli_response_out_of_range_binomial",
      lambda c: _cli(SLEEP, "--data", "sleepstudy", "--family", "binomial"),
      DataError, AnyOf("Reaction", "binomial", "between 0 and 1", "[0, 1]")),
]
# fmt: on


@functools.cache
def _wide_frame() -> pd.DataFrame:
    """300 predictors on 180 rows of 18 groups."""
    rng = np.random.default_rng(300)
    frame = pd.DataFrame(rng.normal(size=(180, 300)), columns=[f"x{i}" for i in range(300)])
    frame["y"] = rng.normal(size=180)
    frame["g"] = np.repeat(np.arange(18), 10)
    return frame


def test_the_catalogue_is_large_and_its_ids_unique():
    ids = [case.id for case in BAD]
    assert len(set(ids)) == len(ids)
    assert len(ids) >= 100


# ---------------------------------------------------------------------------- running a case
def _head(exc: BaseException) -> str:
    """The message's own first line: without the formula and caret a located error adds."""
    first = str(exc).split("\n", 1)[0]
    return re.sub(r" \(at position \d+\)$", "", first)


def _check_bad(case: Bad, ctx: Ctx) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warnings are the fuzz suite's business
        with pytest.raises(case.error) as info:
            case.call(ctx)
    head = _head(info.value)
    for item in case.says:
        if isinstance(item, re.Pattern):
            assert item.search(head), f"{item.pattern!r} not in {head!r}"
        elif isinstance(item, AnyOf):
            assert any(s in head for s in item), f"none of {tuple(item)} in {head!r}"
        else:
            assert item in head, f"{item!r} not in {head!r}"
    if case.at is not None:
        exc = info.value
        assert isinstance(exc, FormulaError | ColumnNotFoundError)
        assert exc.formula is not None and exc.position is not None, "no position given"
        assert exc.formula[exc.position :].startswith(case.at), (
            f"position {exc.position} points at {exc.formula[exc.position :]!r}, not at {case.at!r}"
        )
    if case.injection:
        assert not ctx.sentinel.exists(), "the formula's code ran: it created the file"
    ctx.assert_inputs_unchanged()


@pytest.mark.parametrize("case", BAD, ids=[case.id for case in BAD])
def test_bad_input(case: Bad, tmp_path, isolated):
    ctx = Ctx(tmp_path)
    if case.isolate:
        isolated(lambda: _check_bad(case, ctx))
    else:
        _check_bad(case, ctx)


# ---------------------------------------------------------------------------- correct fits
# Inputs whose right outcome is a fit.  Missing values of every pandas dtype are dropped and
# counted: the fit must equal the fit on the rows removed by hand with plain numpy dtypes.
# Same rows, same order, same arithmetic: only the representation of the input differs, so
# the numbers agree to rounding (rtol 1e-10; in practice they are identical).
RTOL_SAME_ROWS = 1e-10


def _fit_recording(fitter, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fitter(*args, **kwargs)
    return fit, caught


def _assert_dropped(caught, k: int) -> None:
    dropped = [w for w in caught if issubclass(w.category, RowsDroppedWarning)]
    if k == 0:
        assert dropped == []
        return
    assert len(dropped) == 1, [str(w.message) for w in caught]
    assert count(k).search(str(dropped[0].message)), str(dropped[0].message)


def _assert_same_fit(got, expected) -> None:
    pd.testing.assert_index_equal(got.fixef.index, expected.fixef.index)
    np.testing.assert_allclose(got.fixef, expected.fixef, rtol=RTOL_SAME_ROWS)
    np.testing.assert_allclose(got.sigma, expected.sigma, rtol=RTOL_SAME_ROWS)
    assert got.nobs == expected.nobs
    if hasattr(expected, "theta"):  # mixed models
        np.testing.assert_allclose(got.theta, expected.theta, rtol=RTOL_SAME_ROWS, atol=1e-12)
        np.testing.assert_allclose(got.objective, expected.objective, rtol=RTOL_SAME_ROWS)
        assert got.ngroups == expected.ngroups


def _dropped_rows_identity(c, fitter, formula, data, clean, k, *args, **kwargs):
    """Fit ``data`` (k rows with missing values) and ``clean`` (those rows removed by hand)."""
    assert len(data) - len(clean) == k
    got, caught = _fit_recording(fitter, formula, data, *args, **kwargs)
    expected = fitter(formula, clean, *args, **kwargs)
    _assert_same_fit(got, expected)
    assert got.nobs == len(data) - k
    if hasattr(got, "n_dropped"):
        assert got.n_dropped == k
    _assert_dropped(caught, k)
    c.assert_inputs_unchanged()


def _drop(frame: pd.DataFrame, rows) -> pd.DataFrame:
    return frame.drop(index=frame.index[rows])


def _nullable(values, dtype: str, rows) -> pd.arrays.BaseMaskedArray:
    out = pd.array(values, dtype=dtype)
    out[rows] = pd.NA
    return out


def good_na_numpy_predictor(c):
    data = c.ss_with(x=_with_bad(_sleepstudy().Days, np.nan))
    clean = _drop(data, THREE)
    _dropped_rows_identity(c, mm.lmer, "Reaction ~ x + (x|Subject)", data, clean, 3)


def good_na_numpy_response(c):
    data = c.ss_with(Reaction=_with_bad(_sleepstudy().Reaction, np.nan))
    _dropped_rows_identity(c, mm.lmer, SLEEP_SLOPES, data, _drop(data, THREE), 3)


def good_na_boolean_predictor(c):
    rows = [5, 60, 100, 140, 179]
    late = (_sleepstudy().Days >= 5).to_numpy()
    data = c.ss_with(late=_nullable(late, "boolean", rows))
    clean = _drop(_sleepstudy().assign(late=late), rows)
    _dropped_rows_identity(c, mm.lmer, "Reaction ~ late + (1|Subject)", data, clean, 5)


def good_na_int64_predictor(c):
    rows = [0, 1, 90, 179]
    days = _sleepstudy().Days.to_numpy(dtype=np.int64)
    data = c.ss_with(Days=_nullable(days, "Int64", rows))
    clean = _drop(_sleepstudy().assign(Days=days), rows)
    _dropped_rows_identity(c, mm.lmer, SLEEP_SLOPES, data, clean, 4)


def good_na_float64_response(c):
    rows = [10, 20]
    reaction = _sleepstudy().Reaction.to_numpy()
    data = c.ss_with(Reaction=_nullable(reaction, "Float64", rows))
    clean = _drop(_sleepstudy(), rows)
    _dropped_rows_identity(c, mm.lmer, SLEEP_SLOPES, data, clean, 2)


def good_na_string_group(c):
    subject = _sleepstudy().Subject.astype(str).to_numpy(dtype=object)
    data = c.ss_with(Subject=_nullable(subject, "string", THREE))
    clean = _drop(_sleepstudy().assign(Subject=subject), THREE)
    _dropped_rows_identity(c, mm.lmer, SLEEP_SLOPES, data, clean, 3)


def good_na_categorical_group(c):
    subject = _sleepstudy().Subject.copy()
    subject[THREE] = np.nan
    data = c.ss_with(Subject=subject)
    _dropped_rows_identity(c, mm.lmer, SLEEP_SLOPES, data, _drop(_sleepstudy(), THREE), 3)


def good_na_object_none_group(c):
    subject = _sleepstudy().Subject.astype(str).to_numpy(dtype=object)
    with_none = subject.copy()
    with_none[[4, 5]] = None
    data = c.ss_with(Subject=with_none)
    clean = _drop(_sleepstudy().assign(Subject=subject), [4, 5])
    _dropped_rows_identity(c, mm.lmer, SLEEP_SLOPES, data, clean, 2)


def good_na_weights_column(c):
    w = 1.0 + (np.arange(180) % 3)
    data = c.ss_with(w=_with_bad(w, np.nan))
    clean = _drop(_sleepstudy().assign(w=w), THREE)
    _dropped_rows_identity(c, mm.lmer, SLEEP_SLOPES, data, clean, 3, weights="w")


def good_na_offset_column(c):
    off = np.arange(180) / 10
    data = c.ss_with(off=_with_bad(off, np.nan))
    clean = _drop(_sleepstudy().assign(off=off), THREE)
    _dropped_rows_identity(c, mm.lmer, SLEEP_SLOPES, data, clean, 3, offset="off")


def good_na_offset_term(c):
    off = np.arange(180) / 10
    data = c.ss_with(off=_nullable(off, "Float64", [7, 8]))
    clean = _drop(_sleepstudy().assign(off=off), [7, 8])
    formula = "Reaction ~ Days + offset(off) + (Days|Subject)"
    _dropped_rows_identity(c, mm.lmer, formula, data, clean, 2)


def good_na_two_columns_counted_once(c):
    x = _with_bad(_sleepstudy().Days, np.nan, [3, 77])
    reaction = _with_bad(_sleepstudy().Reaction, np.nan, [77, 150])
    data = c.ss_with(x=x, Reaction=reaction)
    clean = _drop(data, [3, 77, 150])
    _dropped_rows_identity(c, mm.lmer, "Reaction ~ x + (1|Subject)", data, clean, 3)


def good_na_in_an_unused_column_drops_nothing(c):
    data = c.ss_with(unused=np.nan, Dayz=pd.array([pd.NA] * 180, dtype="Int64"))
    _dropped_rows_identity(c, mm.lmer, SLEEP_SLOPES, data, _sleepstudy(), 0)


def good_na_glmer_categorical_predictor(c):
    period = _cbpp().period.copy()
    period[[1, 2, 3]] = np.nan
    data = c.cb_with(period=period)
    clean = _drop(_cbpp(), [1, 2, 3])
    _dropped_rows_identity(c, mm.glmer, CBPP, data, clean, 3, "binomial")


def good_na_glmer_int64_response(c):
    incidence = _cbpp().incidence.to_numpy(dtype=np.int64)
    data = c.cb_with(incidence=_nullable(incidence, "Int64", [4, 5]))
    clean = _drop(_cbpp().assign(incidence=incidence), [4, 5])
    _dropped_rows_identity(c, mm.glmer, "incidence ~ period + (1|herd)", data, clean, 2, "poisson")


def good_na_glmer_boolean_response(c):
    any_case = (_cbpp().incidence > 0).to_numpy()
    data = c.cb_with(y=_nullable(any_case, "boolean", [0, 9, 30]))
    clean = _drop(_cbpp().assign(y=any_case), [0, 9, 30])
    _dropped_rows_identity(c, mm.glmer, "y ~ period + (1|herd)", data, clean, 3, "binomial")


def good_na_lm_float64_predictor(c):
    rows = [2, 4, 8, 16]
    days = _sleepstudy().Days.to_numpy(dtype=float)
    data = c.ss_with(Days=_nullable(days, "Float64", rows))
    clean = _drop(_sleepstudy().assign(Days=days), rows)
    _dropped_rows_identity(c, mm.lm, "Reaction ~ Days", data, clean, 4)


def good_lmlist_ignores_missing_values_of_unused_columns(c):
    """A column named like a part of the formula ('Day' in 'Days') is not a used column."""
    data = c.ss_with(Day=np.nan, Subj=pd.array([pd.NA] * 180, dtype="Int64"))
    got, caught = _fit_recording(mm.lmlist, "Reaction ~ Days | Subject", data)
    expected = mm.lmlist("Reaction ~ Days | Subject", _sleepstudy())
    pd.testing.assert_frame_equal(got, expected, rtol=RTOL_SAME_ROWS)
    assert got.notna().all().all()  # 18 subjects with 10 rows each: every coefficient exists
    _assert_dropped(caught, 0)
    c.assert_inputs_unchanged()


def good_lmlist_drops_and_counts_missing_values(c):
    data = c.ss_with(Days=_with_bad(_sleepstudy().Days, np.nan))
    got, caught = _fit_recording(mm.lmlist, "Reaction ~ Days | Subject", data)
    expected = mm.lmlist("Reaction ~ Days | Subject", _drop(data, THREE))
    pd.testing.assert_frame_equal(got, expected, rtol=RTOL_SAME_ROWS)
    _assert_dropped(caught, 3)
    c.assert_inputs_unchanged()


def good_predict_float_group_codes_equal_int(c):
    """An int grouping column at fit time and floats of the same values in newdata are the
    same levels (issue 9, item 3)."""
    codes = _sleepstudy().Subject.cat.codes.to_numpy(dtype=np.int64) + 300
    data = c.ss_with(g=codes)
    fit = mm.lmer("Reaction ~ Days + (Days|g)", data)
    as_int = pd.DataFrame({"Days": [0.0, 4.0, 9.0], "g": np.array([300, 305, 317])})
    as_float = c.given(as_int.assign(g=as_int.g.astype(float)))
    np.testing.assert_array_equal(fit.predict(as_float), fit.predict(as_int))
    # and those are the fitted values' rows: subject 305 on day 4
    row = np.flatnonzero((codes == 305) & (_sleepstudy().Days.to_numpy() == 4))[0]
    assert fit.predict(as_float)[1] == pytest.approx(fit.fitted[row], rel=1e-12)
    c.assert_inputs_unchanged()


def good_predict_nullable_newdata_equals_numpy(c):
    fit = _fit()
    plain = pd.DataFrame({"Days": np.array([0, 3, 9]), "Subject": ["308", "309", "372"]})
    nullable = c.given(
        plain.assign(
            Days=pd.array([0, 3, 9], dtype="Int64"),
            Subject=pd.array(["308", "309", "372"], dtype="string"),
        )
    )
    np.testing.assert_array_equal(fit.predict(nullable), fit.predict(plain))
    c.assert_inputs_unchanged()


def good_column_named_like_code_is_just_a_column(c):
    """A column whose name is Python code, quoted with backticks: data, never run."""
    data = c.given(_sleepstudy().rename(columns={"Days": c.payload}))
    got = mm.lmer(f"Reaction ~ `{c.payload}` + (`{c.payload}`|Subject)", data)
    expected = _fit()
    np.testing.assert_allclose(got.fixef, expected.fixef, rtol=RTOL_SAME_ROWS)
    np.testing.assert_allclose(got.objective, expected.objective, rtol=RTOL_SAME_ROWS)
    assert got.fixef.index[1] == f"`{c.payload}`"  # R's model.matrix keeps the backticks
    assert not c.sentinel.exists()
    c.assert_inputs_unchanged()


def good_poisson_non_integer_counts_warn(c):
    """R's dpois warns "non-integer x"; glmer fits, and so do we, with a warning."""
    data = c.cb_with(y=_cbpp().incidence + 0.5)
    fit, caught = _fit_recording(mm.glmer, "y ~ period + (1|herd)", data, "poisson")
    ours = [w for w in caught if issubclass(w.category, MixedModelsWarning)]
    assert any("non-integer" in str(w.message) for w in ours), [str(w.message) for w in caught]
    assert np.isfinite(fit.fixef).all() and np.isfinite(fit.theta).all()
    c.assert_inputs_unchanged()


GOOD = [value for name, value in sorted(globals().items()) if name.startswith("good_")]


@pytest.mark.parametrize("check", GOOD, ids=[f.__name__.removeprefix("good_") for f in GOOD])
def test_correct_fit(check, tmp_path):
    check(Ctx(tmp_path))


# ---------------------------------------------------------------------------- either
# Inputs at the edge of what can be computed (huge or tiny scales, a response with no
# variation, formulas nested thousands deep): a package error is acceptable, and so is a
# fit, which must then satisfy the identity that holds for exact arithmetic.  Run forked:
# these reached the optimizer with non-finite values and crashed the interpreter.
def _fit_or_package_error(fitter, *args, **kwargs):
    """The fit, or None when a MixedModelsError was raised (anything else propagates)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MixedModelsWarning)
            return fitter(*args, **kwargs)
    except MixedModelsError:
        return None


def either_response_times_1e300(c):
    scaled = c.ss_with(Reaction=_sleepstudy().Reaction * 1e300)
    fit = _fit_or_package_error(mm.lmer, SLEEP_SLOPES, scaled)
    if fit is not None:  # the model is scale-equivariant: beta, sigma scale, theta does not
        np.testing.assert_allclose(fit.fixef / 1e300, _fit().fixef, rtol=1e-6)
        np.testing.assert_allclose(fit.sigma / 1e300, _fit().sigma, rtol=1e-6)
        np.testing.assert_allclose(fit.theta, _fit().theta, rtol=1e-4)


def either_response_times_1e_minus_300(c):
    scaled = c.ss_with(Reaction=_sleepstudy().Reaction * 1e-300)
    fit = _fit_or_package_error(mm.lmer, SLEEP_SLOPES, scaled)
    if fit is not None:
        np.testing.assert_allclose(fit.fixef * 1e300, _fit().fixef, rtol=1e-6)
        np.testing.assert_allclose(fit.theta, _fit().theta, rtol=1e-4)


def either_weights_1e300(c):
    fit = _fit_or_package_error(mm.lmer, SLEEP_SLOPES, c.ss, weights=np.full(180, 1e300))
    if fit is not None:  # equal weights w: the same beta and theta, sigma / sqrt(w)
        np.testing.assert_allclose(fit.fixef, _fit().fixef, rtol=1e-6)
        np.testing.assert_allclose(fit.sigma * 1e150, _fit().sigma, rtol=1e-6)


def either_constant_response_then_profile(c):
    data = c.ss_with(Reaction=250.0)
    fit = _fit_or_package_error(mm.lmer, SLEEP_SLOPES, data)
    if fit is not None:
        np.testing.assert_allclose(fit.fixef, [250.0, 0.0], atol=1e-8)
        try:
            fit.confint("profile")
        except MixedModelsError:
            pass


def either_lm_60_predictors_on_40_rows(c):
    data = c.given(_wide_frame().iloc[:40, :60].assign(y=_wide_frame().y.iloc[:40]))
    fit = _fit_or_package_error(mm.lm, "y ~ " + " + ".join(f"x{i}" for i in range(60)), data)
    if fit is not None:  # 40 independent columns interpolate the 40 responses
        assert len(fit.fixef) <= 40
        np.testing.assert_allclose(fit.fitted, data.y, atol=1e-8)


def either_parentheses_3000_deep(c):
    formula = "Reaction ~ " + "(" * 3000 + "Days" + ")" * 3000 + " + (Days|Subject)"
    fit = _fit_or_package_error(mm.lmer, formula, c.ss)
    if fit is not None:
        np.testing.assert_allclose(fit.objective, _fit().objective, rtol=RTOL_SAME_ROWS)


def either_the_same_term_3000_times(c):
    formula = "Reaction ~ " + " + ".join(["Days"] * 3000) + " + (Days|Subject)"
    fit = _fit_or_package_error(mm.lmer, formula, c.ss)
    if fit is not None:
        np.testing.assert_allclose(fit.objective, _fit().objective, rtol=RTOL_SAME_ROWS)


EITHER = [value for name, value in sorted(globals().items()) if name.startswith("either_")]


@pytest.mark.parametrize("check", EITHER, ids=[f.__name__.removeprefix("either_") for f in EITHER])
def test_error_or_exact_fit(check, tmp_path, isolated):
    ctx = Ctx(tmp_path)

    def run() -> None:
        check(ctx)
        ctx.assert_inputs_unchanged()

    isolated(run)
