"""Optional compiled kernels (numba): a module imported at first use, or None.

numba is an optional extra.  Importing it costs ~0.3 s, so a kernel module is imported
only when a computation asks for it; and an installed numba can fail at import (a numpy
newer than the numba release supports: ``ImportError: Numba needs NumPy 2.2 or less``; no
writable directory for its cache: a ``RuntimeError``).  Such a failure is reported once as
a :class:`~mixedmodels.errors.MixedModelsWarning` and the caller's numpy code (which gives
the same numbers) is used from then on.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings
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
