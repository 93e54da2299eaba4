"""A module of the package as an earlier commit had it, compiled beside this tree's, for
benchmarks that time the two alternately in one process (gather_kernels.py,
scatter_against.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType


def earlier_module(rev: str, path: str, name: str) -> ModuleType:
    """``git show REV:PATH`` imported as module ``name``; numba's on-disk cache is turned
    off in it (``cache=True`` -> ``cache=False``) so the two versions' kernels do not share
    cache entries."""
    source = subprocess.run(
        ["git", "show", f"{rev}:{path}"], capture_output=True, text=True, check=True
    ).stdout.replace("cache=True", "cache=False")
    file = Path(tempfile.mkdtemp()) / f"{name}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
