"""Optional compiled kernels (numba): a module imported at first use, or None.

numba is an optional extra.  Importing it costs ~0.3 s, so a kernel module is imported
only when a computation asks for it; and an installed numba can fail at import (a numpy
newer than the numba release supports: ``ImportError: Numba needs NumPy 2.2 or less``; no
writable directory for its cache: a ``RuntimeError``).  Such a failure is reported once as
a :class:`~mixedmodels.errors.MixedModelsWarning` and the caller's numpy code (which gives
the same numbers) is used from then on.

numba's disk cache of a function is keyed by its own file's time stamp only: a cached
kernel that calls a kernel of another module (``mode_kernels`` calls
``nonlinear_kernels``'s, which call ``row_program_kernels.execute``) keeps the callee's
old code after that module is edited.  Before the first import of a kernel module,
:func:`clear_stale_cache` therefore compares a digest of the sources of the package's
modules it imports (transitively) with the digest stored beside its cache, and removes the
module's cache files when they differ.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import warnings
from pathlib import Path
from types import ModuleType

from mixedmodels.errors import MixedModelsWarning


class OptionalKernels:
    """One module of compiled kernels, loaded at the first :meth:`load`.

    Parameters
    ----------
    module : str
        The module's full name (it imports numba).
    what : str
        What the kernels are, for the warning ("the compiled scatter fill kernel").
    fallback : str
        What is used instead, for the warning ("using numpy").
    """

    def __init__(self, module: str, what: str, fallback: str) -> None:
        self.module = module
        self.what = what
        self.fallback = fallback
        self.failure: str | None = None  # why the import failed (set once)
        self._module: ModuleType | None = None  # kept once loaded

    def available(self) -> bool:
        """True when numba is installed and the module has not failed to load (cheap:
        nothing is imported)."""
        if self._module is not None:
            return True
        return self.failure is None and importlib.util.find_spec("numba") is not None

    def load(self) -> ModuleType | None:
        """The module, or None when numba is missing or the import fails (warned once).
        Once loaded it is kept: a small fit asks for it at every step, and looking for
        numba costs more than a kernel call there."""
        if self._module is not None:
            return self._module
        if not self.available():
            return None
        try:
            clear_stale_cache(self.module)
            self._module = importlib.import_module(self.module)
        except Exception as exc:  # noqa: BLE001 - any failure of the optional import falls back
            self.failure = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                f"{self.what}: unavailable (numba failed to load: {self.failure}); "
                f"{self.fallback}",
                MixedModelsWarning,
                stacklevel=3,
            )
            return None
        return self._module


def _source(name: str) -> Path | None:
    """The source file of module ``name``, found without importing it (None when there is
    none: a namespace package, a compiled module, a missing one)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None) if spec is not None else None
    if not origin or not origin.endswith(".py"):
        return None
    return Path(origin)


def _package_imports(source: str, package: str) -> set[str]:
    """The modules of ``package`` that a module's source imports by absolute name, read
    as text: ``import package.x``, ``from package.x import ...``, and the submodules named
    in ``from package.sub import name`` when ``package.sub`` is a package."""
    found: set[str] = set()
    prefix = rf"^[ \t]*(?:from|import)[ \t]+({re.escape(package)}(?:\.\w+)*)"
    for match in re.finditer(prefix + r"[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)|" + prefix,
                             source, flags=re.MULTILINE):
        module = match.group(1) or match.group(3)
        if module == package:
            continue
        found.add(module)
        names = match.group(2)
        path = _source(module) if names else None
        if path is not None and path.name == "__init__.py":
            words = re.sub(r"#[^\n]*", "", names)
            words = re.sub(r"\bas\s+\w+", "", words)
            found.update(f"{module}.{word}" for word in re.findall(r"\w+", words))
    return found


def _closure(name: str) -> dict[str, bytes]:
    """Module ``name`` and every module of its top-level package that it imports,
    transitively: their sources (empty for a module without one)."""
    package = name.split(".")[0]
    seen: dict[str, bytes] = {}
    pending = [name]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        path = _source(current)
        text = path.read_bytes() if path is not None else b""
        seen[current] = text
        pending.extend(_package_imports(text.decode("utf-8", "replace"), package))
    return seen


def dependency_digest(name: str) -> str:
    """SHA-1 of the sources of module ``name`` and of every module of its top-level
    package that it imports, transitively (in name order): what a compiled kernel of
    ``name`` may have inlined."""
    digest = hashlib.sha1()
    for module, text in sorted(_closure(name).items()):
        digest.update(module.encode() + b"\0" + text + b"\0")
    return digest.hexdigest()


def _cache_directories(path: Path) -> list[Path]:
    """Where numba may keep the cache of functions defined in ``path``: the
    ``__pycache__`` beside it, ``NUMBA_CACHE_DIR``'s and the user-wide directory (the
    latter two under numba's per-directory sub-path)."""
    directories = [path.parent / "__pycache__"]
    try:
        from numba.core.caching import InTreeCacheLocator
        from numba.misc.appdirs import AppDirs
    except ImportError:  # pragma: no cover - another numba layout: the in-tree one only
        return directories
    subpath = InTreeCacheLocator.get_suitable_cache_subpath(str(path))
    roots = [os.environ.get("NUMBA_CACHE_DIR", ""),
             AppDirs(appname="numba", appauthor=False).user_cache_dir]
    directories.extend(Path(root) / subpath for root in roots if root)
    return directories


def clear_stale_cache(name: str) -> int:
    """Remove the numba cache files (``<stem>.*.nbi``, ``.nbc``) of module ``name`` and of
    every module of its package it imports that uses numba (importing ``name`` loads their
    caches too), wherever the digest stored beside them (``<stem>.depends``) differs from
    :func:`dependency_digest`, and store the new one.  Returns the number of files
    removed.  A directory that cannot be read or written is left as it is (numba then
    caches elsewhere or not at all)."""
    removed = 0
    for module, text in _closure(name).items():
        path = _source(module)
        if path is None or b"numba" not in text:
            continue
        digest = dependency_digest(module)
        in_tree = path.parent / "__pycache__"
        try:  # (Python makes it anyway; the stamp then records what the cache is built on)
            in_tree.mkdir(exist_ok=True)
        except OSError:
            pass
        for directory in _cache_directories(path):
            removed += _clear_directory(directory, path.stem, digest)
    return removed


def _clear_directory(directory: Path, stem: str, digest: str) -> int:
    stamp = directory / f"{stem}.depends"
    removed = 0
    try:
        if not directory.is_dir() or (stamp.is_file() and stamp.read_text() == digest):
            return 0
        for cached in directory.iterdir():
            if cached.name.startswith(stem + ".") and cached.suffix in (".nbi", ".nbc"):
                cached.unlink()
                removed += 1
        stamp.write_text(digest)
    except OSError:
        pass
    return removed
