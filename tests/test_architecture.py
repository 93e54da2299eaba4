"""The package's layering, checked on every import statement (module level, inside
functions and under ``TYPE_CHECKING`` alike).

Layers, lowest first; a module may import from its own layer and the layers below it only::

    errors, arguments, progress -> linalg -> formula -> reterms -> design -> core -> optim
        -> results (fits) -> inference -> plots (report) -> api, cli

The numeric layers (``linalg``, ``reterms``, ``core``, ``optim``) import neither pandas
nor the formula or design layers, and no module probes objects with ``hasattr`` or runs
text as code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mixedmodels"

LAYERS: list[set[str]] = [
    {"errors", "arguments", "progress"},
    {"linalg"},
    {"formula"},
    {"reterms"},
    {"design", "datasets"},
    {"core"},
    {"optim"},
    {"results"},
    {"inference"},
    {"plots"},
    {"api", "cli", "__main__", "large", "priors", "simulate", "cor", "var", "__init__"},
]
NUMERIC = {"linalg", "reterms", "core", "optim"}


def _component(module: str) -> str | None:
    """The first component under ``mixedmodels`` (``mixedmodels`` itself is ``__init__``)."""
    parts = module.split(".")
    if parts[0] != "mixedmodels":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _rank(component: str) -> int:
    for i, layer in enumerate(LAYERS):
        if component in layer:
            return i
    raise AssertionError(f"module group {component!r} is in no layer: add it to LAYERS")


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        out.append((".".join(["mixedmodels", *parts]), path))
    return out


def _imports(path: Path, package: str | None = None) -> list[tuple[str, int]]:
    """Every absolute module name imported anywhere in ``path`` (relative imports resolved
    against its package)."""
    tree = ast.parse(path.read_text())
    if package is None:
        package = ".".join(["mixedmodels", *path.relative_to(PACKAGE).parent.parts])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((name, node.lineno))
            # ``from mixedmodels import inference`` imports the submodule
            if name == "mixedmodels":
                found.extend((f"mixedmodels.{alias.name}", node.lineno) for alias in node.names)
    return found


MODULES = _modules()


def test_every_module_is_in_a_layer():
    for module, _ in MODULES:
        _rank(_component(module))


def test_no_import_reaches_up_a_layer():
    violations = []
    for module, path in MODULES:
        source = _component(module)
        for name, line in _imports(path):
            target = _component(name)
            if target is None or target == source:
                continue
            if target in {"__init__"}:  # only ``from mixedmodels import <submodule>``
                continue
            if _rank(target) > _rank(source):
                violations.append(f"{module}:{line} imports {name}")
    assert not violations, "imports against the layering:\n" + "\n".join(violations)


def test_numeric_layers_know_nothing_of_data_frames_or_formulas():
    violations = []
    for module, path in MODULES:
        if _component(module) not in NUMERIC:
            continue
        for name, line in _imports(path):
            root = name.split(".")[0]
            if root in {"pandas", "narwhals", "polars", "pyarrow"} or _component(name) in {
                "formula",
                "design",
            }:
                violations.append(f"{module}:{line} imports {name}")
    assert not violations, "\n".join(violations)


@pytest.mark.parametrize("probe", ["hasattr", "eval", "exec"])
def test_no_probes_and_no_text_run_as_code(probe):
    hits = []
    for module, path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == probe
            ):
                hits.append(f"{module}:{node.lineno}")
    assert not hits, f"{probe}() called at: {hits}"


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    """The check is not vacuous: imports inside functions and relative ones are found."""
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    from mixedmodels.api import lmer\n    from ..api import glmer\n")
    names = [n for n, _ in _imports(fake, package="mixedmodels.core")]
    assert names == ["mixedmodels.api", "mixedmodels.api"]
    assert _rank(_component(names[0])) > _rank("core")
