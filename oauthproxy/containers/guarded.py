# twisted.web and twisted.protocols are untyped; mypy strict would flag every call into them
# mypy: disable-error-code="no-untyped-call"
"""The daemon's own listeners for guarded ports: check first, then relay to the container.

Docker's publishing lets anyone who reaches the host port in.  A service port with
``allowed_networks`` or a token is not published; :class:`GuardedPorts` listens on
its ``bind:host`` instead and, per connection:

1. refuses (closes at once) a client whose address is outside ``allowed_networks``;
2. for a port with a token (an HTTP port): answers 401 to a request without
   ``X-Port-Token: <token>`` or ``Authorization: Bearer <token>`` (compared by
   SHA-256 digest in constant time), removes that header, and forwards the request
   with the gateway's forwarder (its limits, timeouts and header rewriting);
3. otherwise relays the TCP stream both ways (:mod:`oauthproxy.containers.relay`).

Every refused connection, relayed connection and HTTP request is written to the
request log (``method`` ``TCP`` for relayed streams, ``host`` the port's
``bind:host``).  The reconciler decides which daemon runs these listeners (the one
holding its lease) and calls :meth:`GuardedPorts.apply` with the records.  On SIGTERM
the daemon stops them with its own listeners and drains their connections as it
drains its own (:meth:`GuardedPorts.stop_listening`, :meth:`GuardedPorts.connections`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from attrs import define, field
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IAddress, IListeningPort
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.resource import Resource
from twisted.web.server import Request

from oauthproxy.admin.credentials import hash_token, same_hash
from oauthproxy.config import Config
from oauthproxy.containers.relay import GuardedPort, RecordSink, RelayFactory, connection_record
from oauthproxy.gateway.forward import Forwarder
from oauthproxy.gateway.hosts import error_body
from oauthproxy.gateway.paths import BadPath, canonical_path, split_target
from oauthproxy.gateway.routing import Forward, parse_upstream
from oauthproxy.gateway.site import GatewaySite
from oauthproxy.model import DockerService, Proxy
from oauthproxy.requestlog.record import RequestRecord, notes_for

_log = Logger()
#: the header carrying a port token (``Authorization: Bearer`` works too)
TOKEN_HEADER = b"x-port-token"


def guarded_ports(services: Iterable[DockerService]) -> list[GuardedPort]:
    """The guarded ports the records ask for (services whose container has an address)."""
    found = []
    for service in services:
        if service.phase not in ("ready", "updating") or service.ip is None:
            continue
        for port in service.ports:
            if port.guarded:
                found.append(
                    GuardedPort(
                        service.name,
                        port.name,
                        port.bind,
                        port.host,
                        service.ip,
                        port.container,
                        port.allowed_networks,
                        port.token_hash,
                    )
                )
    return found


def admitted(address: str, networks: tuple[str, ...]) -> bool:
    """Whether a client at ``address`` may connect (no networks: everyone)."""
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(network, strict=False) for network in networks)


def presented_token(request: Request) -> tuple[bytes, str] | None:
    """``(header, value)`` of the port token the request carries, if any."""
    values = request.requestHeaders.getRawHeaders(TOKEN_HEADER)
    if values:
        return TOKEN_HEADER, values[0].decode("latin-1").strip()
    for value in request.requestHeaders.getRawHeaders(b"authorization") or ():
        scheme, _, credential = value.partition(b" ")
        if scheme.lower() == b"bearer" and credential.strip():
            return b"authorization", credential.strip().decode("latin-1")
    return None


class PortGateResource(Resource):
    """An HTTP port's gate: token first, then the gateway's forwarder to the container."""

    isLeaf = True

    def __init__(self, spec: GuardedPort, forwarder: Forwarder) -> None:
        super().__init__()
        self.spec = spec
        self._forwarder = forwarder

    def render(self, request: Request) -> Any:
        """401 without the token; otherwise forward (the token header is not sent on)."""
        spec = self.spec
        found = presented_token(request)
        if spec.token_hash is None or found is None:
            return self._unauthorized(request, "this port requires its access token")
        header, value = found
        if not same_hash(hash_token(value), spec.token_hash):
            return self._unauthorized(request, "wrong port access token")
        request.requestHeaders.removeHeader(header)
        try:
            raw_path, query = split_target(request.uri)
            path = canonical_path(raw_path).encode("ascii") + query
        except BadPath as e:
            return error_body(request, 400, "bad_request", e.detail)
        target = f"http://{spec.target_ip}:{spec.target_port}"
        if ":" in spec.target_ip:
            target = f"http://[{spec.target_ip}]:{spec.target_port}"
        proxy = Proxy(hostname=spec.where, target_url=target, preserve_host_header=True)
        decision = Forward(parse_upstream(target, proxy), proxy, None, path)
        self._forwarder.forward(request, decision, "http", request.getHeader(b"host"))
        return server.NOT_DONE_YET

    def _unauthorized(self, request: Request, detail: str) -> bytes:
        """A 401 asking for the port token."""
        notes_for(request).error = detail
        realm = f"{self.spec.service}/{self.spec.port}"
        request.setHeader(b"www-authenticate", f'Bearer realm="{realm}"'.encode())
        return error_body(request, 401, "unauthorized", detail)


class _NetworkGate(WrappingFactory):
    """Closes connections from outside the allowed networks before any byte is read."""

    noisy = False

    def __init__(self, wrapped: Factory, listener: _Listener) -> None:
        super().__init__(wrapped)
        self.listener = listener

    def buildProtocol(self, addr: IAddress | None) -> Any:
        """None (the connection is closed) for a client outside the networks."""
        spec = self.listener.spec
        peer = str(getattr(addr, "host", ""))
        if not admitted(peer, spec.allowed_networks):
            now = self.listener.reactor.seconds()
            self.listener.log(
                connection_record(spec, peer or "unknown", now, 403, "source address not allowed")
            )
            return None
        return super().buildProtocol(addr)


@define(eq=False)
class _Listener:
    """One open guarded port."""

    spec: GuardedPort
    reactor: Any
    log: RecordSink
    port: IListeningPort | None = None
    gate: _NetworkGate | None = None
    inner: Any = None

    def update(self, spec: GuardedPort) -> None:
        """Take a changed spec (token, networks, target) without closing the socket."""
        self.spec = spec
        if self.inner is not None:
            self.inner.spec = spec


@define
class GuardedPorts:
    """The guarded listeners of this daemon, kept in step with the records by :meth:`apply`."""

    reactor: Any
    config: Config
    forwarder: Forwarder
    #: the request log's sink for TCP records (None: request log off)
    record: RecordSink | None = None
    #: the request log's hook for HTTP requests
    access_log: Callable[[Any], None] | None = None
    _open: dict[tuple[str, int], _Listener] = field(factory=dict)
    #: the daemon is stopping: no listener opens any more (:meth:`stop_listening`)
    _stopping: bool = False

    def _log(self, record: RequestRecord) -> None:
        """Send a record to the request log, if there is one."""
        if self.record is not None:
            self.record(record)

    @property
    def listening(self) -> list[GuardedPort]:
        """The specs of the listeners open now."""
        return [listener.spec for listener in self._open.values() if listener.port is not None]

    def apply(self, services: Iterable[DockerService]) -> defer.Deferred[None]:
        """Open, change and close listeners so they match ``services``; fires when done.

        A port that cannot be bound is logged and tried again at the next apply.
        Once the daemon is stopping nothing changes.
        """
        if self._stopping:
            return defer.succeed(None)
        wanted = {spec.key: spec for spec in guarded_ports(services)}
        work: list[defer.Deferred[Any]] = []
        for key, listener in list(self._open.items()):
            spec = wanted.get(key)
            if spec is None or (spec.token_hash is None) != (listener.spec.token_hash is None):
                work.append(self._close(key))
            elif spec != listener.spec:
                listener.update(spec)
        for key, spec in wanted.items():
            if key not in self._open:
                work.append(self._listen(spec))
        return defer.gatherResults(work, consumeErrors=True).addCallback(lambda _: None)

    def _listen(self, spec: GuardedPort) -> defer.Deferred[None]:
        """Open a listener for ``spec``."""
        listener = _Listener(spec, self.reactor, self._log)
        if spec.token_hash is not None:
            resource = PortGateResource(spec, self.forwarder)
            inner: Any = GatewaySite(resource, self.config, self.reactor, self.access_log)
            listener.inner = resource
        else:
            inner = RelayFactory(spec, self.reactor, self._log)
            listener.inner = inner
        listener.gate = _NetworkGate(inner, listener)
        self._open[spec.key] = listener
        interface = spec.bind.replace(":", "\\:")
        endpoint = serverFromString(self.reactor, f"tcp:{spec.host}:interface={interface}")

        def listening(port: IListeningPort) -> None:
            listener.port = port
            _log.info(
                "guarded port {service}/{port} listening on {where}",
                service=spec.service,
                port=spec.port,
                where=spec.where,
            )

        def failed(failure: Failure) -> None:
            self._open.pop(spec.key, None)
            _log.error(
                "guarded port {service}/{port} cannot listen on {where}: {reason}",
                service=spec.service,
                port=spec.port,
                where=spec.where,
                reason=failure.getErrorMessage(),
            )

        d: defer.Deferred[None] = endpoint.listen(listener.gate).addCallbacks(listening, failed)
        return d

    def _close(self, key: tuple[str, int]) -> defer.Deferred[None]:
        """Stop listening on ``key`` and drop its open connections."""
        listener = self._open.pop(key)
        if listener.gate is not None:
            for connection in list(listener.gate.protocols):
                connection.transport.loseConnection()
        if listener.port is None:
            return defer.succeed(None)
        return defer.maybeDeferred(listener.port.stopListening).addCallback(lambda _: None)

    def stop_listening(self) -> defer.Deferred[None]:
        """Stop accepting on every port for good (the daemon drains what is open)."""
        self._stopping = True
        ports = [listener.port for listener in self._open.values() if listener.port is not None]
        for listener in self._open.values():
            listener.port = None
        return defer.gatherResults(
            [defer.maybeDeferred(port.stopListening) for port in ports], consumeErrors=True
        ).addCallback(lambda _: None)

    def connections(self) -> list[Any]:
        """The open connections of every port (for the daemon's drain)."""
        return [
            connection
            for listener in self._open.values()
            if listener.gate is not None
            for connection in list(listener.gate.protocols)
        ]

    def close(self) -> defer.Deferred[None]:
        """Close every listener (the lease was lost, or the daemon stops)."""
        return defer.gatherResults(
            [self._close(key) for key in list(self._open)], consumeErrors=True
        ).addCallback(lambda _: None)
