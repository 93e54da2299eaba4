"""The design of a nonlinear mixed model: the model function, the parameters' fixed-effect
designs and random effects, read from nlme's three formulas.

``model``: ``circumference ~ SSlogis(age, Asym, xmid, scal)`` (a self-starting model) or
``circumference ~ Asym/(1+exp((xmid-age)/scal))`` (an arithmetic expression of parameters
and data columns).  ``fixed``: ``Asym + xmid + scal ~ 1``, ``Asym ~ Variety`` (several
formulas in a list).  ``random``: ``Asym + xmid ~ 1 | Tree``, or
``pdDiag(Asym + xmid ~ 1) | Tree`` / ``pdDiag(Asym + xmid ~ 1 | Tree)`` for independent
random effects.  Everything is parsed by the formula parser into trees; the model function
and its gradient are evaluated by :mod:`mixedmodels.formula.derivative`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from mixedmodels.design.evaluate import ColumnTable
from mixedmodels.design.grouping import factor_labels, group_codes, value_labels
from mixedmodels.design.matrices import MatrixBuilder, response_vector
from mixedmodels.design.validate import check_frame, is_numeric, missing_mask
from mixedmodels.errors import ArgumentError, ColumnNotFoundError, DataError, FormulaError
from mixedmodels.formula.derivative import (
    Program,
    check_arithmetic,
    differentiate,
    evaluate,
    names,
    substitute,
)
from mixedmodels.formula.expr import (
    Binary,
    Call,
    Name,
    Node,
    Paren,
    deparse,
    parse_expression,
    variables,
)
from mixedmodels.formula.functions import check_calls
from mixedmodels.linalg.row_program import row_program_kernels


@dataclass(frozen=True)
class SelfStartSpec:
    """A self-starting model: covariate roles, parameter roles, the model as text."""

    covariates: tuple[str, ...]
    parameters: tuple[str, ...]
    expression: str


#: The self-starting models of R's ``stats`` (argument order as R's).
SELF_START: dict[str, SelfStartSpec] = {
    "SSlogis": SelfStartSpec(("input",), ("Asym", "xmid", "scal"),
                             "Asym/(1+exp((xmid-input)/scal))"),
    "SSfpl": SelfStartSpec(("input",), ("A", "B", "xmid", "scal"),
                           "A+(B-A)/(1+exp((xmid-input)/scal))"),
    "SSasymp": SelfStartSpec(("input",), ("Asym", "R0", "lrc"),
                             "Asym+(R0-Asym)*exp(-exp(lrc)*input)"),
    "SSasympOff": SelfStartSpec(("input",), ("Asym", "lrc", "c0"),
                                "Asym*(1-exp(-exp(lrc)*(input-c0)))"),
    "SSmicmen": SelfStartSpec(("input",), ("Vm", "K"), "Vm*input/(K+input)"),
    "SSgompertz": SelfStartSpec(("input",), ("Asym", "b2", "b3"), "Asym*exp(-b2*b3^input)"),
    "SSbiexp": SelfStartSpec(("input",), ("A1", "lrc1", "A2", "lrc2"),
                             "A1*exp(-exp(lrc1)*input)+A2*exp(-exp(lrc2)*input)"),
    "SSfol": SelfStartSpec(("Dose", "input"), ("lKe", "lKa", "lCl"),
                           "Dose*exp(lKe+lKa-lCl)*(exp(-exp(lKe)*input)-exp(-exp(lKa)*input))"
                           "/(exp(lKa)-exp(lKe))"),
}


# ------------------------------------------------------------------------ model function


@dataclass(frozen=True)
class ModelFunction:
    """A model ``f(parameters, covariates)`` with its symbolic gradient.

    Attributes
    ----------
    text : str
        The model as the user wrote it (right-hand side).
    parameters : tuple of str
        Parameter names in the order of the gradient's columns.
    covariates : dict
        Name inside the expression -> tree of data columns giving its value.
    value : Node
        The model tree (names: parameters and covariate names).
    gradient : tuple of Node
        d value / d parameter, one tree per parameter.
    self_start : str or None
        The self-starting model's name.
    """

    text: str
    parameters: tuple[str, ...]
    covariates: dict[str, Node]
    value: Node
    gradient: tuple[Node, ...]
    self_start: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "_program", Program([self.value, *self.gradient]))
        object.__setattr__(self, "_value_program", Program([self.value]))
        # the names each derivative reads (affine_in, once per fit)
        object.__setattr__(self, "_gradient_names",
                           {p: frozenset(names(g)) for p, g in zip(self.parameters,
                                                                   self.gradient,
                                                                   strict=True)})

    def affine_in(self, parameters: tuple[str, ...] | list[str]) -> bool:
        """Whether the model is affine in ``parameters`` jointly: no derivative in one of
        them names any of them (``SSlogis`` in ``Asym``: ``d/dAsym = 1/(1 + exp((xmid -
        input)/scal))``; not in ``xmid``).  A sufficient condition read from the symbolic
        gradient (a derivative that only simplifies to a constant counts as not affine)."""
        wanted = set(parameters)
        return all(wanted.isdisjoint(self._gradient_names[p]) for p in wanted)

    def covariate_values(self, data: pd.DataFrame,
                         read: dict[str, pd.Series] | None = None) -> dict[str, np.ndarray]:
        """The covariates' values on ``data`` (float arrays); ``read``: columns of ``data``
        already read (a frame's column look-up costs ~10 us)."""
        columns = {}
        read = {} if read is None else read
        for tree in self.covariates.values():
            for name in names(tree):
                if name in data.columns and name not in columns:
                    column = read[name] if name in read else data[name]
                    if not is_numeric(column):
                        raise DataError(
                            f"column {name!r} used in the model {self.text!r} is not numeric"
                        )
                    columns[name] = column.to_numpy(dtype=float)
        out = {}
        for key, tree in self.covariates.items():
            for name in names(tree):
                if name not in columns and name != "pi":
                    raise ColumnNotFoundError(
                        f"column {name!r} of the model {self.text!r} is not in the data"
                    )
            if isinstance(tree, Name) and tree.id in columns:  # a column as it is: a copy
                out[key] = np.array(columns[tree.id], dtype=float)
                continue
            with np.errstate(all="ignore"):
                out[key] = np.broadcast_to(
                    np.asarray(evaluate(tree, columns, self.text), dtype=float), (len(data),)
                ).copy()
        return out

    def __call__(
        self, phi: np.ndarray, cov: dict[str, np.ndarray], gradient: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Values (n,) and gradient (n, P) at parameter rows ``phi`` (n, P)."""
        if gradient:
            return self.rows(cov)(phi)
        return self.values(cov)(phi), None

    def rows(self, cov: dict[str, np.ndarray]) -> Callable[[np.ndarray], tuple[np.ndarray,
                                                                              np.ndarray]]:
        """The model on fixed covariates ``cov`` (n rows) as a function of the parameter
        rows ``phi`` (n, P): values (n,) and gradient (n, P).  The program is bound to the
        covariates once (:meth:`~mixedmodels.formula.derivative.Program.bind`); a fit calls
        the function returned here at every linearization."""
        n = _n_rows(cov)
        if n is not None:
            # (a register program: one compiled call when numba loads)
            return self._program.rows(cov, self.parameters, n)
        run = self._program.bind(cov, self.parameters)
        n_par = len(self.parameters)

        def fun(phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            n = phi.shape[0]
            with np.errstate(all="ignore"):
                out = run(phi.T)
            g = np.empty((n, n_par))
            for j in range(n_par):
                g[:, j] = out[j + 1]
            f = out[0]
            if not (isinstance(f, np.ndarray) and f.shape == (n,)):
                f = np.broadcast_to(np.asarray(f, dtype=float), (n,)).copy()
            return f, g

        return fun

    def values(self, cov: dict[str, np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        """As :meth:`rows`, the values only."""
        n = _n_rows(cov)
        if n is not None:
            model = self._value_program.rows(cov, self.parameters, n, gradient=False)

            def compiled(phi: np.ndarray) -> np.ndarray:
                return model(phi)[0]

            return compiled
        run = self._value_program.bind(cov, self.parameters)

        def fun(phi: np.ndarray) -> np.ndarray:
            with np.errstate(all="ignore"):
                (f,) = run(phi.T)
            return np.broadcast_to(np.asarray(f, dtype=float), (phi.shape[0],)).copy()

        return fun

    def on(
        self, cov: dict[str, np.ndarray]
    ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """The model on fixed covariates as a function of one parameter vector (the
        parameters enter as scalars: what depends on them alone is computed once per
        call, not once per row).

        Compiled (numba loads), the function is the register program run directly on
        every row (:class:`~mixedmodels.linalg.row_program.RowProgram`: the same
        operations on the same values as with scalars, the same bits); it leaves numpy's
        error state to its caller (the self-start's fit holds ``np.errstate(all=
        "ignore")``; an overflowing ``exp`` otherwise warns as numpy does)."""
        n = next(iter(cov.values())).size if cov else 1
        n_par = len(self.parameters)
        module = row_program_kernels()
        if module is not None and _n_rows(cov) == n:
            program = self._program.rows(cov, self.parameters, n).program
            phi = np.empty((n, n_par))  # (read into the registers at each call: reusable)

            def compiled(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                # RowModel's call without its checks: phi is ours, C-ordered floats
                phi[:] = p
                regs = program.init.copy()
                module.start_rows(regs, program.input_registers, program.input_columns, phi,
                                  program.first_ops)
                program.middle(module, regs)
                f = np.empty(n)
                g = np.empty((n, n_par))
                module.finish_rows(regs, program.last_ops, program.outputs, f, g)
                return f, g

            return compiled
        run = self._program.bind(cov, self.parameters)

        def fun(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with np.errstate(all="ignore"):
                out = run([float(v) for v in np.asarray(p, dtype=float)])
            g = np.empty((n, n_par))
            for j in range(n_par):
                g[:, j] = out[j + 1]
            return np.broadcast_to(np.asarray(out[0], dtype=float), (n,)).copy(), g

        return fun

    def self_start_roles(self, data_cov: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The covariates of a self-starting model by role, as its starting-value algorithm
        (:data:`mixedmodels.core.selfstart.INITIAL`) takes them."""
        if self.self_start is None:
            raise ArgumentError("starting values are needed: the model is not self-starting")
        return {role: data_cov[role] for role in SELF_START[self.self_start].covariates}


def _n_rows(cov: dict[str, np.ndarray]) -> int | None:
    """The rows of the covariates (None without covariates or when they are not all
    columns of one length)."""
    sizes = {np.shape(v) for v in cov.values()}
    if len(sizes) != 1:
        return None
    (shape,) = sizes
    return shape[0] if len(shape) == 1 else None


def _sum_names(node: Node, text: str, what: str) -> list[str]:
    """``a + b + c`` -> ["a", "b", "c"]."""
    out: list[str] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Paren):
            stack.append(current.inner)
        elif isinstance(current, Binary) and current.op == "+":
            stack.extend((current.right, current.left))
        elif isinstance(current, Name):
            if current.id in out:
                raise FormulaError(f"parameter {current.id!r} named twice in {what}", text,
                                   current.pos)
            out.append(current.id)
        else:
            raise FormulaError(f"{what} must list parameter names joined by '+'", text,
                               getattr(current, "pos", None))
    return out


