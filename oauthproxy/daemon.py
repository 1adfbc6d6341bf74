"""The daemon's lifecycle: start the components in order once Redis answers, stop in reverse.

:class:`Daemon` runs the startup sequence described in :mod:`oauthproxy.tap`
(which composes the concrete components through ``Daemon.compose``) and the
shutdown: stop listening, drain open requests (bounded by ``drain_timeout``),
stop the components' services and run their cleanups, stop the mirror, close
storage, stop the embedded Redis.

With ``--workers N`` the same class runs in each worker process, with a
:class:`WorkerRole` (:class:`oauthproxy.workers.link.WorkerLink`): the supervisor
has already started the embedded Redis, checked the secret key and created the
admin token (:func:`prepare_storage`), and it opened the listening sockets, which
``open_socket`` hands out instead of binding new ones.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Callable
from typing import Any, Protocol

from attrs import define, field, frozen
from twisted.application.service import MultiService, Service
from twisted.internet import defer, task
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger, LogLevel
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure

import oauthproxy
from oauthproxy import bootstrap
from oauthproxy.config import Config
from oauthproxy.errors import ConfigError, StorageUnavailable
from oauthproxy.gateway.listeners import SocketOpener
from oauthproxy.serving.drain import drain
from oauthproxy.storage.diagnose import diagnose
from oauthproxy.storage.embedded import EmbeddedRedis, redis_address
from oauthproxy.storage.health import StorageState, StorageWatch
from oauthproxy.storage.mirror import Mirror

#: seconds between two looks at the connections while draining
_DRAIN_POLL = 0.05


@frozen
class Listener:
    """One listening socket to open once storage is ready."""

    name: str
    description: str
    endpoint: IStreamServerEndpoint
    factory: IProtocolFactory


class TrackedConnection(ProtocolWrapper):
    """A listener's connection, tracked for draining; its addresses are looked up once.

    twisted.web asks the transport for ``getHost()`` on every request (a
    ``getsockname`` system call, 3-4 % of the gateway's CPU under load); a
    connection's local and peer addresses never change, so the first answer is
    kept.  The first call comes with the first request, after a PROXY header.
    """

    _host: Any = None
    _peer: Any = None

    def getHost(self) -> Any:
        """The local address (asked once)."""
        if self._host is None:
            assert self.transport is not None
            self._host = self.transport.getHost()
        return self._host

    def getPeer(self) -> Any:
        """The peer address (asked once)."""
        if self._peer is None:
            assert self.transport is not None
            self._peer = self.transport.getPeer()
        return self._peer


class TrackingFactory(WrappingFactory):
    """Keeps the open connections of one listener (``protocols``) for the drain."""

    protocol = TrackedConnection


def cannot_listen(listener: Listener, error: CannotListenError) -> str:
    """One line saying which listener cannot open, why, and which setting moves it."""
    reason = error.socketError
    text = getattr(reason, "strerror", None) or str(reason)
    setting = f"--{listener.name} or OAUTHPROXY_{listener.name.upper().replace('-', '_')}"
    hint = "another process has it: stop that or choose another port"
    if isinstance(reason, PermissionError) or getattr(reason, "errno", None) == errno.EACCES:
        hint = "ports below 1024 need root or systemd socket activation"
    return (
        f"the {listener.name} listener cannot listen on {listener.description}: "
        f"{text[:1].lower() + text[1:]} ({hint}; set {setting})"
    )


class Drainable(Protocol):
    """Listeners a component opens by itself (guarded ports) that the drain covers too."""

    def stop_listening(self) -> defer.Deferred[None]:
        """Stop accepting for good (the daemon is stopping); keep what is open."""

    def connections(self) -> list[Any]:
        """The open connections: ``ProtocolWrapper`` s around their protocols."""


class WorkerRole(Protocol):
    """What a worker process adds to the daemon (:mod:`oauthproxy.workers.link`)."""

    def attach(self, daemon: Daemon) -> None:
        """The mirror runs: follow the daemon's writes, answer the supervisor's calls."""

    def serve_metrics(self, metrics: Any) -> None:
        """``/metrics`` of this worker describes the whole daemon."""

    def ready(self) -> None:
        """Every listener is open."""

    def health(self) -> dict[str, Any]:
        """The ``workers`` entry of ``/health``."""


#: ``/health``'s ``workers`` entry of a daemon without worker processes
SINGLE_PROCESS = {"configured": 1, "running": 1, "restarts": 0, "crash_looping": []}


def sd_notify(path: str | None, message: str) -> None:
    """Send ``message`` (e.g. ``READY=1``) to systemd's notification socket, if any."""
    if not path:
        return
    address = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode("ascii"), address)


