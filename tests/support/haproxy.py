"""A real HAProxy in front of a PROXY-protocol listener, as a child process owned by the test.

:func:`start_haproxy` writes the COMPONENTS.md configuration (TCP mode, one
frontend on a free loopback port, one backend server with ``send-proxy`` or
``send-proxy-v2``), runs ``haproxy -db -f cfg`` in the foreground, waits until
the frontend accepts connections and registers a cleanup that stops it by PID.
:func:`start_balancer` does the same for several servers, as a load balancer in
front of a cluster is set up for rolling restarts: health checks every 100 ms, and a
connection a server refuses (it stopped listening) is retried on another server.
A missing ``haproxy`` binary raises, so the test fails rather than skips.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Literal

from attrs import frozen
from twisted.trial.unittest import SynchronousTestCase

from tests.support.ports import free_port
from tests.support.processes import die_with_parent, end_process

#: seconds HAProxy may take to listen, or to exit after SIGTERM
START_TIMEOUT = 10.0

_CONFIG = """\
global
  maxconn 100
defaults
  mode tcp
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend f1
  bind 127.0.0.1:{front}
  default_backend b1
backend b1
  server s1 127.0.0.1:{backend} {send}
"""


_BALANCER = """\
global
  maxconn 1000
defaults
  mode tcp
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  retries 3
  option redispatch 1
frontend f1
  bind 127.0.0.1:{front}
  default_backend b1
backend b1
  balance roundrobin
{servers}
"""


@frozen
class HAProxy:
    """A running HAProxy: connect to ``front_port`` to reach the backend through it."""

    front_port: int
    pid: int
    config_path: Path


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"haproxy exited with {process.returncode} while starting")
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # connect_ex only: a probe that sent nothing is closed by HAProxy by itself
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        finally:
            probe.close()
        time.sleep(0.05)
    raise RuntimeError(f"haproxy did not listen on port {port} within {START_TIMEOUT} s")


def start_haproxy(
    test: SynchronousTestCase,
    backend_port: int,
    send: Literal["send-proxy", "send-proxy-v2"] = "send-proxy",
) -> HAProxy:
    """Start HAProxy relaying a frontend to ``127.0.0.1:backend_port`` with a PROXY header."""
    front = free_port()
    return _run(test, front, _CONFIG.format(front=front, backend=backend_port, send=send))


def start_balancer(
    test: SynchronousTestCase,
    backend_ports: list[int],
    send: Literal["send-proxy", "send-proxy-v2"] = "send-proxy-v2",
) -> HAProxy:
    """Start HAProxy balancing over ``backend_ports`` (health-checked, redispatching)."""
    front = free_port()
    servers = "\n".join(
        f"  server s{n} 127.0.0.1:{port} {send} check check-send-proxy inter 100 fall 1 rise 1"
        for n, port in enumerate(backend_ports)
    )
    return _run(test, front, _BALANCER.format(front=front, servers=servers))


def _run(test: SynchronousTestCase, front: int, config: str) -> HAProxy:
    """Write ``config``, run HAProxy on it and wait until ``front`` accepts connections."""
    directory = Path(tempfile.mkdtemp(prefix="haproxy-"))
    test.addCleanup(shutil.rmtree, directory, True)
    config_path = directory / "haproxy.cfg"
    config_path.write_text(config)
    log = (directory / "haproxy.log").open("wb")
    test.addCleanup(log.close)
    process = subprocess.Popen(
        ["haproxy", "-db", "-f", str(config_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )
    test.addCleanup(end_process, process, START_TIMEOUT)
    _wait_for_port(front, process)
    return HAProxy(front, process.pid, config_path)