def parse_model(model: str, parameters: list[str]) -> tuple[str, ModelFunction]:
    """Response name and model function of ``response ~ expression``.

    ``parameters`` are the names the fixed-effects formulas declare; the other names of an
    expression are data columns.  Parsed, differentiated and compiled once per model text.
    """
    if not isinstance(model, str):
        raise FormulaError(f"the model must be a string, got {type(model).__name__}")
    return _parse_model(model, tuple(parameters))


@lru_cache(maxsize=128)
def _parse_model(model: str, parameters: tuple[str, ...]) -> tuple[str, ModelFunction]:
    parameters = list(parameters)
    tree = parse_expression(model)
    if not (isinstance(tree, Binary) and tree.op == "~"):
        raise FormulaError("the model must be 'response ~ expression'", model, 0)
    response = _response_text(tree.left, model, parameters)
    rhs = tree.right
    while isinstance(rhs, Paren):
        rhs = rhs.inner
    if isinstance(rhs, Call) and rhs.func in SELF_START:
        return response, _self_start_model(model, rhs, parameters)
    if isinstance(rhs, Call) and rhs.func.startswith("SS"):
        raise FormulaError(
            f"unknown self-starting model {rhs.func}() (known: {', '.join(SELF_START)})",
            model, rhs.pos,
        )
    check_arithmetic(rhs, model)
    used = names(rhs)
    missing = [p for p in parameters if p not in used]
    if missing:
        raise FormulaError(f"parameter {missing[0]!r} of the fixed formula does not occur in "
                           f"the model expression", model, rhs.pos)
    covariates = {n: Name(n, -1) for n in used if n not in parameters}
    gradient = tuple(differentiate(rhs, p, model) for p in parameters)
    return response, ModelFunction(model.split("~", 1)[1].strip(), tuple(parameters),
                                   covariates, rhs, gradient)


