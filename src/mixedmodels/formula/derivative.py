"""Arithmetic expressions of the formula language as functions: evaluation and symbolic
derivatives on the syntax tree.

A nonlinear model such as ``Asym/(1+exp((xmid-age)/scal))`` is parsed by
:func:`mixedmodels.formula.expr.parse_expression` and stays a tree.  This module

* evaluates a tree on arrays (:func:`evaluate`) with a small interpreter that knows the
  arithmetic operators and the elementary functions of :data:`UNARY_FUNCTIONS` only;
* differentiates a tree with respect to a name (:func:`differentiate`), rule by rule
  (sum, difference, product, quotient, power, chain rule for each elementary function),
  folding constants so that the derivative trees stay small.

Nothing here is handed to Python's ``eval``: a name is looked up in the mapping given to
:func:`evaluate`, a call must be one of the listed functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mixedmodels.errors import FormulaError
from mixedmodels.formula.expr import Binary, Call, Name, Node, Number, Paren, String, Unary, deparse
from mixedmodels.linalg.row_program import RowModel, RowProgram, bind_stages, schedule

#: One-argument functions the interpreter evaluates (and can differentiate).
UNARY_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "log10": np.log10,
    "log2": np.log2,
    "log1p": np.log1p,
    "expm1": np.expm1,
    "abs": np.abs,
    "sign": np.sign,
}

_OPERATORS = {"+", "-", "*", "/", "^"}
_BINARY = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "^": np.power}
_CONSTANTS = {"pi": math.pi}


def _error(message: str, node: Node, text: str | None) -> FormulaError:
    pos = getattr(node, "pos", -1)
    return FormulaError(message, text, pos if text is not None and pos >= 0 else None)


def check_arithmetic(node: Node, text: str | None = None) -> None:
    """A located :class:`FormulaError` unless ``node`` is built from numbers, names, the
    operators ``+ - * / ^`` and the functions of :data:`UNARY_FUNCTIONS`."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Name | Number):
            continue
        if isinstance(current, String):
            raise _error("a string has no place in a model expression", current, text)
        if isinstance(current, Paren):
            stack.append(current.inner)
        elif isinstance(current, Unary):
            if current.op not in ("-", "+"):
                raise _error(f"operator {current.op!r} in a model expression", current, text)
            stack.append(current.operand)
        elif isinstance(current, Binary):
            if current.op not in _OPERATORS:
                raise _error(
                    f"operator {current.op!r} in a model expression (allowed: + - * / ^)",
                    current,
                    text,
                )
            stack.extend((current.left, current.right))
        else:
            assert isinstance(current, Call)
            if current.func not in UNARY_FUNCTIONS:
                raise _error(
                    f"unknown function {current.func}() in a model expression (allowed: "
                    f"{', '.join(sorted(UNARY_FUNCTIONS))})",
                    current,
                    text,
                )
            if len(current.args) != 1 or current.keywords:
                raise _error(f"{current.func}() takes exactly one argument here", current, text)
            stack.append(current.args[0])


def names(node: Node) -> list[str]:
    """The names an expression reads, in order of first appearance (constants such as
    ``pi`` included: the caller decides what is data)."""
    found: list[str] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Name):
            if current.id not in found:
                found.append(current.id)
        elif isinstance(current, Paren):
            stack.append(current.inner)
        elif isinstance(current, Unary):
            stack.append(current.operand)
        elif isinstance(current, Binary):
            stack.extend((current.right, current.left))
        elif isinstance(current, Call):
            stack.extend(reversed(current.args))
    return found


# --------------------------------------------------------------------------- evaluate


