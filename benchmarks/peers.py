"""Which peers a benchmark can run here (shared by the benchmark scripts)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess


def available(tool: str) -> bool:
    """``lme4``: Rscript with lme4 installed; ``mixedmodels``: always; any other name: a
    Python module of that name (mixedlm, statsmodels)."""
    if tool == "lme4":
        if shutil.which("Rscript") is None:
            return False
        probe = subprocess.run(["Rscript", "-e", "library(lme4)"], capture_output=True)
        return probe.returncode == 0
    return tool == "mixedmodels" or importlib.util.find_spec(tool) is not None