def _response_text(node: Node, model: str, parameters: list[str]) -> str:
    """The response of ``response ~ expression``: a column name, or an expression of data
    columns (``log(size)``) that :func:`mixedmodels.design.matrices.response_vector`
    evaluates as ``mm.lmer`` does (never Python's ``eval``); checked here, where an error can
    point into the model text."""
    while isinstance(node, Paren):
        node = node.inner
    if isinstance(node, Name):
        return node.id
    check_calls(node, model)
    for name in variables(node):
        if name in parameters:
            raise FormulaError(f"the response {deparse(node)!r} uses the parameter {name!r}; "
                               "it must be a data column or an expression of data columns",
                               model, node.pos)
    if not variables(node):
        raise FormulaError(f"the response {deparse(node)!r} reads no data column", model,
                           node.pos)
    return deparse(node)


def _self_start_model(model: str, node: Call, parameters: list[str]) -> ModelFunction:
    spec = SELF_START[node.func]
    roles = spec.covariates + spec.parameters
    if node.keywords:
        bound = dict(zip(roles, node.args, strict=False))
        for key, value in node.keywords:
            if key not in roles:
                raise FormulaError(f"{node.func}() has no argument {key!r} (its arguments: "
                                   f"{', '.join(roles)})", model, node.pos)
            bound[key] = value
    else:
        bound = dict(zip(roles, node.args, strict=False))
    if len(node.args) > len(roles) or len(bound) != len(roles):
        raise FormulaError(f"{node.func}() takes {len(roles)} arguments "
                           f"({', '.join(roles)})", model, node.pos)
    param_names = []
    for role in spec.parameters:
        arg = bound[role]
        if not isinstance(arg, Name):
            raise FormulaError(f"argument {role!r} of {node.func}() must be a parameter name",
                               model, arg.pos)
        param_names.append(arg.id)
    unknown = [p for p in param_names if p not in parameters]
    if unknown:
        raise FormulaError(f"parameter {unknown[0]!r} of {node.func}() is not in the fixed "
                           f"formula (it declares: {', '.join(parameters)})", model, node.pos)
    extra = [p for p in parameters if p not in param_names]
    if extra:
        raise FormulaError(f"the fixed formula declares {extra[0]!r}, which {node.func}() "
                           f"does not take", model, node.pos)
    covariates = {}
    for role in spec.covariates:
        check_arithmetic(bound[role], model)
        covariates[role] = bound[role]
    generic = parse_expression(spec.expression)
    value = substitute(generic, {r: Name(p, -1) for r, p in zip(spec.parameters, param_names,
                                                               strict=True)})
    gradient = tuple(differentiate(value, p) for p in param_names)
    return ModelFunction(deparse(node), tuple(param_names), covariates, value, gradient,
                         self_start=node.func)


