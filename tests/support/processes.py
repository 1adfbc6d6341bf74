"""Child processes of the test fixtures: tied to the test process, stopped by PID."""

from __future__ import annotations

import ctypes
import signal
import subprocess

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child (``preexec_fn``): the kernel SIGKILLs it if the test process dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


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
