"""The listening sockets of a daemon with workers: opened by the supervisor, inherited.

The supervisor opens every listener's plain socket (:func:`open_sockets`); the
workers inherit the descriptors and adopt them (:class:`InheritedSockets`), then
layer PROXY and TLS on top in their own process, as a single daemon does.  The
supervisor never accepts a connection.  Two ways, measured with wrk (50
kept-alive connections opened at once against 2 workers):

- **TCP listeners** (``tcp:``, ``tcp6:``): one socket per worker, all bound to the
  same address with ``SO_REUSEPORT``, so the kernel spreads new connections evenly
  over the workers by their addresses' hash (25/25 give or take a few).  With one
  shared socket the first worker to wake took the whole burst (50/0), and taking
  one connection per wake-up still left 14/36 in some runs.  A worker that dies
  leaves its socket open in the supervisor: the connections waiting in it are
  accepted by its replacement a moment later instead of being refused.
- **Other sockets** (``systemd:``, ``unix:``): systemd hands one socket per
  listener to the supervisor (the main PID), and only sharing passes it on; all
  workers accept from it, one connection per wake-up (:class:`_OneAtATime`), so a
  burst is shared and a busy worker, slower to come back, takes fewer.

The supervisor keeps its copies for restarts and closes them first on shutdown,
so once the workers stop listening the port refuses new connections and a
balancer in front moves on at once.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

from attrs import define, field, frozen
from twisted.internet import tcp, unix
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from oauthproxy.config import Config
from oauthproxy.daemon import Listener, cannot_listen
from oauthproxy.errors import ConfigError
from oauthproxy.gateway.listeners import with_backlog
from oauthproxy.serving import tcp as tuned


def listener_sockets(config: Config) -> list[tuple[str, str, str]]:
    """``(name, setting, description)`` of every socket to open, in a daemon's order.

    The descriptions are the ones the listeners' builders ask for (the backlog
    added), so a worker finds each socket under the description it builds.
    """
    backlog = config.listen_backlog
    wanted = [
        ("api", config.api_endpoint),
        ("http", config.http_endpoint),
        ("https", config.https_endpoint),
        ("proxy-http", config.proxy_http_endpoint),
        ("proxy-https", config.proxy_https_endpoint),
    ]
    return [(name, text, with_backlog(text, backlog)) for name, text in wanted if text]


class _NoConnections(Protocol):
    """Never built: the supervisor never accepts on the sockets it opens."""


@define(eq=False)
class ListenerSockets:
    """One listener's sockets in the supervisor: one per worker, or one for all."""

    name: str
    description: str
    family: int
    #: ``SO_REUSEPORT`` sockets, one per worker (TCP listeners)
    per_worker: list[socket.socket] = field(factory=list)
    #: the one socket every worker accepts from (systemd and unix sockets)
    shared: IListeningPort | None = None

    def fileno_for(self, index: int) -> int:
        """The descriptor worker ``index`` inherits."""
        if self.shared is not None:
            number: int = self.shared.fileno()  # type: ignore[attr-defined]
            return number
        return self.per_worker[index].fileno()

    def address(self) -> str:
        """Where it listens, for the log."""
        if self.shared is not None:
            return str(self.shared.getHost())
        host, port = self.per_worker[0].getsockname()[:2]
        return f"{host}:{port} ({len(self.per_worker)} sockets, SO_REUSEPORT)"

    async def close(self) -> None:
        """Close the supervisor's copies."""
        for each in self.per_worker:
            each.close()
        if self.shared is not None:
            await maybeDeferred(self.shared.stopListening)


def _reuseport_sockets(endpoint: Any, count: int) -> tuple[int, list[socket.socket]]:
    """``count`` sockets listening on one TCP address with ``SO_REUSEPORT``.

    Port 0 binds the first socket to a free port and the others to the same one.
    :raises CannotListenError: like Twisted's own ``listenTCP``.
    """
    family = socket.AF_INET6 if isinstance(endpoint, TCP6ServerEndpoint) else socket.AF_INET
    interface = endpoint._interface or ("::" if family == socket.AF_INET6 else "")
    port = endpoint._port
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(family, socket.SOCK_STREAM)
            opened.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind((interface, port))
            port = s.getsockname()[1]
            s.listen(endpoint._backlog)
            s.setblocking(False)
    except OSError as e:
        for s in opened:
            s.close()
        raise CannotListenError(interface, port, e) from None  # type: ignore[no-untyped-call]
    return family, opened