def exit_failed() -> None:
    """Leave with exit status 1 (after twistd's own shutdown work)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def startup_failed(reactor: Any, log: Logger, failure: Failure) -> None:
    """Log why the daemon could not start, stop the reactor, then exit with status 1."""
    if failure.check(defer.CancelledError):  # type: ignore[no-untyped-call]
        return
    log.critical("oauthproxy could not start: {reason}", reason=failure.getErrorMessage())
    log.failure("startup failure", failure, level=LogLevel.debug)
    # twistd would exit 0 after reactor.stop(); systemd's Restart=on-failure and
    # scripts need to see the failure, so exit 1 once shutdown (cleanup) is done.
    reactor.addSystemEventTrigger("after", "shutdown", exit_failed)
    # startService may run before the reactor does: stop it once it runs.
    reactor.callWhenRunning(reactor.stop)


async def wait_for_storage(storage: Any, reactor: Any, config: Config) -> None:
    """Wait (bounded) until the store answers a ping.

    While it does not, a direct connection finds out why, beside the pings
    (:func:`~oauthproxy.storage.diagnose.diagnose`: refused, a failed TLS
    handshake...): each new reason is logged, and the last one is in the final error.
    """
    deadline = reactor.seconds() + max(30.0, 3 * config.redis_timeout)
    reasons: list[str] = []
    diagnosing: defer.Deferred[None] | None = None
    address = redis_address(config)

    def found(why: str | None) -> None:
        if why and (not reasons or reasons[-1] != why):
            reasons.append(why)
            Logger().warn("Redis does not answer yet ({why}); waiting", why=why)

    try:
        while not await storage.ping():
            if reactor.seconds() >= deadline:
                reason = f": {reasons[-1]}" if reasons else ""
                raise StorageUnavailable(
                    f"Redis did not answer{reason}; is REDIS_URL right?", field="REDIS_URL"
                )
            if diagnosing is None or diagnosing.called:
                diagnosing = defer.Deferred.fromCoroutine(
                    diagnose(address, reactor, config.redis_timeout)
                ).addCallbacks(found, lambda _: None)  # cancelled once Redis answers
            await task.deferLater(reactor, 0.5, lambda: None)
    finally:
        if diagnosing is not None and not diagnosing.called:
            diagnosing.cancel()


async def prepare_storage(
    config: Config,
    reactor: Any,
    embedded: EmbeddedRedis | None,
    storage: Any,
    announce: Callable[[str], None],
) -> None:
    """Start the embedded Redis, wait for ``storage``, check the key, create the admin token.

    Done once per daemon: by the daemon itself, or by the supervisor of its workers.
    """
    if embedded is not None:
        await embedded.check_not_running()
        embedded.startService()
        await embedded.ready()
    Logger().info("connecting to Redis at {address!r}", address=redis_address(config))
    await wait_for_storage(storage, reactor, config)
    # a daemon with another key would fail to decrypt, retrying forever: refuse now
    await storage.check_key()
    token = await bootstrap.ensure_admin_token(storage.tokens, reactor)
    if token is not None:
        announce(bootstrap.announce_admin_token(token))


@define(eq=False, slots=False)
class Daemon(Service):
    """Starts the components in order once Redis answers; stops them in reverse."""

    config: Config
    reactor: Any
    embedded: EmbeddedRedis | None = None
    announce: Callable[[str], None] = field(default=lambda line: None)
    open_storage: Callable[[Config, Any], Any] = bootstrap.open_storage
    make_mirror: Callable[[Any, Any], Mirror] = Mirror
    #: builds the components on storage and the mirror (see :func:`oauthproxy.tap.compose`)
    compose: Callable[[Daemon], list[Listener]] = field(default=lambda daemon: [])
    #: opens each listener's socket in a worker (adopting the supervisor's); None = bind
    open_socket: SocketOpener | None = None
    #: set in a worker process of ``--workers N``
    worker: WorkerRole | None = None
    storage: Any = field(default=None, init=False)
    mirror: Mirror | None = field(default=None, init=False)
    watch: StorageWatch | None = field(default=None, init=False)
    ports: list[tuple[Listener, IListeningPort, TrackingFactory]] = field(factory=list, init=False)
    #: started before the listeners open, stopped after they drained
    services: MultiService = field(factory=MultiService, init=False)
    #: run after the services stopped (e.g. closing connection pools)
    cleanups: list[Callable[[], object]] = field(factory=list, init=False)
    #: other listeners, closed and drained with the daemon's own
    drainables: list[Drainable] = field(factory=list, init=False)
    started_at: float = field(default=0.0, init=False)
    _startup: defer.Deferred[None] | None = field(default=None, init=False)
    #: every listener is open (startup done)
    _listening: bool = field(default=False, init=False)
    _stopping: bool = field(default=False, init=False)
    _log: Logger = field(factory=Logger, init=False)

    def startService(self) -> None:
        """Begin the asynchronous startup; a failure stops the reactor."""
        super().startService()  # type: ignore[no-untyped-call]
        self.started_at = self.reactor.seconds()
        self._startup = defer.Deferred.fromCoroutine(self._start())
        self._startup.addErrback(self._startup_failed)

    def _startup_failed(self, failure: Failure) -> None:
        """Log why the daemon could not start, and stop."""
        startup_failed(self.reactor, self._log, failure)

    async def _start(self) -> None:
        """The startup sequence (see the module docstring)."""
        config = self.config
        self.storage = self.open_storage(config, self.reactor)
        if self.worker is None:
            await prepare_storage(config, self.reactor, self.embedded, self.storage, self.announce)
        else:
            # the supervisor prepared Redis (embedded server, key check, admin token)
            await wait_for_storage(self.storage, self.reactor, config)
        self.mirror = self.make_mirror(self.storage, self.reactor)
        self.mirror.startService()
        if self.worker is not None:
            self.worker.attach(self)
        await self.mirror.when_loaded()
        self.watch = StorageWatch(self.storage.probe, self.reactor, on_change=self._storage_changed)
        self.watch.startService()
        listeners = self.compose(self)
        self.services.startService()  # type: ignore[no-untyped-call]
        for listener in listeners:
            wrapper = TrackingFactory(listener.factory)  # type: ignore[no-untyped-call]
            try:
                port = await listener.endpoint.listen(wrapper)
            except CannotListenError as error:
                raise ConfigError(cannot_listen(listener, error), field=listener.name) from None
            self.ports.append((listener, port, wrapper))
            self._log.info(
                "{name} listening on {address}", name=listener.name, address=port.getHost()
            )
        self._listening = True
        if self.worker is not None:
            self.worker.ready()
            return
        sd_notify(config.notify_socket, "READY=1")
        self._log.info("oauthproxy {version} ready", version=oauthproxy.__version__)

    def _storage_changed(self, state: StorageState) -> None:
        """Redis answers again: the mirror reloads now rather than after its back-off."""
        if state.reachable and self.mirror is not None:
            self.mirror.retry_now()

    def storage_state(self) -> StorageState:
        """The last probe's answer (the embedded redis-server being down counts too)."""
        if self.embedded is not None and self.embedded.pid is None:
            detail = "the embedded redis-server is not running"
            return StorageState(reachable=False, writable=False, detail=detail)
        if self.watch is None:
            return StorageState(reachable=False, writable=False, detail="not connected yet")
        return self.watch.state

    def health(self) -> dict[str, Any]:
        """The daemon's state for ``GET /health`` (cheap: no Redis round trip)."""
        storage = self.storage_state()
        state: dict[str, Any] = {}
        if self.embedded is not None:
            state["embedded_redis"] = "running" if self.embedded.pid is not None else "stopped"
        state.update(
            redis="connected" if storage.reachable else "unreachable",
            redis_writes="ok" if storage.healthy else (storage.detail or "refused"),
            version=oauthproxy.__version__,
            uptime=round(self.reactor.seconds() - self.started_at, 3),
            listeners={listener.name: listener.description for listener, _, _ in self.ports},
            workers=self.worker.health() if self.worker is not None else dict(SINGLE_PROCESS),
        )
        return state

    def readiness(self) -> list[str]:
        """Why this daemon should not get traffic now (``GET /health/ready``); empty if ready.

        Ready means: every listener is open, the daemon is not shutting down, and Redis
        takes reads and writes (the last probe, at most about a second old).
        """
        reasons = []
        if self._stopping:
            reasons.append("shutting down")
        elif not self._listening:
            reasons.append("starting: not every listener is open yet")
        storage = self.storage_state()
        if not storage.reachable:
            reasons.append(f"Redis does not answer: {storage.detail}")
        elif not storage.writable:
            reasons.append(f"Redis refuses writes: {storage.detail}")
        return reasons

    def stopService(self) -> defer.Deferred[None]:
        """Stop listening, drain, then stop mirror, storage and the embedded Redis."""
        super().stopService()  # type: ignore[no-untyped-call]
        if self._startup is not None and not self._startup.called:
            self._startup.cancel()
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        """The shutdown sequence."""
        self._stopping = True
        sd_notify(self.config.notify_socket, "STOPPING=1")
        for _, port, _ in self.ports:
            await defer.maybeDeferred(port.stopListening)
        for drainable in self.drainables:
            await drainable.stop_listening()
        await self._drain()
        self.ports.clear()
        if self.services.running:
            await defer.maybeDeferred(self.services.stopService)
        for cleanup in reversed(self.cleanups):
            await defer.maybeDeferred(cleanup)
        self.cleanups.clear()
        if self.watch is not None:
            self.watch.stopService()
        if self.mirror is not None:
            await defer.maybeDeferred(self.mirror.stopService)
        if self.storage is not None:
            await defer.maybeDeferred(self.storage.close)
        if self.embedded is not None and self.embedded.running:
            await self.embedded.stopService()
        self._log.info("oauthproxy stopped")

    async def _drain(self) -> None:
        """Let what is in flight finish, closing each connection once it is idle.

        Idle keep-alive connections close at once; a busy one (a request, a stream, a
        tunnel) answers with ``Connection: close`` and closes after it
        (:func:`oauthproxy.serving.drain.drain`).  Whatever is still open after
        ``drain_timeout`` seconds is aborted.
        """
        deadline = self.reactor.seconds() + self.config.drain_timeout
        announced = False
        while True:
            open_connections = self._open_connections()
            if not open_connections:
                return
            # every round: a connection busy before may be idle now (idempotent)
            busy = [c for c in open_connections if not drain(c.wrappedProtocol)]
            if busy and not announced:
                announced = True
                self._log.info(
                    "draining {count} busy connection(s) for up to {seconds:g} s",
                    count=len(busy),
                    seconds=self.config.drain_timeout,
                )
            if self.reactor.seconds() >= deadline:
                self._log.warn(
                    "drain timeout: aborting {count} connection(s) still open",
                    count=len(open_connections),
                )
                break
            await task.deferLater(self.reactor, _DRAIN_POLL, lambda: None)
        for connection in self._open_connections():
            if connection.transport is not None:
                connection.transport.abortConnection()

    def _open_connections(self) -> list[Any]:
        """Every open connection of the listeners and the drainables."""
        connections = [c for _, _, w in self.ports for c in list(w.protocols)]
        return connections + [c for d in self.drainables for c in d.connections()]
