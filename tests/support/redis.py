"""A real ``redis-server`` for tests, as a child process owned by the test.

:class:`RedisServer` starts ``redis-server`` in the foreground on a free
loopback port and a unix socket in its own directory, optionally with a
password, an append-only file and a TLS port, and waits until it answers ``PING``.
``stop()`` (SIGTERM) and ``kill()`` (SIGKILL) end it by PID; ``start()`` again
reuses the same port and directory, which is what restart tests need.

Trial has no ``setUpClass``, so suites that only need *a* Redis share one per
test process through :func:`shared_redis_server` (flushed by each test, stopped
at exit and killed by the kernel if the test process dies first).  Tests that
restart or kill Redis start their own with :meth:`RedisServer.for_test`.

A missing ``redis-server`` binary raises: it fails the test, never skips it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any
from urllib.parse import quote

from attrs import define, field
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.storage.address import RedisAddress
from tests.support.ports import free_port
from tests.support.processes import die_with_parent, end_process

#: seconds redis-server may take to answer after starting, or to exit after a signal
START_TIMEOUT = 10.0


def _encode(args: tuple[object, ...]) -> bytes:
    """A RESP command."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _read_reply(f: Any) -> Any:
    """Read one RESP reply from a buffered socket file."""
    line = f.readline()
    if not line:
        raise ConnectionError("redis-server closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(f"redis error: {rest.decode()}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data: bytes = f.read(size + 2)[:-2]
        return data.decode()
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_read_reply(f) for _ in range(count)]
    raise RuntimeError(f"unexpected reply {line!r}")


@define
class RedisServer:
    """One redis-server child process; see the module docstring."""

    directory: str
    password: str | None = None
    appendonly: bool = False
    port: int = field(factory=free_port)
    #: the port of the master this server replicates (a replica), if any
    replica_of: int | None = None
    #: (certificate, key, CA) PEM files: then it also listens with TLS on ``tls_port``
    #: (client certificates asked for with ``tls_client_auth``) and replicates over TLS
    #: (``replica_of`` is then
    #: the master's TLS port); the plain port stays for the fixture's commands
    tls_files: tuple[str, str, str] | None = None
    tls_port: int | None = None
    #: under TLS, require a client certificate signed by the CA (Redis' own default)
    tls_client_auth: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @classmethod
    def for_test(
        cls,
        case: SynchronousTestCase,
        password: str | None = None,
        appendonly: bool = False,
        start: bool = True,
        tls_files: tuple[str, str, str] | None = None,
        tls_client_auth: bool = False,
    ) -> RedisServer:
        """A server stopped (and its directory removed) in ``case``'s cleanups.

        The directory is a short one under the system temp dir, not
        ``case.mktemp()``: unix socket paths must stay under 108 bytes.
        ``start=False`` only reserves the port and directory.
        """
        directory = tempfile.mkdtemp(prefix="oauthproxy-redis-")
        case.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        server = cls(
            directory,
            password=password,
            appendonly=appendonly,
            tls_files=tls_files,
            tls_client_auth=tls_client_auth,
        )
        if tls_files is not None:
            server.tls_port = free_port()
        case.addCleanup(server.stop)
        if start:
            server.start()
        return server

    @property
    def unix_path(self) -> str:
        """The server's unix socket."""
        return os.path.join(self.directory, "redis.sock")

    @property
    def url(self) -> str:
        """A ``redis://`` URL for the TCP listener (password included)."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def address(self, unix: bool = False) -> RedisAddress:
        """Where the server listens, over TCP or the unix socket."""
        if unix:
            return RedisAddress(unix_path=self.unix_path, password=self.password)
        return RedisAddress(host="127.0.0.1", port=self.port, password=self.password)

    def start(self) -> None:
        """Start redis-server (again) and wait until it answers PING."""
        if self.process is not None:
            raise RuntimeError("redis-server is already running")
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        args = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--unixsocket", self.unix_path,
            "--unixsocketperm", "700",
            "--dir", self.directory,
            "--logfile", os.path.join(self.directory, "redis.log"),
            "--save", "",
            "--daemonize", "no",
            "--appendonly", "yes" if self.appendonly else "no",
        ]  # fmt: skip
        if self.appendonly:
            args += ["--appendfsync", "always"]
        if self.password is not None:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        if self.tls_files is not None:
            certificate, key, authority = self.tls_files
            args += [
                "--tls-port", str(self.tls_port),
                "--tls-cert-file", certificate,
                "--tls-key-file", key,
                "--tls-ca-cert-file", authority,
                "--tls-auth-clients", "yes" if self.tls_client_auth else "no",
                "--tls-replication", "yes",
            ]  # fmt: skip
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if self.command("PING") == "PONG":
                    return
            except (OSError, RuntimeError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not start; log:\n{self._log_tail()}")
            time.sleep(0.02)

    def _log_tail(self) -> str:
        """The end of the server's log, for error messages."""
        try:
            with open(os.path.join(self.directory, "redis.log")) as f:
                return "".join(f.readlines()[-20:])
        except OSError as e:
            return f"(no log: {e})"

    def _end(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the server and wait for it to exit."""
        process, self.process = self.process, None
        if process is not None:
            end_process(process, START_TIMEOUT, sig)

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM) and wait for it; idempotent."""
        self.thaw()
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would; idempotent."""
        self._end(signal.SIGKILL)

    def freeze(self) -> None:
        """Stop the server's process (SIGSTOP): connections stay open, nothing answers.

        :meth:`thaw` undoes it; :meth:`stop` thaws first, so a frozen server is never
        left behind.
        """
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen server run again (SIGCONT)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def command(self, *args: object) -> Any:
        """Run one command over a fresh blocking connection (test assertions, set-up)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=START_TIMEOUT) as s:
            f = s.makefile("rb")
            if self.password is not None:
                s.sendall(_encode(("AUTH", self.password)))
                _read_reply(f)
            s.sendall(_encode(args))
            return _read_reply(f)

    def flush(self) -> None:
        """Delete every key (between tests sharing the server)."""
        self.command("FLUSHALL")


def unix_command(path: str, *args: object, password: str | None = None) -> Any:
    """Run one command on the Redis listening on the unix socket ``path`` (blocking)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(START_TIMEOUT)
        s.connect(path)
        f = s.makefile("rb")
        if password is not None:
            s.sendall(_encode(("AUTH", password)))
            _read_reply(f)
        s.sendall(_encode(args))
        return _read_reply(f)


_shared: RedisServer | None = None


def shared_redis_server() -> RedisServer:
    """The redis-server shared by this test process, started on first use.

    Callers flush it in ``setUp``.  It is stopped when the process exits.
    """
    global _shared
    if _shared is None or _shared.process is None or _shared.process.poll() is not None:
        directory = tempfile.mkdtemp(prefix="oauthproxy-redis-")
        _shared = RedisServer(directory)
        _shared.start()
        atexit.register(_stop_shared, _shared, directory)
    return _shared


def _stop_shared(server: RedisServer, directory: str) -> None:
    """Stop a shared server and remove its directory (at exit)."""
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)