def evaluate(node: Node, env: Mapping[str, np.ndarray | float], text: str | None = None):
    """The value of an arithmetic tree with names looked up in ``env`` (``pi`` when not
    there); arrays broadcast as numpy broadcasts them."""
    if isinstance(node, Number):
        return node.value
    if isinstance(node, Name):
        if node.id in env:
            return env[node.id]
        if not node.quoted and node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise _error(f"unknown name {node.id!r} in the model expression", node, text)
    if isinstance(node, Paren):
        return evaluate(node.inner, env, text)
    if isinstance(node, Unary):
        value = evaluate(node.operand, env, text)
        return -value if node.op == "-" else value
    if isinstance(node, Binary):
        left = evaluate(node.left, env, text)
        right = evaluate(node.right, env, text)
        op = node.op
        if op == "+":
            return left + right
        if op == "-":
            return left - right
        if op == "*":
            return left * right
        if op == "/":
            return left / right
        if op == "^":
            return np.power(left, right)
        raise _error(f"operator {op!r} in a model expression", node, text)
    if isinstance(node, Call) and node.func in UNARY_FUNCTIONS and len(node.args) == 1:
        return UNARY_FUNCTIONS[node.func](evaluate(node.args[0], env, text))
    raise _error("not an arithmetic expression", node, text)


# ------------------------------------------------------------------ building and folding


def _num(value: float) -> Number:
    return Number(float(value), -1)


def _is_num(node: Node, value: float | None = None) -> bool:
    if isinstance(node, Paren):
        return _is_num(node.inner, value)
    return isinstance(node, Number) and (value is None or node.value == value)


def _value(node: Node) -> float:
    while isinstance(node, Paren):
        node = node.inner
    assert isinstance(node, Number)
    return node.value


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "^": 4}


def _wrap(node: Node, above: str, right: bool = False) -> Node:
    """``node`` in parentheses where deparsing under ``above`` would misread it."""
    inner = node
    if isinstance(inner, Binary):
        p, q = _PRECEDENCE.get(inner.op, 0), _PRECEDENCE[above]
        if p < q or (p == q and right and above in "-/") or (above == "^" and p == q):
            return Paren(inner, -1)
    if isinstance(inner, Unary) and above in ("^", "*", "/"):
        return Paren(inner, -1)
    if isinstance(inner, Number) and inner.value < 0:
        return Paren(inner, -1)
    return node


def add(a: Node, b: Node) -> Node:
    if _is_num(a, 0.0):
        return b
    if _is_num(b, 0.0):
        return a
    if _is_num(a) and _is_num(b):
        return _num(_value(a) + _value(b))
    return Binary("+", a, _wrap(b, "+", right=True), -1)


def sub(a: Node, b: Node) -> Node:
    if _is_num(b, 0.0):
        return a
    if _is_num(a, 0.0):
        return neg(b)
    if _is_num(a) and _is_num(b):
        return _num(_value(a) - _value(b))
    return Binary("-", a, _wrap(b, "-", right=True), -1)


def neg(a: Node) -> Node:
    if _is_num(a):
        return _num(-_value(a))
    if isinstance(a, Unary) and a.op == "-":
        return a.operand
    return Unary("-", _wrap(a, "*"), -1)


def mul(a: Node, b: Node) -> Node:
    if _is_num(a, 0.0) or _is_num(b, 0.0):
        return _num(0.0)
    if _is_num(a, 1.0):
        return b
    if _is_num(b, 1.0):
        return a
    if _is_num(a) and _is_num(b):
        return _num(_value(a) * _value(b))
    if _is_num(a, -1.0):
        return neg(b)
    if _is_num(b, -1.0):
        return neg(a)
    return Binary("*", _wrap(a, "*"), _wrap(b, "*", right=True), -1)


def div(a: Node, b: Node) -> Node:
    if _is_num(a, 0.0):
        return _num(0.0)
    if _is_num(b, 1.0):
        return a
    if _is_num(a) and _is_num(b) and _value(b) != 0:
        return _num(_value(a) / _value(b))
    return Binary("/", _wrap(a, "/"), _wrap(b, "/", right=True), -1)


def power(a: Node, b: Node) -> Node:
    if _is_num(b, 0.0):
        return _num(1.0)
    if _is_num(b, 1.0):
        return a
    if _is_num(a) and _is_num(b):
        return _num(_value(a) ** _value(b))
    return Binary("^", _wrap(a, "^"), _wrap(b, "^", right=True), -1)


