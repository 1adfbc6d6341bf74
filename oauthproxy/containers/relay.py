# twisted.protocols is untyped; mypy strict would flag every call into it
# mypy: disable-error-code="no-untyped-call"
"""A guarded port's TCP side: what a listener does, and the relay to the container.

:class:`GuardedPort` says where a daemon-owned listener listens, whom it admits and
where it relays (see :mod:`oauthproxy.containers.guarded`, which opens them).
:class:`RelayFactory` relays each admitted connection to the container's port:
the client's bytes are held until the container accepted, then flow both ways
with back-pressure (each side's transport produces for the other).  When the
connection ends, one request-log record says who, how many bytes each way, how
long, and whether the container could be reached (502 if not).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from attrs import field, frozen
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from oauthproxy.requestlog.record import RequestRecord, correlation_id

#: seconds a relay waits for the container to accept
CONNECT_TIMEOUT = 10.0

RecordSink = Callable[[RequestRecord], None]


@frozen
class GuardedPort:
    """What one guarded listener does: where it listens, whom it admits, where it relays."""

    service: str
    port: str
    bind: str
    host: int
    target_ip: str
    target_port: int
    allowed_networks: tuple[str, ...] = ()
    token_hash: str | None = field(default=None, repr=False)

    @property
    def key(self) -> tuple[str, int]:
        """The listening address: one listener per ``(bind, host)``."""
        return (self.bind, self.host)

    @property
    def where(self) -> str:
        """``bind:host`` as the request log shows it."""
        bind = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"{bind}:{self.host}"


def connection_record(
    spec: GuardedPort,
    peer: str,
    now: float,
    status: int,
    error: str | None = None,
    started: float | None = None,
    sent: int = 0,
    received: int = 0,
) -> RequestRecord:
    """The request-log record of one TCP connection to a guarded port."""
    return RequestRecord(
        time=now,
        correlation_id=correlation_id(now, "tcp", secrets.token_hex(4)),
        client_ip=peer,
        method="TCP",
        host=spec.where,
        path="/",
        status=status,
        bytes_in=received,
        bytes_out=sent,
        duration=None if started is None else max(0.0, now - started),
        scheme="tcp",
        upstream=f"{spec.target_ip}:{spec.target_port}",
        error=error,
    )


class _Upstream(Protocol):
    """The relay's connection to the container."""

    def __init__(self, relay: _Relay) -> None:
        self.relay = relay

    def connectionMade(self) -> None:
        """Wire the two transports together with back-pressure, then let data flow."""
        self.relay.upstream_ready(self)

    def dataReceived(self, data: bytes) -> None:
        """Container → client."""
        self.relay.sent += len(data)
        assert self.relay.transport is not None
        self.relay.transport.write(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        """The container closed: close the client's side."""
        if self.relay.transport is not None:
            self.relay.transport.loseConnection()


class _Relay(Protocol):
    """One client connection relayed to the container."""

    def __init__(self, factory: RelayFactory, peer: str) -> None:
        self.factory = factory
        self.peer = peer
        self.spec = factory.spec
        self.started = factory.reactor.seconds()
        self.sent = 0
        self.received = 0
        self.upstream: _Upstream | None = None
        self.error: str | None = None

    def connectionMade(self) -> None:
        """Hold the client's bytes until the container accepted."""
        assert self.transport is not None
        self.transport.pauseProducing()  # type: ignore[attr-defined]
        endpoint_type = TCP6ClientEndpoint if ":" in self.spec.target_ip else TCP4ClientEndpoint
        endpoint = endpoint_type(
            self.factory.reactor, self.spec.target_ip, self.spec.target_port, CONNECT_TIMEOUT
        )
        d = endpoint.connect(_OneShot(lambda: _Upstream(self)))
        d.addErrback(self._upstream_failed)

    def _upstream_failed(self, failure: Failure) -> None:
        """The container did not accept: close the client's connection."""
        self.error = f"container unreachable: {failure.getErrorMessage()}"[:200]
        if self.transport is not None:
            self.transport.loseConnection()

    def upstream_ready(self, upstream: _Upstream) -> None:
        """Both sides are up: relay with flow control both ways."""
        self.upstream = upstream
        assert self.transport is not None and upstream.transport is not None
        upstream.transport.registerProducer(self.transport, True)  # type: ignore[attr-defined]
        self.transport.registerProducer(upstream.transport, True)  # type: ignore[attr-defined]
        self.transport.resumeProducing()  # type: ignore[attr-defined]

    def drain(self) -> bool:
        """The daemon stops (:func:`oauthproxy.serving.drain.drain`): a stream has no
        request to stop after, so it is relayed on until a side closes it (False: not
        closing), or the drain timeout aborts it."""
        return False

    def dataReceived(self, data: bytes) -> None:
        """Client → container."""
        self.received += len(data)
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.write(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        """Close the container's side and log the connection."""
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.loseConnection()
        status = 502 if self.error is not None else 200
        self.factory.log(
            connection_record(
                self.spec,
                self.peer,
                self.factory.reactor.seconds(),
                status,
                self.error,
                self.started,
                self.sent,
                self.received,
            )
        )


class _OneShot(Factory):
    """A client factory building one given protocol."""

    noisy = False

    def __init__(self, build: Callable[[], Protocol]) -> None:
        self._build = build

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        """The protocol."""
        return self._build()


class RelayFactory(Factory):
    """Relays every connection to the spec's container port."""

    noisy = False

    def __init__(self, spec: GuardedPort, reactor: Any, log: RecordSink) -> None:
        self.spec = spec
        self.reactor = reactor
        self.log = log

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        """A relay for the client at ``addr``."""
        return _Relay(self, str(getattr(addr, "host", "unknown")))
