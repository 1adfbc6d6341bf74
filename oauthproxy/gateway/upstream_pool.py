# twisted.internet is partly untyped; mypy strict would flag those calls
# mypy: disable-error-code="no-untyped-call"
"""Kept-alive upstream connections, per upstream.

:class:`UpstreamPool` keeps the idle :class:`~oauthproxy.gateway.upstream_client.UpstreamConnection`
of each upstream key (at most ``max_idle_per_upstream``, closed after ``idle_timeout``
seconds, most recently used first) and connects new ones; :meth:`UpstreamPool.close`
closes them all (shutdown), and a connection released after that is closed too.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.internet.protocol import Factory

from oauthproxy.gateway.upstream_client import UpstreamConnection


class _ConnectionFactory(Factory):
    """Builds the :class:`UpstreamConnection` of one connect."""

    noisy = False

    def __init__(self, pool: UpstreamPool, key: Any) -> None:
        self.pool = pool
        self.key = key

    def buildProtocol(self, addr: Any) -> UpstreamConnection:
        """A new connection for the pool's upstream ``key``."""
        return UpstreamConnection(self.pool, self.key)


class UpstreamPool:
    """Idle kept-alive connections per upstream key (see the module docstring)."""

    def __init__(
        self,
        clock: Any,
        max_idle_per_upstream: int = 256,
        idle_timeout: float = 120.0,
    ) -> None:
        self.clock = clock
        self.max_idle_per_upstream = max_idle_per_upstream
        self.idle_timeout = idle_timeout
        self._idle: dict[Any, list[UpstreamConnection]] = {}
        self._sweeper: IDelayedCall | None = None
        #: idle connections being closed by close(), and what fires when each is gone
        self._closing: dict[UpstreamConnection, Deferred[None]] = {}
        self._closed = False

    def take(self, key: Any) -> UpstreamConnection | None:
        """The most recently used idle connection to ``key``, if there is one."""
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.connected:
                return connection
        return None

    def connect(self, key: Any, endpoint: IStreamClientEndpoint) -> Deferred[UpstreamConnection]:
        """A new connection to ``key`` through ``endpoint``."""
        connected: Deferred[Any] = endpoint.connect(_ConnectionFactory(self, key))
        return connected

    def release(self, connection: UpstreamConnection) -> None:
        """An idle, reusable connection: keep it (or close it when there are enough)."""
        idle = self._idle.setdefault(connection.key, [])
        transport: Any = connection.transport
        if self._closed or len(idle) >= self.max_idle_per_upstream:
            transport.loseConnection()
            return
        connection.idle_since = self.clock.seconds()
        idle.append(connection)
        if self._sweeper is None:
            self._sweeper = self.clock.callLater(self.idle_timeout / 4, self._sweep)

    def lost(self, connection: UpstreamConnection) -> None:
        """A connection closed: forget it if it was idle."""
        waiter = self._closing.pop(connection, None)
        if waiter is not None:
            waiter.callback(None)
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)
            if not idle:
                del self._idle[connection.key]

    def idle_count(self, key: Any) -> int:
        """How many idle connections to ``key`` are kept."""
        return len(self._idle.get(key, ()))

    def _sweep(self) -> None:
        """Close connections idle for ``idle_timeout`` or longer."""
        self._sweeper = None
        cutoff = self.clock.seconds() - self.idle_timeout
        for idle in list(self._idle.values()):
            for connection in [c for c in idle if c.idle_since <= cutoff]:
                idle.remove(connection)
                transport: Any = connection.transport
                transport.loseConnection()
        self._idle = {k: v for k, v in self._idle.items() if v}
        if self._idle:
            self._sweeper = self.clock.callLater(self.idle_timeout / 4, self._sweep)

    def close(self) -> Deferred[None]:
        """Close every idle connection; fires once they are closed.  Later releases close."""
        self._closed = True
        if self._sweeper is not None and self._sweeper.active():
            self._sweeper.cancel()
        self._sweeper = None
        waits: list[Deferred[None]] = []
        for idle in self._idle.values():
            for connection in idle:
                waits.append(self._closing.setdefault(connection, Deferred()))
                transport: Any = connection.transport
                transport.loseConnection()
        self._idle = {}
        done: Deferred[Any] = DeferredList(waits, consumeErrors=True)
        result: Deferred[None] = done.addCallback(lambda _: None)
        return result