def call(func: str, arg: Node) -> Node:
    return Call(func, (arg,), (), -1)


def _depends(node: Node, name: str) -> bool:
    return name in names(node)


# ------------------------------------------------------------------------- derivative


def _chain(func: str, u: Node) -> Node:
    """d func(u) / du as a tree."""
    rules: dict[str, Callable[[], Node]] = {
        "exp": lambda: call("exp", u),
        "expm1": lambda: call("exp", u),
        "log": lambda: div(_num(1.0), u),
        "log10": lambda: div(_num(1.0), mul(u, call("log", _num(10.0)))),
        "log2": lambda: div(_num(1.0), mul(u, call("log", _num(2.0)))),
        "log1p": lambda: div(_num(1.0), add(_num(1.0), u)),
        "sqrt": lambda: div(_num(1.0), mul(_num(2.0), call("sqrt", u))),
        "sin": lambda: call("cos", u),
        "cos": lambda: neg(call("sin", u)),
        "tan": lambda: div(_num(1.0), power(call("cos", u), _num(2.0))),
        "atan": lambda: div(_num(1.0), add(_num(1.0), power(u, _num(2.0)))),
        "sinh": lambda: call("cosh", u),
        "cosh": lambda: call("sinh", u),
        "tanh": lambda: sub(_num(1.0), power(call("tanh", u), _num(2.0))),
        "abs": lambda: call("sign", u),
        "sign": lambda: _num(0.0),
    }
    return rules[func]()


def differentiate(node: Node, name: str, text: str | None = None) -> Node:
    """The derivative of an arithmetic tree with respect to ``name``, as a tree.

    Rules: constants and other names give 0; ``d(a +- b) = da +- db``;
    ``d(a*b) = da*b + a*db``; ``d(a/b) = da/b - a*db/b^2``; ``d(a^c) = c*a^(c-1)*da`` for
    ``c`` free of ``name``, ``d(a^b) = a^b*(db*log(a) + b*da/a)`` otherwise; the chain rule
    for each function of :data:`UNARY_FUNCTIONS`.
    """
    if isinstance(node, Number | String):
        return _num(0.0)
    if isinstance(node, Name):
        return _num(1.0 if node.id == name else 0.0)
    if isinstance(node, Paren):
        return differentiate(node.inner, name, text)
    if isinstance(node, Unary):
        d = differentiate(node.operand, name, text)
        return neg(d) if node.op == "-" else d
    if isinstance(node, Binary):
        a, b = node.left, node.right
        da = differentiate(a, name, text)
        db = differentiate(b, name, text)
        if node.op == "+":
            return add(da, db)
        if node.op == "-":
            return sub(da, db)
        if node.op == "*":
            return add(mul(da, b), mul(a, db))
        if node.op == "/":
            if _is_num(db, 0.0):
                return div(da, b)
            return sub(div(da, b), div(mul(a, db), power(b, _num(2.0))))
        if node.op == "^":
            if not _depends(b, name):
                if _is_num(da, 0.0):
                    return _num(0.0)
                exponent = sub(b, _num(1.0))
                return mul(mul(b, power(a, exponent)), da)
            term = mul(db, call("log", a))
            if not _is_num(da, 0.0):
                term = add(term, div(mul(b, da), a))
            return mul(power(a, b), term)
        raise _error(f"cannot differentiate operator {node.op!r}", node, text)
    if isinstance(node, Call) and node.func in UNARY_FUNCTIONS and len(node.args) == 1:
        u = node.args[0]
        du = differentiate(u, name, text)
        if _is_num(du, 0.0):
            return _num(0.0)
        return mul(_chain(node.func, u), du)
    raise _error("cannot differentiate this expression", node, text)


