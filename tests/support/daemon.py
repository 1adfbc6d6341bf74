"""A real ``twistd -n oauthproxy`` subprocess for integration tests.

:func:`start_daemon` starts the daemon on a free loopback port with a fresh data
directory (embedded redis-server) or a given ``REDIS_URL``, waits until
``/health`` answers, and registers a cleanup that stops it with SIGTERM and
checks that no redis-server it started is left behind.  Everything it printed
is kept in :attr:`DaemonProcess.output` (the admin token is parsed from it).

Typical use::

    daemon = await start_daemon(self)
    code, body = await daemon.health()
    token = daemon.admin_token
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import treq
from attrs import define, field
from twisted.internet import defer, error, reactor, task
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from tests.support.ports import free_port
from tests.support.processes import tied_to_test

#: the repository root: put on PYTHONPATH so the checkout's plugin and package are used
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
TOKEN = re.compile(r"acm_[A-Za-z0-9_-]{20,}")
_POLL = 0.1


#: what a test daemon reaches instead of the outside world (port 9 = discard, closed here;
#: a Docker socket that does not exist unless a test gives its own dockerd)
OFFLINE_DEFAULTS = {
    "DOCKER_HOST": "unix:///nonexistent/oauthproxy-test/docker.sock",
    "ACME_DIRECTORY_URL": "https://127.0.0.1:9/directory",
    "ACME_STAGING_URL": "https://127.0.0.1:9/directory",
    "OAUTHPROXY_GITHUB_BASE_URL": "http://127.0.0.1:9",
    "OAUTHPROXY_GITHUB_API_URL": "http://127.0.0.1:9",
}


#: a daemon whose authorization server is configured (its GitHub is never reached)
OAUTH_ON = {
    "OAUTHPROXY_OAUTH_ISSUER": "https://auth.example.com",
    "GITHUB_CLIENT_ID": "gh-id",
    "GITHUB_CLIENT_SECRET": "gh-secret",
}


def shared_key() -> dict[str, str]:
    """An ``OAUTHPROXY_SECRET_KEY`` for daemons that share a Redis (they must share it)."""
    return {"OAUTHPROXY_SECRET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode()}


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The daemon's environment: ours minus oauthproxy/seed settings, plus ``extra``."""
    from oauthproxy.config import SETTINGS, process_environment

    ours = {name for setting in SETTINGS for name in setting.env}
    env = {k: v for k, v in process_environment().items() if k not in ours}
    env["PYTHONPATH"] = ROOT
    # Only loopback traffic in tests: the production defaults (Let's Encrypt, GitHub)
    # point at a closed loopback port unless a test gives its Pebble or fake GitHub.
    env.update(OFFLINE_DEFAULTS)
    env.update(extra or {})
    return env


def child_processes(parent: int) -> list[tuple[int, bytes]]:
    """``(pid, command line)`` of the running children of process ``parent``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                # "pid (comm) state ppid ...": comm may contain spaces, so split after ")"
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            if ppid != parent:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                found.append((int(entry), f.read().replace(b"\0", b" ")))
        except (OSError, IndexError, ValueError):
            continue
    return found


def redis_pids(marker: str) -> list[int]:
    """PIDs of running redis-server processes whose command line contains ``marker``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and b"redis-server" in argv[0] and marker.encode() in b" ".join(argv):
            pids.append(int(entry))
    return pids