# ------------------------------------------------------------------ fixed and random parts


@dataclass
class ParameterDesign:
    """One parameter's fixed-effect design: ``phi = F beta (+ b)``."""

    name: str
    rhs: str
    builder: MatrixBuilder
    columns: list[str]


def parse_fixed(fixed: str | list[str]) -> list[tuple[str, str]]:
    """``["Asym + xmid ~ 1", "scal ~ x"]`` -> [(param, rhs text), ...] in order."""
    formulas = [fixed] if isinstance(fixed, str) else list(fixed)
    if not formulas:
        raise FormulaError("the fixed-effects formula is empty")
    out: list[tuple[str, str]] = []
    for text in formulas:
        if not isinstance(text, str):
            raise FormulaError(f"a fixed-effects formula must be a string, got "
                               f"{type(text).__name__}")
        tree = parse_expression(text)
        if not (isinstance(tree, Binary) and tree.op == "~"):
            raise FormulaError("a fixed-effects formula must be 'parameters ~ covariates'",
                               text, 0)
        rhs = deparse(tree.right)
        for p in _sum_names(tree.left, text, "the left side of a fixed formula"):
            if any(p == q for q, _ in out):
                raise FormulaError(f"parameter {p!r} has two fixed-effects formulas", text, 0)
            out.append((p, rhs))
    return out