def substitute(node: Node, replacements: Mapping[str, Node]) -> Node:
    """``node`` with the names of ``replacements`` replaced by the given trees."""
    if isinstance(node, Name):
        if node.id in replacements:
            return _wrap_atom(replacements[node.id])
        return node
    if isinstance(node, Number | String):
        return node
    if isinstance(node, Paren):
        return Paren(substitute(node.inner, replacements), node.pos)
    if isinstance(node, Unary):
        return Unary(node.op, substitute(node.operand, replacements), node.pos)
    if isinstance(node, Binary):
        return Binary(
            node.op,
            substitute(node.left, replacements),
            substitute(node.right, replacements),
            node.pos,
        )
    assert isinstance(node, Call)
    return Call(
        node.func,
        tuple(substitute(a, replacements) for a in node.args),
        tuple((k, substitute(v, replacements)) for k, v in node.keywords),
        node.pos,
    )


def _wrap_atom(node: Node) -> Node:
    if isinstance(node, Name | Number | Call | Paren):
        return node
    return Paren(node, -1)


def text_of(node: Node) -> str:
    """R's deparse of a tree (derivatives included)."""
    return deparse(node)


# --------------------------------------------------------------------------- compiled


def _kind(value: np.ndarray | float) -> float | int:
    """A name's kind for :meth:`Program._plan`: a scalar's value, else its dimensions."""
    ndim = value.ndim if isinstance(value, np.ndarray) else np.ndim(value)
    return float(value) if ndim == 0 else ndim


@dataclass(eq=False)
class _Plan:
    """:meth:`Program._plan`: a program's pass over its code for one kind of names.

    ``template`` holds the numbers and constants, ``loads`` the registers ``env`` fills
    (``(register, name)``), ``folds`` the operations on those alone (``(out, fn, a, b)``, b
    -1 for a unary one), ``inputs`` the registers of the parameters (``(register,
    position)``), ``ops``/``codes`` the operations that remain and their names;
    ``schedule``: :meth:`Program.rows`'s stages, made on first use."""

    template: list
    known: list
    loads: list
    folds: list
    inputs: list
    ops: list
    codes: list
    input_registers: np.ndarray
    input_columns: np.ndarray
    outputs: np.ndarray
    schedule: tuple | None = None


