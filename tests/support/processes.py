"""Child processes of the test fixtures: tied to the test process, stopped by PID."""

from __future__ import annotations

import ctypes
import signal
import subprocess
from collections.abc import Sequence

_PR_SET_PDEATHSIG = 1
#: util-linux's ``setpriv`` (Debian's util-linux is essential: always installed)
SETPRIV = "/usr/bin/setpriv"


def die_with_parent() -> None:
    """In the child (``preexec_fn``): the kernel SIGKILLs it if the test process dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def tied_to_test(argv: Sequence[str]) -> list[str]:
    """``argv`` behind ``setpriv``: the kernel SIGKILLs it if the test process dies.

    For children started with ``reactor.spawnProcess`` (no ``preexec_fn`` there); the
    program keeps its PID (``setpriv`` execs it), so stopping it by PID is unchanged.
    """
    return [SETPRIV, "--pdeathsig", "KILL", "--", *argv]


def end_process(
    process: subprocess.Popen[bytes],
    timeout: float,
    sig: signal.Signals = signal.SIGTERM,
) -> None:
    """Send ``sig`` to a running ``process`` and reap it (SIGKILL after ``timeout`` s)."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