class _Capture(ProcessProtocol):
    """Collects the child's output lines and fires ``ended`` with its exit code."""

    def __init__(self) -> None:
        self.output: list[str] = []
        self._partial = b""
        #: the signal that ended the process, if any
        self.signal: int | None = None
        self.ended: defer.Deferred[int | None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        """Keep stdout."""
        self._feed(data)

    def errReceived(self, data: bytes) -> None:
        """Keep stderr (in the same list: twistd writes errors to both)."""
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        self._partial += data
        *lines, self._partial = self._partial.split(b"\n")
        self.output.extend(line.decode("utf-8", "replace") for line in lines)

    def processEnded(self, reason: Failure) -> None:
        """Record the exit code (None when killed by a signal)."""
        if self._partial:
            self.output.append(self._partial.decode("utf-8", "replace"))
        value = reason.value
        self.signal = getattr(value, "signal", None)
        self.ended.callback(getattr(value, "exitCode", None))


@define
class DaemonProcess:
    """A running daemon started by :func:`start_daemon`."""

    api_url: str
    api_port: int
    data_dir: str
    args: list[str]
    capture: _Capture
    transport: Any
    pool: HTTPConnectionPool = field(factory=lambda: HTTPConnectionPool(reactor, persistent=False))
    exit_code: int | None = None
    stopped: bool = False

    @property
    def output(self) -> list[str]:
        """Every line the daemon printed so far."""
        return self.capture.output

    @property
    def admin_token(self) -> str | None:
        """The admin token printed on first start, if any."""
        for line in self.output:
            match = TOKEN.search(line)
            if match:
                return match.group(0)
        return None

    @property
    def pid(self) -> int:
        """The daemon's process id (twistd's)."""
        pid: int = self.transport.pid
        return pid

    @property
    def worker_pids(self) -> list[int]:
        """PIDs of the daemon's worker processes (``--workers N``)."""
        return [
            pid for pid, argv in child_processes(self.pid) if b"oauthproxy.workers.child" in argv
        ]

    @property
    def embedded_redis_pids(self) -> list[int]:
        """PIDs of the embedded redis-server(s) serving this daemon's data directory."""
        return redis_pids(os.path.join(self.data_dir, "redis.sock"))

    async def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        """``GET`` on the admin API: ``(status, decoded JSON or text)``."""
        headers = {"Authorization": [f"Bearer {token}"]} if token else {}
        response = await treq.get(self.api_url + path, headers=headers, pool=self.pool, timeout=10)
        body = await treq.content(response)
        try:
            return response.code, json.loads(body)
        except ValueError:
            return response.code, body.decode("utf-8", "replace")

    async def post(self, path: str, body: Any, token: str | None = None) -> tuple[int, Any]:
        """``POST`` JSON on the admin API: ``(status, decoded JSON)``."""
        headers = {"Content-Type": ["application/json"]}
        if token:
            headers["Authorization"] = [f"Bearer {token}"]
        response = await treq.post(
            self.api_url + path,
            data=json.dumps(body).encode(),
            headers=headers,
            pool=self.pool,
            timeout=10,
        )
        return response.code, json.loads(await treq.content(response))

    async def delete(self, path: str, token: str | None = None) -> int:
        """``DELETE`` on the admin API: the status."""
        headers = {"Authorization": [f"Bearer {token}"]} if token else {}
        response = await treq.delete(
            self.api_url + path, headers=headers, pool=self.pool, timeout=10
        )
        await treq.content(response)
        code: int = response.code
        return code

    async def health(self) -> tuple[int, Any]:
        """``GET /health``."""
        return await self.get("/health")

    async def wait_for(self, predicate: Any, timeout: float = 30.0) -> Any:
        """Poll ``/health`` until ``predicate(body)`` holds; the body (fails on timeout)."""
        deadline = reactor.seconds() + timeout
        last: Any = None
        while reactor.seconds() < deadline:
            if self.capture.ended.called:
                raise AssertionError("daemon exited:\n" + "\n".join(self.output[-30:]))
            try:
                code, last = await self.health()
                if code == 200 and predicate(last):
                    return last
            except (error.ConnectError, error.ConnectionLost, OSError, defer.TimeoutError):
                pass
            except Exception as e:  # treq wraps transport errors in ResponseFailed & co.
                last = repr(e)
            await task.deferLater(reactor, _POLL, lambda: None)
        raise AssertionError(f"health never matched within {timeout}s; last: {last!r}")

    @property
    def exited_cleanly(self) -> bool:
        """Exit code 0, or ended by the SIGTERM it was sent (twistd re-raises the signal)."""
        return self.exit_code == 0 or self.capture.signal == signal.SIGTERM

    async def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait for exit (SIGKILL after ``timeout``); the exit code (None if signalled)."""
        await self.pool.closeCachedConnections()
        if not self.capture.ended.called:
            with contextlib.suppress(error.ProcessExitedAlready):
                self.transport.signalProcess("TERM")
            timer = reactor.callLater(timeout, self._kill)
            self.exit_code = await self.capture.ended
            if timer.active():
                timer.cancel()
        else:
            self.exit_code = self.capture.ended.result
        self.stopped = True
        return self.exit_code

    def _kill(self) -> None:
        """Last resort when SIGTERM did not work."""
        with contextlib.suppress(error.ProcessExitedAlready):
            self.transport.signalProcess("KILL")


def spawn_twistd(
    args: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    sockets: Sequence[socket.socket] = (),
) -> tuple[_Capture, Any]:
    """Start ``twistd -n --pidfile= oauthproxy ARGS``; the capture and the process transport.

    ``sockets`` are handed over as systemd does (socket activation): as descriptors
    3, 4 … with ``LISTEN_FDS``, ``LISTEN_FDNAMES`` (``socket0``, ``socket1`` …) and
    ``LISTEN_PID`` set to twistd's own PID (by a shell that then becomes twistd).
    """
    capture = _Capture()
    argv = tied_to_test([TWISTD, "-n", "--pidfile=", "oauthproxy", *args])
    if not sockets:
        transport = reactor.spawnProcess(capture, argv[0], argv, env=dict(env), path=cwd)
        return capture, transport
    fds: dict[int, Any] = {0: "w", 1: "r", 2: "r"}
    fds.update({3 + n: s.fileno() for n, s in enumerate(sockets)})
    names = ":".join(f"socket{n}" for n in range(len(sockets)))
    env = {**env, "LISTEN_FDS": str(len(sockets)), "LISTEN_FDNAMES": names}
    shell = ["/bin/sh", "-c", 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', "sh", *argv]
    transport = reactor.spawnProcess(
        capture, shell[0], shell, env=dict(env), path=cwd, childFDs=fds
    )
    return capture, transport


async def run_twistd(
    test: TestCase,
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int | None, list[str]]:
    """Run twistd expecting it to exit by itself (e.g. bad settings); ``(code, lines)``."""
    cwd = tempfile.mkdtemp(prefix="oauthproxy-test-")  # short: see start_daemon
    test.addCleanup(shutil.rmtree, cwd, True)
    capture, transport = spawn_twistd(args, child_environment(env), cwd)
    timer = reactor.callLater(timeout, transport.signalProcess, "KILL")
    code = await capture.ended
    if timer.active():
        timer.cancel()
    return code, capture.output


async def start_daemon(
    test: TestCase,
    redis_url: str | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    sockets: Sequence[socket.socket] = (),
) -> DaemonProcess:
    """Start a daemon for ``test`` (stopped in its cleanup) and wait for ``/health``.

    The admin API listens on a free 127.0.0.1 port; HTTP/HTTPS are off unless
    ``args`` turns them on.  ``redis_url`` None means the embedded redis-server.
    ``sockets`` are passed as systemd passes activated sockets (``systemd:`` listeners).
    """
    # A short path: the embedded Redis' unix socket path must stay under 108 bytes.
    workdir = tempfile.mkdtemp(prefix="oauthproxy-test-")
    test.addCleanup(shutil.rmtree, workdir, True)
    data_dir = os.path.join(workdir, "data")
    port = free_port()
    argv = ["--api", f"tcp:{port}:interface=127.0.0.1", "--data-dir", data_dir]
    if "--http" not in args:
        argv += ["--http", "off"]
    if "--https" not in args:
        argv += ["--https", "off"]
    if redis_url is not None:
        argv += ["--redis", redis_url]
    argv += list(args)
    capture, transport = spawn_twistd(argv, child_environment(env), workdir, sockets)
    daemon = DaemonProcess(
        api_url=f"http://127.0.0.1:{port}",
        api_port=port,
        data_dir=data_dir,
        args=argv,
        capture=capture,
        transport=transport,
    )
    test.addCleanup(_stop_and_check, test, daemon)
    await daemon.wait_for(lambda body: True, timeout=timeout)
    return daemon


async def _stop_and_check(test: TestCase, daemon: DaemonProcess) -> None:
    """Cleanup: stop the daemon; fail the test if an embedded redis-server survived it."""
    if not daemon.stopped:
        await daemon.stop()
    leftovers = daemon.embedded_redis_pids
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    if leftovers:
        test.fail(f"redis-server left running after the daemon stopped: {leftovers}")
