"""mkdocs hook: a public name without a docstring fails the build.

The API reference is generated from the docstrings, and mkdocstrings renders a name without
one as an empty entry.  Before the build this hook runs the walk of ``tests/test_docstrings.py``
(``mixedmodels.__all__``, the public subpackages, and the public methods and properties of
the fit and result classes) and logs each missing docstring as a warning, which the site's
``strict: true`` turns into a failed build.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

log = logging.getLogger("mkdocs.plugins.mixedmodels_docstrings")
WALK = Path(__file__).resolve().parents[1] / "tests" / "test_docstrings.py"


def on_pre_build(config) -> None:
    spec = importlib.util.spec_from_file_location("mixedmodels_docstring_walk", WALK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    missing = module.missing_docstrings()
    for name in missing:
        log.warning("public name without a docstring: %s", name)
    log.info("docstrings checked: %d public names, %d missing", len(module.ENTRIES),
             len(missing))