@dataclass(frozen=True)
class RandomSpec:
    """Random effects of one grouping factor: parameters, grouping column, structure.

    ``nesting``: the grouping columns of nested levels, outermost first (``site/plot``:
    ``("site", "plot")``, each level with random effects on ``parameters``); empty for one
    grouping factor.  ``group`` is the innermost column.
    """

    parameters: tuple[str, ...]
    group: str
    diagonal: bool
    nesting: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        """The grouping columns, outermost first."""
        return self.nesting or (self.group,)

    @property
    def level_names(self) -> list[str]:
        """The levels as nlme names them: ``site``, ``plot %in% site`` (``c %in% b %in% a``
        for ``a/b/c``)."""
        cols = self.columns
        return [" %in% ".join(reversed(cols[: k + 1])) for k in range(len(cols))]


def parse_random(random: str, covariance: str | None = None) -> RandomSpec:
    """``Asym + xmid ~ 1 | Tree``, ``pdDiag(Asym + xmid ~ 1) | Tree`` or
    ``pdDiag(Asym + xmid ~ 1 | Tree)``."""
    if not isinstance(random, str):
        raise FormulaError(f"the random-effects formula must be a string, got "
                           f"{type(random).__name__}")
    tree = parse_expression(random)
    diagonal = False
    structure = None
    while isinstance(tree, Paren):
        tree = tree.inner
    if isinstance(tree, Call):
        structure = tree
        if len(tree.args) != 1:
            raise FormulaError(f"{tree.func}() takes one formula", random, tree.pos)
        tree = tree.args[0]
    if isinstance(tree, Binary) and tree.op == "|" and isinstance(tree.left, Call):
        structure = tree.left
        if len(structure.args) != 1:
            raise FormulaError(f"{structure.func}() takes one formula", random, structure.pos)
        inner = structure.args[0]
        if not (isinstance(inner, Binary) and inner.op == "~"):
            raise FormulaError(f"{structure.func}() takes 'parameters ~ 1'", random,
                               structure.pos)
        tree = Binary("~", inner.left, Binary("|", inner.right, tree.right, tree.pos), inner.pos)
    if structure is not None:
        if structure.func not in ("pdDiag", "pdSymm", "pdLogChol"):
            raise FormulaError(f"unknown covariance structure {structure.func}() (known: "
                               "pdDiag, pdSymm, pdLogChol)", random, structure.pos)
        diagonal = structure.func == "pdDiag"
    if covariance is not None:
        if covariance not in ("diag", "pdDiag", "general", "pdSymm", "pdLogChol"):
            raise ArgumentError(f"covariance must be 'general' or 'diag', got {covariance!r}")
        diagonal = covariance in ("diag", "pdDiag")
    if not (isinstance(tree, Binary) and tree.op == "~"):
        raise FormulaError("the random-effects formula must be 'parameters ~ 1 | group'",
                           random, 0)
    rhs = tree.right
    if not (isinstance(rhs, Binary) and rhs.op == "|"):
        raise FormulaError("the random-effects formula needs a grouping factor: "
                           "'parameters ~ 1 | group'", random, rhs.pos)
    inner = rhs.left
    while isinstance(inner, Paren):
        inner = inner.inner
    if not (getattr(inner, "value", None) == 1.0):
        raise FormulaError("random effects on covariates are not supported: write "
                           "'parameters ~ 1 | group'", random, inner.pos)
    nesting = _nesting(rhs.right, random)
    params = _sum_names(tree.left, random, "the left side of the random formula")
    if len(nesting) > 1:
        return RandomSpec(tuple(params), nesting[-1], diagonal, tuple(nesting))
    return RandomSpec(tuple(params), nesting[0], diagonal)


def _nesting(node: Node, text: str) -> list[str]:
    """``g`` -> ["g"]; ``site/plot`` (nlme's nested levels) -> ["site", "plot"]."""
    while isinstance(node, Paren):
        node = node.inner
    if isinstance(node, Binary) and node.op == "/":
        out = _nesting(node.left, text) + _nesting(node.right, text)
        if len(set(out)) < len(out):
            raise FormulaError("a grouping column is named twice in the nesting", text,
                               node.pos)
        return out
    if not isinstance(node, Name):
        raise FormulaError("the grouping factor must be a column name or nested column "
                           "names (site/plot)", text, node.pos)
    return [node.id]


# ---------------------------------------------------------------------------- the design


