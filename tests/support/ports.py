"""Free loopback ports for the test fixtures, never the same one twice in a run.

A fixture that asks for a port binds it later, often in a child process that takes a
second or two to start (a daemon, an MCP server).  In that window nothing else may take
the port, so ports come from below the kernel's ephemeral range (32768-60999 by
default), which neither outgoing connections nor ``bind(0)`` listeners use, and each
``trial -jN`` worker draws from its own share of that range (the worker's directory,
``_trial_temp/<N>``, names it), so two workers never hand out the same port.  The range
lies inside the daemon's default ``OAUTHPROXY_PORT_RANGES`` (14000-65535), so fixture
ports may be given to Docker services, above the fixed ports some container tests use
(14000-14010), and skips the daemon's restricted ports.
"""

from __future__ import annotations

import os
import random
import socket

#: the fixtures' ports: up to the start of the ephemeral range
_FIRST, _END = 15000, 32768
#: ports the daemon refuses for services (its default ``OAUTHPROXY_RESTRICTED_PORTS``)
_RESTRICTED = frozenset({27017})
#: how many shares the range is cut into (``trial -j`` workers beyond that share one)
_SHARES = 2

#: every port handed out in this process
_handed_out: set[int] = set()


def _share() -> range:
    """This process's share of the range: by its ``trial -j`` worker number, else the first."""
    worker = os.path.basename(os.getcwd())
    index = int(worker) % _SHARES if worker.isdigit() else 0
    size = (_END - _FIRST) // _SHARES
    return range(_FIRST + index * size, _FIRST + (index + 1) * size)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and was not handed out before."""
    share = _share()
    for _ in range(1000):
        port = random.choice(share)
        if port in _handed_out or port in _RESTRICTED:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port left in {share}")