async def open_sockets(reactor: Any, config: Config) -> list[ListenerSockets]:
    """Open every listener's sockets for ``config.workers`` workers, accepting on none.

    :raises ConfigError: naming the listener that cannot listen (port taken, no
        permission), like a single daemon.
    """
    opened: list[ListenerSockets] = []
    factory = Factory.forProtocol(_NoConnections)
    factory.noisy = False
    for name, setting, description in listener_sockets(config):
        endpoint: IStreamServerEndpoint = serverFromString(reactor, description)  # type: ignore[no-untyped-call]
        try:
            if isinstance(endpoint, TCP4ServerEndpoint | TCP6ServerEndpoint):
                family, each = _reuseport_sockets(endpoint, config.workers)
                opened.append(ListenerSockets(name, description, family, per_worker=each))
                continue
            port: Any = await endpoint.listen(factory)
        except CannotListenError as error:
            for listener in opened:
                await listener.close()
            failed = Listener(name, setting, endpoint, factory)
            raise ConfigError(cannot_listen(failed, error), field=name) from None
        # listening, but the supervisor's reactor never accepts: the workers do
        port.stopReading()
        opened.append(ListenerSockets(name, description, port.addressFamily, shared=port))
    return opened


class _OneAtATime:
    """Accept one connection per wake-up from a socket the workers share.

    Twisted's port accepts up to 100 waiting connections each time the socket is
    readable.  Every worker is woken by a new connection, and the first to run
    would take a whole burst; taking one at a time, it goes back to its loop and
    its siblings, woken too, take the next ones.
    """

    @property
    def numberAccepts(self) -> int:
        """Always one."""
        return 1

    @numberAccepts.setter
    def numberAccepts(self, value: int) -> None:
        """Twisted grows it after a full round; it stays one."""


class _SharedTCPPort(_OneAtATime, tuned.Port):
    """A TCP socket shared by the workers (connections as the gateway's: serving/tcp.py)."""


class _SharedUNIXPort(_OneAtATime, unix.Port):
    """A unix socket the supervisor owns: a worker that stops listening leaves the path."""

    def connectionLost(self, reason: Any) -> None:
        """Close our descriptor only (the supervisor removes the path on shutdown)."""
        tcp.Port.connectionLost(self, reason)  # type: ignore[no-untyped-call]


@implementer(IStreamServerEndpoint)
@frozen
class AdoptedEndpoint:
    """Listens on an inherited descriptor, once (see the module docstring)."""

    reactor: Any
    fileno: int
    family: int
    #: whether sibling workers accept from the same socket
    shared: bool = False

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Adopt the socket; the inherited descriptor is closed, the port keeps its own.

        Closing it matters: once the workers and the supervisor stopped listening the
        port must refuse connections, not queue them for nobody.
        """
        port: Any
        if self.family == socket.AF_UNIX:
            port = _SharedUNIXPort._fromListeningDescriptor(  # type: ignore[no-untyped-call]
                self.reactor, self.fileno, protocolFactory
            )
        elif self.shared:
            port = _SharedTCPPort._fromListeningDescriptor(  # type: ignore[no-untyped-call]
                self.reactor, self.fileno, self.family, protocolFactory
            )
        else:
            port = tuned.Port._fromListeningDescriptor(  # type: ignore[no-untyped-call]
                self.reactor, self.fileno, self.family, protocolFactory
            )
        port.startListening()
        os.close(self.fileno)
        return succeed(port)


@define
class InheritedSockets:
    """A worker's sockets by description: the ``open_socket`` of its listeners."""

    #: description -> (descriptor, address family, shared with the siblings)
    sockets: Mapping[str, tuple[int, int, bool]]

    def endpoint(self, reactor: Any, description: str, setting: str) -> IStreamServerEndpoint:
        """The inherited socket for ``description``; ConfigError if the supervisor has none."""
        found = self.sockets.get(description)
        if found is None:
            raise ConfigError(f"the supervisor passed no socket for {description!r}", field=setting)
        return AdoptedEndpoint(reactor, *found)