@dataclass
class NlmeDesign:
    """Everything numeric a nonlinear mixed model needs, and how to redo it on new data."""

    response: str
    y: np.ndarray
    model: ModelFunction
    covariates: dict[str, np.ndarray]
    parameters: list[ParameterDesign]
    fixed_matrices: list[np.ndarray]
    random: RandomSpec
    random_index: list[int]
    groups: np.ndarray
    levels: list[str]
    rows: np.ndarray
    n_dropped: int = 0
    fixed_names: list[str] = field(default_factory=list)
    function_index: list[int] = field(default_factory=list)
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    #: Rows among ``n_dropped`` where a transformed response is NaN or infinite.
    n_nonfinite: int = 0
    #: Each grouping level's codes and labels, outermost first (one level: ``groups``,
    #: ``levels``; nested ``site/plot``: site, then ``s1/p1``-labelled plots within sites).
    level_groups: list[np.ndarray] = field(default_factory=list)
    level_levels: list[list[str]] = field(default_factory=list)

    def dropped_message(self) -> str:
        """What was dropped, for the warning: ``"3 row(s) dropped: 2 with missing values,
        1 where log(size) is not finite"``."""
        missing = self.n_dropped - self.n_nonfinite
        if not self.n_nonfinite:
            return f"{self.n_dropped} row(s) with missing values dropped"
        parts = ([f"{missing} with missing values"] if missing else []) + [
            f"{self.n_nonfinite} where the response {self.response} is not finite"]
        return f"{self.n_dropped} row(s) dropped: {', '.join(parts)}"

    @property
    def n_fixed(self) -> int:
        return sum(m.shape[1] for m in self.fixed_matrices)

    def fixed_slices(self) -> list[slice]:
        out, start = [], 0
        for m in self.fixed_matrices:
            out.append(slice(start, start + m.shape[1]))
            start += m.shape[1]
        return out

    def new_fixed_matrices(self, data: pd.DataFrame) -> list[np.ndarray]:
        return [p.builder.build(data) for p in self.parameters]

    def prediction_columns(self, data: pd.DataFrame, level: int) -> list[str]:
        """The columns of ``data`` a prediction reads: the model's covariates, the fixed
        formulas' covariates and, at ``level=1``, the grouping column."""
        used: list[str] = []
        for tree in self.model.covariates.values():
            used += [n for n in names(tree) if n != "pi" or n in data.columns]
        for par in self.parameters:
            if par.rhs.strip() != "1":
                used += _rhs_columns(par.builder, data)
        used += list(self.random.columns[:level])
        return list(dict.fromkeys(used))


@dataclass(frozen=True)
class _Formulas:
    """nlme's three formulas parsed and checked against each other (no data): what
    :func:`build_nlme_design` reads from the text, kept per text (:func:`_formulas`).

    ``response_names``: the columns of a response expression (``log(size)``: ``size``),
    used when no column is named as the whole response; ``model_names`` the names the
    model's covariates read; ``rhs_names`` each distinct fixed right-hand side's names
    (``"1"``: none), in the order of first use; ``pi`` among them is a column only when
    the data have one."""

    fixed_parts: tuple[tuple[str, str], ...]
    response: str
    function: ModelFunction
    spec: RandomSpec
    response_names: tuple[str, ...]
    model_names: tuple[str, ...]
    rhs_names: dict[str, tuple[str, ...]]
    random_index: tuple[int, ...]
    function_index: tuple[int, ...]


def _formulas(model: str, fixed: str | list[str], random: str,
              covariance: str | None) -> _Formulas:
    """:class:`_Formulas` of the texts (kept by text; errors raised anew every time)."""
    key = fixed if isinstance(fixed, str) else (
        tuple(fixed) if isinstance(fixed, list | tuple) and all(isinstance(f, str)
                                                                 for f in fixed) else None)
    if (key is None or not isinstance(model, str) or not isinstance(random, str)
            or not (covariance is None or isinstance(covariance, str))):
        return _parse_formulas(model, fixed, random, covariance)  # its errors
    return _cached_formulas(model, key, random, covariance)


@lru_cache(maxsize=128)
def _cached_formulas(model: str, fixed: str | tuple[str, ...], random: str,
                     covariance: str | None) -> _Formulas:
    return _parse_formulas(model, fixed if isinstance(fixed, str) else list(fixed), random,
                           covariance)


