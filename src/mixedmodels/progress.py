"""A small text progress bar on stderr (no dependency), for long loops."""

from __future__ import annotations

import os
import sys
import time


def progress_enabled() -> bool:
    """Progress bars are shown when stderr is a terminal, and quiet otherwise (logs, CI);
    the environment variable ``MIXEDMODELS_PROGRESS`` set to 1 or 0 forces them on or off."""
    forced = os.environ.get("MIXEDMODELS_PROGRESS")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class ProgressBar:
    """``with ProgressBar(total, "bootstrap") as bar: bar.update(k)``; silent if disabled
    or when stderr is not a terminal."""

    def __init__(self, total: int, label: str, enabled: bool = True, width: int = 30):
        self.total = max(total, 1)
        self.label = label
        self.enabled = enabled and total > 0 and progress_enabled()
        self.width = width
        self.done = 0
        self.start = time.perf_counter()
        self._last = 0.0

    def update(self, k: int = 1) -> None:
        self.done += k
        now = time.perf_counter()
        if self.enabled and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            frac = min(self.done / self.total, 1.0)
            filled = int(frac * self.width)
            bar = (
                "=" * filled
                + (">" if filled < self.width else "")
                + " " * (self.width - filled - 1)
            )
            sys.stderr.write(
                f"\r{self.label}: {self.done}/{self.total} [{bar}] {now - self.start:.1f}s"
            )
            sys.stderr.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
