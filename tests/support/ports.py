"""Free loopback ports for the test fixtures, never the same one twice in a process."""

from __future__ import annotations

import socket

#: every port handed out in this process (the kernel may offer a port again once the
#: probing socket is closed, before the fixture that asked for it has bound it)
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago and not handed out before."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free loopback port that was not handed out already")