class Program:
    """Several arithmetic trees compiled into one list of operations, equal subtrees
    computed once (a model and its gradient share most of their work: the logistic's
    ``exp((xmid - x)/scal)`` appears in all four trees).

    Parameters
    ----------
    trees : list of Node
        Checked arithmetic trees (:func:`check_arithmetic`).
    """

    def __init__(self, trees: list[Node]):
        self.code: list[tuple] = []
        self._index: dict[tuple, int] = {}
        self.outputs = [self._emit(t) for t in trees]
        del self._index
        self._plans: dict = {}  # _plan()'s passes over the code, by kind of names

    def _add(self, key: tuple) -> int:
        found = self._index.get(key)
        if found is not None:
            return found
        self._index[key] = len(self.code)
        self.code.append(key)
        return len(self.code) - 1

    def _emit(self, node: Node) -> int:
        while isinstance(node, Paren):
            node = node.inner
        if isinstance(node, Number):
            return self._add(("num", node.value))
        if isinstance(node, Name):
            return self._add(("name", node.id, node.quoted))
        if isinstance(node, Unary):
            inner = self._emit(node.operand)
            return inner if node.op == "+" else self._add(("neg", inner))
        if isinstance(node, Binary):
            if node.op not in _OPERATORS:
                raise FormulaError(f"operator {node.op!r} in a model expression")
            return self._add((node.op, self._emit(node.left), self._emit(node.right)))
        if isinstance(node, Call) and node.func in UNARY_FUNCTIONS and len(node.args) == 1:
            return self._add(("call", node.func, self._emit(node.args[0])))
        raise FormulaError("not an arithmetic expression")

    def bind(
        self, env: Mapping[str, np.ndarray | float], variables: Sequence[str]
    ) -> Callable[[Sequence], list]:
        """The trees as a function of ``variables`` (values given by position) with every
        other name fixed from ``env`` (``pi`` when not there).

        What does not depend on ``variables`` is computed here, once; each call then runs
        the remaining operations as a flat list of numpy calls (no dispatch on the
        operation's kind, no name look-ups), the same operations in the same order as
        :meth:`run`, so the values are identical.
        """
        plan = self._plan(env, variables)
        return self._runner(self._folded(plan, env), plan.inputs, plan.ops)

    def rows(
        self, env: Mapping[str, np.ndarray | float], variables: Sequence[str], n: int,
        gradient: bool = True,
    ) -> RowModel:
        """The trees as a function of parameter rows ``phi`` (n, len(variables)): the first
        tree's values (n,) and, with ``gradient``, the others' as the columns of an
        ``(n, k)`` array (``(f, None)`` without).  Every other name is fixed from ``env``
        (data columns of ``n`` rows, or scalars).

        The operations that remain after :meth:`bind`'s folding become a register program
        (:class:`~mixedmodels.linalg.row_program.RowProgram`: opcodes and register indices,
        data only) whose IEEE operations run compiled when numba loads, between numpy's
        calls of the elementary functions; the numpy code of :meth:`bind` otherwise (the
        same operations in the same order: the same values to the bit)."""
        plan = self._plan(env, variables)
        init = self._folded(plan, env)
        known, inputs, ops = plan.known, plan.inputs, plan.ops
        if plan.schedule is None:
            kernel_ops, stages = schedule(len(self.code), ops, plan.codes, init, known)
            # the constants the compiled runs read (a ufunc stage takes its constants as
            # they are), filled by broadcasting assignment
            read = {int(r) for run in kernel_ops for r in run[:, 2:].ravel() if r >= 0}
            read.update(self.outputs)
            # the ufunc stages as they are when none reads a constant (SSlogis' exp): the
            # same for every program of this kind
            fixed = not any(known[r] for stage in stages for _, _, regs in stage for r in regs)
            plan.schedule = (kernel_ops, stages, sorted(r for r in read if known[r]),
                             bind_stages(stages, init, known) if fixed else None)
        kernel_ops, stages, read, ufunc_ops = plan.schedule
        if ufunc_ops is None:
            ufunc_ops = bind_stages(stages, init, known)
        registers = np.zeros((len(self.code), n))
        for i in read:
            registers[i] = init[i]
        program = RowProgram(
            kernel_ops=kernel_ops,
            ufunc_ops=ufunc_ops,
            init=registers,
            input_registers=plan.input_registers,
            input_columns=plan.input_columns,
            outputs=plan.outputs,
        )
        run = self._runner(init, inputs, ops)
        n_out = len(self.outputs)

        def numpy_call(phi: np.ndarray):
            # (as the design's functions before the register programs: the values alone
            # always a copy, with the gradient a copy when not already an (n,) array)
            rows = phi.shape[0]
            with np.errstate(all="ignore"):
                out = run(phi.T)
            f = out[0]
            if not gradient:
                return np.broadcast_to(np.asarray(f, dtype=float), (rows,)).copy(), None
            if not (isinstance(f, np.ndarray) and f.shape == (rows,)):
                f = np.broadcast_to(np.asarray(f, dtype=float), (rows,)).copy()
            g = np.empty((rows, n_out - 1))
            for j in range(n_out - 1):
                g[:, j] = out[j + 1]
            return f, g

        return RowModel(program, numpy_call, gradient)

    def _runner(self, init, inputs, ops) -> Callable[[Sequence], list]:
        outputs = self.outputs

        def run(values: Sequence) -> list:
            regs = init.copy()
            for i, k in inputs:
                regs[i] = values[k]
            for i, fn, a, b in ops:
                regs[i] = fn(regs[a]) if b < 0 else fn(regs[a], regs[b])
            return [regs[o] for o in outputs]

        return run

    def _plan(self, env: Mapping[str, np.ndarray | float], variables: Sequence[str]) -> _Plan:
        """The pass over the code for ``variables`` and the kinds of ``env``'s names (their
        scalar values too: numpy's fast powers), made once per kind and kept."""
        # (the names' kinds only: a scalar's value, an array's number of dimensions)
        key = (tuple(variables), tuple(sorted(
            (k, _kind(v)) for k, v in env.items())))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._make_plan(env, variables)
        return plan

    def _make_plan(self, env, variables) -> _Plan:
        """:meth:`_plan`'s pass: which registers the parameters fill, which ``env`` fills,
        which are folded from those before any call (in the code's order), which remain."""
        slots = {name: k for k, name in enumerate(variables)}
        template: list = [None] * len(self.code)
        known = [False] * len(self.code)
        loads: list[tuple[int, str]] = []
        folds: list[tuple] = []
        inputs: list[tuple[int, int]] = []
        ops: list[tuple] = []
        codes: list[str] = []
        for i, ins in enumerate(self.code):
            op = ins[0]
            if op == "num":
                template[i], known[i] = ins[1], True
                continue
            if op == "name":
                if ins[1] in slots:
                    inputs.append((i, slots[ins[1]]))
                elif ins[1] in env:
                    loads.append((i, ins[1]))
                    known[i] = True
                elif not ins[2] and ins[1] in _CONSTANTS:
                    template[i], known[i] = _CONSTANTS[ins[1]], True
                else:
                    raise FormulaError(f"unknown name {ins[1]!r} in the model expression")
                continue
            if op == "neg":
                fn, a, b, name = np.negative, ins[1], -1, "neg"
            elif op == "call":
                fn, a, b, name = UNARY_FUNCTIONS[ins[1]], ins[2], -1, ins[1]
            else:
                fn, a, b, name = _BINARY[op], ins[1], ins[2], op
            if known[a] and (b < 0 or known[b]):
                folds.append((i, fn, a, b))
                known[i] = True
                continue
            ops.append((i, fn, a, b))
            codes.append(name)
        return _Plan(template, known, loads, folds, inputs, ops, codes,
                     input_registers=np.array([i for i, _ in inputs], dtype=np.int64),
                     input_columns=np.array([k for _, k in inputs], dtype=np.int64),
                     outputs=np.array(self.outputs, dtype=np.int64))

    @staticmethod
    def _folded(plan: _Plan, env: Mapping[str, np.ndarray | float]) -> list:
        """The registers' values before any call: numbers, ``env``'s values and what is
        computed from them alone (the plan's folds, in the code's order)."""
        init = plan.template.copy()
        for i, name in plan.loads:
            init[i] = env[name]
        if plan.folds:
            with np.errstate(all="ignore"):
                for i, fn, a, b in plan.folds:
                    init[i] = fn(init[a]) if b < 0 else fn(init[a], init[b])
        return init

    def run(self, env: Mapping[str, np.ndarray | float]) -> list:
        """The trees' values with names looked up in ``env`` (``pi`` when not there)."""
        regs: list = [None] * len(self.code)
        for i, ins in enumerate(self.code):
            op = ins[0]
            if op == "num":
                regs[i] = ins[1]
            elif op == "name":
                if ins[1] in env:
                    regs[i] = env[ins[1]]
                elif not ins[2] and ins[1] in _CONSTANTS:
                    regs[i] = _CONSTANTS[ins[1]]
                else:
                    raise FormulaError(f"unknown name {ins[1]!r} in the model expression")
            elif op == "neg":
                regs[i] = -regs[ins[1]]
            elif op == "call":
                regs[i] = UNARY_FUNCTIONS[ins[1]](regs[ins[2]])
            else:
                a, b = regs[ins[1]], regs[ins[2]]
                if op == "+":
                    regs[i] = a + b
                elif op == "-":
                    regs[i] = a - b
                elif op == "*":
                    regs[i] = a * b
                elif op == "/":
                    regs[i] = a / b
                else:
                    regs[i] = np.power(a, b)
        return [regs[o] for o in self.outputs]
