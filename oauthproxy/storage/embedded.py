"""The embedded Redis: a supervised ``redis-server`` on a unix socket in the data directory.

With no ``REDIS_URL`` configured the daemon runs its own redis-server, listening
only on ``<data_dir>/redis.sock`` (no TCP port, socket mode 700) with AOF
persistence in the data directory and a memory limit that only ever evicts keys
with an expiry (:func:`redis_argv`).  :class:`EmbeddedRedis` starts it through
Twisted's :class:`~twisted.runner.procmon.ProcessMonitor`, which restarts it when it
dies, and stops it (TERM, then KILL) on shutdown, waiting until it has exited so
that no orphan is left behind.  ``oauthproxyctl token-admin`` reaches the same
server through :func:`redis_address`.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from attrs import define, evolve, field
from twisted.application.service import Service
from twisted.internet import defer, endpoints, error, task
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.runner.procmon import ProcessMonitor

from oauthproxy.config import Config
from oauthproxy.errors import StorageUnavailable
from oauthproxy.storage.address import RedisAddress, parse_redis_url

SOCKET_NAME = "redis.sock"
_PROCESS = "redis-server"
_POLL = 0.05


def socket_path(data_dir: str) -> str:
    """Where the embedded redis-server listens for ``data_dir``."""
    return os.path.join(os.path.abspath(data_dir), SOCKET_NAME)


def redis_address(config: Config) -> RedisAddress:
    """The Redis the daemon (and ``oauthproxyctl token-admin``) talks to."""
    if config.redis_url is None:
        return RedisAddress(unix_path=socket_path(config.data_dir))
    address = parse_redis_url(
        config.redis_url, config.redis_password, config.redis_sentinel_password
    )
    return evolve(
        address,
        ca_bundle=config.redis_ca_bundle,
        client_cert=config.redis_client_cert,
        client_key=config.redis_client_key,
    )


def redis_argv(binary: str, data_dir: str, maxmemory: int = 0) -> list[str]:
    """The command line of the embedded redis-server.

    ``maxmemory`` bytes (0: no limit) with the ``volatile-lru`` policy: when memory is
    full Redis evicts keys that have an expiry (the request log, short-lived OAuth and
    ACME state) and never configuration, which has none; only if nothing evictable is
    left are writes refused, which ``/health`` and ``/health/ready`` then report.
    """
    data_dir = os.path.abspath(data_dir)
    return [
        binary,
        "--port", "0",
        "--unixsocket", socket_path(data_dir),
        "--unixsocketperm", "700",
        "--dir", data_dir,
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--daemonize", "no",
        "--logfile", "redis.log",
        "--maxmemory", str(maxmemory),
        "--maxmemory-policy", "volatile-lru",
    ]  # fmt: skip


class _Ping(Protocol):
    """Sends ``PING`` and fires ``answered`` with whether ``+PONG`` came back."""

    def __init__(self) -> None:
        self.answered: defer.Deferred[bool] = defer.Deferred()
        self._buffer = b""

    def connectionMade(self) -> None:
        """Send an inline PING."""
        assert self.transport is not None
        self.transport.write(b"PING\r\n")

    def dataReceived(self, data: bytes) -> None:
        """Wait for one full reply line."""
        self._buffer += data
        if b"\r\n" in self._buffer and not self.answered.called:
            self.answered.callback(self._buffer.startswith(b"+PONG"))
            assert self.transport is not None
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """A connection closed before answering means "not ready"."""
        if not self.answered.called:
            self.answered.callback(False)


async def ping_unix(reactor: Any, path: str, timeout: float = 1.0) -> bool:
    """Whether a Redis answers ``PING`` on the unix socket ``path`` (never raises)."""
    endpoint: IStreamClientEndpoint = endpoints.UNIXClientEndpoint(  # type: ignore[no-untyped-call]
        reactor, path, timeout=timeout
    )
    factory = ClientFactory.forProtocol(_Ping)
    factory.noisy = False  # polled every 50 ms while starting: keep the log quiet
    try:
        protocol = await endpoint.connect(factory)
        assert isinstance(protocol, _Ping)
    except (OSError, error.ConnectError, defer.CancelledError):
        # refused, missing socket file, timeout: all mean "not answering yet"
        return False
    answered = protocol.answered
    answered.addTimeout(timeout, reactor, onTimeoutCancel=lambda *_: False)
    return bool(await answered)


@define(eq=False, slots=False)
class EmbeddedRedis(Service):
    """Supervises the embedded redis-server; ``ready()`` waits until it answers.

    ``reactor`` provides IReactorProcess, IReactorUNIX and IReactorTime.
    """

    data_dir: str
    reactor: Any
    binary: str = "redis-server"
    #: bytes of memory the server may use (0: no limit); see :func:`redis_argv`
    maxmemory: int = 0
    #: seconds ``ready()`` waits for the socket to answer
    start_timeout: float = 15.0
    _monitor: ProcessMonitor = field(init=False)
    _log: Logger = field(init=False, factory=Logger)

    def __attrs_post_init__(self) -> None:
        """Configure the monitor (restart after 0.2 s, doubling while it dies young)."""
        self._monitor = ProcessMonitor(reactor=self.reactor)
        self._monitor.minRestartDelay = 0.2  # type: ignore[assignment]
        self._monitor.maxRestartDelay = 10
        self._monitor.threshold = 2
        self._monitor.killTime = 5

    @property
    def path(self) -> str:
        """The unix socket path."""
        return socket_path(self.data_dir)

    @property
    def pid(self) -> int | None:
        """The running redis-server's PID, or None while it is down."""
        protocol = self._monitor.protocols.get(_PROCESS)
        transport = getattr(protocol, "transport", None)
        pid = getattr(transport, "pid", None)
        return pid if isinstance(pid, int) else None

    def startService(self) -> None:
        """Create the data directory and start redis-server under supervision."""
        binary = shutil.which(self.binary)
        if binary is None:
            raise StorageUnavailable(
                f"OAUTHPROXY_REDIS_SERVER: {self.binary!r} not found "
                "(install redis-server or set REDIS_URL)",
                field="OAUTHPROXY_REDIS_SERVER",
            )
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        super().startService()  # type: ignore[no-untyped-call]
        argv = redis_argv(binary, self.data_dir, self.maxmemory)
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            # If the daemon itself is killed (SIGKILL, OOM), the kernel sends TERM to
            # redis-server, so no orphan keeps the data directory busy.
            argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
        self._monitor.addProcess(_PROCESS, argv, cwd=self.data_dir)
        self._monitor.startService()
        self._log.info("embedded redis-server starting on {path}", path=self.path)

    async def check_not_running(self) -> None:
        """Refuse to start a second redis-server on a data directory that already has one."""
        if await ping_unix(self.reactor, self.path):
            raise StorageUnavailable(
                f"a Redis already answers on {self.path}: is another oauthproxy using "
                f"{os.path.abspath(self.data_dir)}?",
                field="OAUTHPROXY_DATA_DIR",
            )

    async def ready(self) -> None:
        """Wait until the socket answers PING; ``StorageUnavailable`` after ``start_timeout``."""
        deadline = self.reactor.seconds() + self.start_timeout
        while not await ping_unix(self.reactor, self.path):
            if self.reactor.seconds() >= deadline:
                raise StorageUnavailable(
                    f"embedded redis-server did not answer on {self.path} within "
                    f"{self.start_timeout:g}s (see {os.path.join(self.data_dir, 'redis.log')})"
                )
            await task.deferLater(self.reactor, _POLL, lambda: None)

    def stopService(self) -> defer.Deferred[None]:
        """Stop redis-server (TERM, KILL after 5 s) and fire once it has exited."""
        super().stopService()  # type: ignore[no-untyped-call]
        self._monitor.stopService()
        return defer.Deferred.fromCoroutine(self._exited())

    async def _exited(self) -> None:
        """Poll (bounded) until the monitor has no running process."""
        deadline = self.reactor.seconds() + self._monitor.killTime + 2
        while _PROCESS in self._monitor.protocols and self.reactor.seconds() < deadline:
            await task.deferLater(self.reactor, _POLL, lambda: None)
        if _PROCESS in self._monitor.protocols:
            self._log.error("embedded redis-server did not exit")
        else:
            self._log.info("embedded redis-server stopped")
