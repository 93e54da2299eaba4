import faulthandler
import os
import pickle
import select
import signal
import sys
import time
import traceback
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent))  # "tests" importable as a package


class IsolatedError(AssertionError):
    """The function run in a forked child raised, crashed or hung."""


def run_in_fork(func, timeout: float = 120.0):
    """``func()`` in a forked child process; returns its (picklable) result.

    Input that reaches native code with non-finite numbers has crashed the interpreter
    ("double free or corruption", SIGABRT); in a child such a crash fails one check instead
    of ending the test run.  An exception in the child is raised here as
    :class:`IsolatedError` carrying the child's traceback; a signal, or no answer within
    ``timeout`` seconds, also raises it.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            os.close(read_end)
            faulthandler.disable()  # a crash is reported by the parent, not as a stack dump
            try:
                payload = pickle.dumps(("ok", func()))
            except BaseException:
                payload = pickle.dumps(("raised", traceback.format_exc()))
            view = memoryview(payload)
            while view:
                view = view[os.write(write_end, view) :]
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_end], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise IsolatedError(f"no answer within {timeout:.0f} s: killed")
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise IsolatedError(f"the process crashed: killed by {name}")
    if not chunks:
        raise IsolatedError(f"the child process ended with status {status} and no answer")
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "raised":
        raise IsolatedError(f"in the isolated process:\n{value}")
    return value


@pytest.fixture(scope="session")
def isolated():
    """:func:`run_in_fork`, for tests of input that could crash the interpreter."""
    if not hasattr(os, "fork"):
        pytest.skip("isolating a check needs os.fork")
    return run_in_fork