def _parse_formulas(model, fixed, random, covariance) -> _Formulas:
    fixed_parts = parse_fixed(fixed)
    param_names = [p for p, _ in fixed_parts]
    response, function = parse_model(model, param_names)
    spec = parse_random(random, covariance)
    for p in spec.parameters:
        if p not in param_names:
            raise FormulaError(f"random-effects parameter {p!r} is not a model parameter "
                               f"({', '.join(param_names)})", random, 0)
    model_names: list[str] = []
    for tree in function.covariates.values():
        model_names += names(tree)
    rhs_names: dict[str, tuple[str, ...]] = {}
    for _, rhs in fixed_parts:
        key = rhs.strip()
        if key not in rhs_names:
            rhs_names[key] = tuple(v for node in MatrixBuilder(rhs).structure.variables
                                   for v in variables(node))
    order = {p: i for i, p in enumerate(function.parameters)}
    return _Formulas(
        fixed_parts=tuple(fixed_parts), response=response, function=function, spec=spec,
        response_names=tuple(variables(parse_expression(response))),
        model_names=tuple(model_names), rhs_names=rhs_names,
        random_index=tuple(order[p] for p in spec.parameters),
        function_index=tuple(order[p] for p, _ in fixed_parts),
    )


def build_nlme_design(
    model: str, data: object, fixed: str | list[str], random: str,
    covariance: str | None = None, extra_columns: list[str] | tuple[str, ...] = (),
) -> NlmeDesign:
    """Parse the three formulas and evaluate them on ``data``.

    ``extra_columns`` are read too (a variance function's covariates): their values on the
    rows kept are in :attr:`NlmeDesign.extra` (integer columns as integers, other numeric
    columns as floats, anything else as labels).  Rows with a missing value in any column
    used are dropped (and counted).

    The formulas are parsed once per text (:func:`_formulas`); the data are read anew at
    every call, each column used once.
    """
    frame = check_frame(data)
    parsed = _formulas(model, fixed, random, covariance)
    response, function, spec = parsed.response, parsed.function, parsed.spec
    columns = frame.columns
    # columns used ("pi" is the constant unless the data have such a column)
    response_columns = [response] if response in columns else list(parsed.response_names)
    used: list[str] = [*response_columns, *spec.columns]
    pi_column = "pi" in columns
    used += [n for n in parsed.model_names if n != "pi" or pi_column]
    for names_ in parsed.rhs_names.values():
        used += [v for v in names_ if v != "pi" or pi_column]
    used = list(dict.fromkeys(used + list(extra_columns)))
    for name in used:
        if name not in columns:
            raise ColumnNotFoundError(f"column {name!r} is not in the data "
                                      f"(columns: {', '.join(map(str, columns[:12]))})")
    # missing values column by column; the frame itself is read when nothing is dropped
    # (a sub-frame and its isna() cost more than the rest of the design on these data)
    # each column once (check_frame refused duplicated names: each is one Series)
    read: dict[str, pd.Series] = {name: frame[name] for name in used}
    missing = None
    for column in read.values():
        mask = missing_mask(column)
        missing = mask if missing is None else missing | mask
    n_dropped = int(np.count_nonzero(missing))
    keep = ~missing
    n_nonfinite = 0
    sub = frame.loc[keep, used] if n_dropped else frame
    if response_columns == [response]:
        column = read[response] if sub is frame else sub[response]
        if not is_numeric(column):
            raise DataError(f"the response {response!r} is not numeric")
        y = column.to_numpy(dtype=float)
        if not np.isfinite(y).all():
            raise DataError(f"the response {response!r} has infinite values")
    else:
        # a transformed response (log(size)): NaN and infinite values of the transform
        # (log of 0 or of a negative number) drop their rows, counted with the missing ones
        for name in response_columns:
            if not is_numeric(sub[name]):
                raise DataError(f"column {name!r} of the response {response!r} is not numeric")
        with np.errstate(all="ignore"):
            y = response_vector(sub, response)
        bad = ~np.isfinite(y)
        if bad.all():
            raise DataError(f"the response {response!r} is not finite on any row")
        if bad.any():
            n_nonfinite = int(bad.sum())
            keep[np.flatnonzero(keep)[bad]] = False
            n_dropped = int((~keep).sum())
            sub = frame.loc[keep, used]
            y = y[~bad]
    cov = function.covariate_values(sub, read if sub is frame else None)
    for key, values in cov.items():
        if not np.isfinite(values).all():
            bad = ~np.isfinite(values)
            columns_ = ", ".join(repr(c) for c in names(function.covariates[key]) if c != "pi")
            raise DataError(
                f"the model's {key} (from column {columns_}) is not finite in "
                f"{int(bad.sum())} row(s) (first: row {int(np.flatnonzero(bad)[0])} of the "
                "rows used)"
            )
    n = len(sub)
    designs, matrices, fixed_names = [], [], []
    builders: dict[str, MatrixBuilder] = {}  # one builder per distinct right-hand side
    built: dict[str, np.ndarray] = {}  # Soybean's Asym + xmid + scal ~ Variety: built once
    for p, rhs in parsed.fixed_parts:
        key = rhs.strip()
        builder = builders.get(key)
        if builder is None:  # (setdefault would build one per parameter)
            builder = builders[key] = MatrixBuilder(rhs)
        # an intercept-only parameter needs no model matrix machinery
        if key == "1":
            matrix = np.ones((n, 1))
            builder.column_names = ["(Intercept)"]
        else:
            if key not in built:
                built[key] = builder.build(ColumnTable(sub, read) if sub is frame else sub)
            matrix = built[key].copy()
        designs.append(ParameterDesign(p, rhs, builder, list(builder.column_names)))
        matrices.append(matrix)
        if builder.column_names == ["(Intercept)"]:
            fixed_names.append(p)
        else:
            fixed_names += [f"{p}.{c}" for c in builder.column_names]
    level_groups, level_levels = [], []
    for k in range(len(spec.columns)):
        level_codes, labels = nested_codes(sub, spec.columns[: k + 1],
                                           read if sub is frame else None)
        level_groups.append(level_codes)
        level_levels.append(labels)
    codes, levels = level_groups[-1], level_levels[-1]
    extra = {}
    for name in extra_columns:
        column = read[name] if sub is frame else sub[name]
        if is_numeric(column) and pd.api.types.is_integer_dtype(column.dtype):
            extra[name] = column.to_numpy(dtype=np.int64)  # labels "1", not "1.0"
        elif is_numeric(column):
            extra[name] = column.to_numpy(dtype=float)
        else:
            extra[name] = column.astype(str).to_numpy()
    return NlmeDesign(
        response=response, y=y, model=function, covariates=cov, parameters=designs,
        fixed_matrices=matrices, random=spec,
        random_index=list(parsed.random_index),
        function_index=list(parsed.function_index),
        groups=codes, levels=levels, rows=np.flatnonzero(keep),
        level_groups=level_groups, level_levels=level_levels,
        n_dropped=n_dropped, fixed_names=fixed_names, extra=extra, n_nonfinite=n_nonfinite,
    )


