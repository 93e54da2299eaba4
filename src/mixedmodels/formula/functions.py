"""The functions a formula may call, with their arguments: the whole vocabulary.

Anything not listed here is a :class:`FormulaError` at the position of the call, before any
data are touched.  The design layer's interpreter implements exactly these names (a test
checks that the two lists agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from mixedmodels.errors import FormulaError
from mixedmodels.formula.expr import Call, Node, calls


@dataclass(frozen=True)
class Signature:
    """Parameter names in positional order and how many are required."""

    params: tuple[str, ...]
    required: int = 1


_ONE = Signature(("x",))

SIGNATURES: dict[str, Signature] = {
    **{
        name: _ONE
        for name in (
            "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh",
            "sqrt", "abs", "exp", "expm1", "log1p", "log2", "log10",
            "floor", "ceiling", "trunc", "sign",
            "mean", "median", "sd", "var", "min", "max", "sum", "length",
            "I", "factor", "as.factor", "ordered", "as.numeric", "as.double", "as.integer",
            "as.logical", "center",
        )
    },
    "log": Signature(("x", "base")),
    "round": Signature(("x", "digits")),
    "pmin": Signature(("x", "y"), 2),
    "pmax": Signature(("x", "y"), 2),
    "poly": Signature(("x", "degree", "raw")),
    "scale": Signature(("x", "center", "scale")),
    "C": Signature(("object", "contr"), 2),
    "offset": _ONE,
    "cbind": Signature(("successes", "failures"), 2),
    # smooth terms (mgcv's s() and t2()): covariates first, options by name
    "s": Signature(("x", "z", "k", "bs", "by", "m")),
    "t2": Signature(("x", "z", "k", "bs", "by", "m"), 2),
}

#: Functions allowed only in one place of a formula (checked by the formula parser).
PLACED = {
    "offset": "a term of the fixed part",
    "cbind": "the response of a binomial model",
    "s": "a term of the fixed part (a smooth such as s(x))",
    "t2": "a term of the fixed part (a tensor product smooth such as t2(x, z))",
}

#: Placed functions that make a smooth term.
SMOOTHS = frozenset({"s", "t2"})


def check_call(call: Call, formula: str | None = None) -> None:
    """A located :class:`FormulaError` unless ``call`` names a known function with
    arguments it takes."""
    problem = call_problem(call.func, len(call.args), tuple(k for k, _ in call.keywords))
    if problem is not None:
        raise FormulaError(problem, formula, call.pos if formula is not None else None)


@lru_cache(maxsize=1024)
def call_problem(func: str, given: int, names: tuple[str, ...]) -> str | None:
    """What is wrong with a call of ``func`` with ``given`` positional arguments and the
    keyword arguments ``names`` (None: nothing).  It depends on these alone, so it is
    found once per shape of call (the interpreter checks each call it evaluates)."""
    signature = SIGNATURES.get(func)
    if signature is None:
        return f"unknown function {func}() (formulas may call: {', '.join(sorted(SIGNATURES))})"
    if given > len(signature.params):
        return f"{func}() takes at most {len(signature.params)} argument(s), got {given}"
    for name in names:
        if name not in signature.params:
            return (
                f"{func}() has no argument {name!r} "
                f"(its arguments: {', '.join(signature.params)})"
            )
        if signature.params.index(name) < given:
            return f"{func}() got argument {name!r} twice"
    filled = set(signature.params[:given]) | set(names)
    missing = [p for p in signature.params[: signature.required] if p not in filled]
    if missing:
        return f"{func}() needs argument {missing[0]!r}"
    return None


def check_calls(node: Node, formula: str | None = None, *, placed_ok: frozenset = frozenset()):
    """Check every call in ``node``; ``placed_ok`` names the place-bound functions
    (:data:`PLACED`) allowed at the top of this node."""
    for i, call in enumerate(calls(node)):
        check_call(call, formula)
        if call.func in PLACED and not (i == 0 and call.func in placed_ok and call is node):
            raise FormulaError(
                f"{call.func}() may only be used as {PLACED[call.func]}",
                formula,
                call.pos if formula is not None else None,
            )


def bind_arguments(call: Call) -> dict[str, Node]:
    """Arguments of a checked call by parameter name."""
    params = SIGNATURES[call.func].params
    bound = dict(zip(params, call.args, strict=False))
    bound.update(dict(call.keywords))
    return bound