def nested_codes(data: pd.DataFrame, columns: tuple[str, ...],
                 read: dict[str, pd.Series] | None = None) -> tuple[np.ndarray, list[str]]:
    """Codes and labels of the groups of ``columns`` (a column, or nested columns whose
    groups are their observed combinations, labelled ``s1/p1`` as nlme labels them);
    ``read``: columns of ``data`` already read."""
    if len(columns) == 1:
        (name,) = columns
        return factor_labels(read[name] if read and name in read else data[name])
    codes, _ = group_codes(data, columns)
    row_labels = [value_labels(data[c]) for c in columns]
    _, first = np.unique(codes, return_index=True)  # codes are 0..l-1, all observed
    labels = ["/".join(str(lab[j]) for lab in row_labels) for j in first]
    return codes, labels


def nested_codes_for(data: pd.DataFrame, columns: tuple[str, ...],
                     labels: list[str]) -> np.ndarray:
    """Each row's index among the fitted groups' ``labels`` of ``columns`` (-1 for a
    combination the fit did not see, or a missing value)."""
    parts = [pd.Series(value_labels(data[c]), dtype=object) for c in columns]
    text = parts[0].astype(str)
    for part in parts[1:]:
        text = text + "/" + part.astype(str)
    missing = np.zeros(len(data), dtype=bool)
    for part in parts:
        missing |= part.isna().to_numpy()
    codes = pd.Index(labels).get_indexer(text.to_numpy())
    codes[missing] = -1
    return codes


def _rhs_columns(builder: MatrixBuilder, frame: pd.DataFrame) -> list[str]:
    out = []
    for node in builder.structure.variables:
        out += [v for v in variables(node) if v in frame.columns or v not in ("pi",)]
    return out
