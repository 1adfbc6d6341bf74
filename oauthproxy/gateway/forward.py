# twisted.web and its client are untyped; mypy strict would flag every call into them
# mypy: disable-error-code="no-untyped-call"
"""The streaming forwarder: one client request -> one upstream request over a pooled connection.

Requests go out through our own HTTP/1.1 client (:mod:`~.upstream_client`: persistent
connections parsed by llhttp through ``httptools``, one pool of idle connections per
upstream).  Why not ``Agent.request`` or twisted.web's ``HTTP11ClientProtocol``: the bench
profile (``shared/bench/BASELINE.md``) puts 35 % of a bare Agent proxy's CPU in ``Agent``'s
per-request setup, and twisted.web's response parser is pure Python with several Deferreds
and objects per request.  The routing table already resolved every upstream to an
:class:`~.routing.Upstream`, so each upstream gets its endpoint (and TLS connection creator)
built once and cached by :class:`~.upstreams.UpstreamConnector`; a request on a kept-alive
connection makes no Deferred at all.  A failure on a reused connection before any response
byte is retried once on a new connection when that is safe (idempotent method, no body), as
twisted.web's pool does.

Streaming: a request body (HTTP/1.1 or HTTP/2) is forwarded while it arrives: the request is
dispatched before its body and its :class:`~.body.RequestBody` is the upstream request's body
producer (back-pressure both ways, bounded buffers).  An upstream that answers before the body
is sent is relayed at once (the head is relayed as soon as it is parsed); an HTTP/1.1 client
connection then closes after the answer.  (A request from any other channel still has a
spooled body, sent with a ``FileBodyProducer``.)  The response body is relayed with the
upstream connection registered as the client request's producer, so a slow client pauses
upstream reads (never fully buffered).  Content-Length is copied, encodings are untouched.

WebSocket: an HTTP/1.1 ``GET`` with ``Upgrade: websocket`` goes to
:func:`oauthproxy.gateway.tunnel.open_tunnel` with the rewritten headers; it tunnels only on a
101 from the upstream (ATK-16), and the tunnel goes to the request log when it ends (status 101,
its lifetime, the bytes each way).  Any other ``Upgrade`` (``h2c``) is dropped as hop-by-hop.

Errors: connection failure or a broken answer -> 502; connect timeout, or no response head
within the proxy's ``read_timeout`` -> 504; an upstream dying mid-body, or silent for
``read_timeout`` while the client keeps up, aborts the client's stream (the only honest
signal once headers are out).  The client going away cancels the pending upstream request or
stops the upstream body.  Read timeouts are checked by one sweep timer per forwarder, not a
DelayedCall per request.
"""

from __future__ import annotations

from typing import Any

from attrs import Factory, define, field
from twisted.internet import error as inet_error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import FileBodyProducer
from twisted.web.http import Request
from twisted.web.iweb import IBodyProducer

from oauthproxy.gateway.body import RequestBody
from oauthproxy.gateway.exchange import (
    Exchange,
    note_error,
    respond_error,
    upstream_error,
)
from oauthproxy.gateway.headers import upstream_request_headers
from oauthproxy.gateway.routing import Forward
from oauthproxy.gateway.tunnel import Tunnel, open_tunnel
from oauthproxy.gateway.upstream_client import UpstreamConnection, UpstreamProtocolError
from oauthproxy.gateway.upstream_pool import UpstreamPool
from oauthproxy.gateway.upstreams import UnusableUpstreamTLS, UpstreamConnector
from oauthproxy.model import Proxy
from oauthproxy.requestlog.record import notes_for
from oauthproxy.serving.tcp import tuned_reactor

_log = Logger()

#: seconds between read-timeout sweeps (the resolution of every read timeout)
_SWEEP_INTERVAL = 0.25
#: idle upstream connections kept per upstream, and for how long (seconds)
MAX_IDLE_PER_UPSTREAM = 256
IDLE_TIMEOUT = 120.0


def _log_tunnel(_: None, tunnel: Tunnel) -> None:
    """A WebSocket tunnel ended: log its request now (an upgraded request never finishes).

    The record has the 101, the bytes relayed each way and the tunnel's lifetime; any
    other answer was relayed as plain HTTP and logged when that request finished.
    """
    request = tunnel.request
    if tunnel.status_code != 101:
        return
    factory = getattr(getattr(request, "channel", None), "factory", None)
    if factory is None:
        return
    request.code = 101
    request.sentLength = tunnel.bytes_to_client
    notes_for(request).bytes_in = tunnel.bytes_to_upstream
    factory.log(request)


def wants_websocket(request: Request) -> bool:
    """Whether an HTTP/1.1 GET asks for ``Upgrade: websocket``."""
    values = request.requestHeaders.getRawHeaders(b"upgrade")
    if not values or request.clientproto != b"HTTP/1.1" or request.method != b"GET":
        return False
    return any(b"websocket" in v.lower() for v in values)


def _note_peer(request: Request, connection: UpstreamConnection) -> None:
    """The request log's ``upstream``: the address actually connected to, once known.

    Worked out once per upstream connection (pooled connections serve many requests).
    """
    notes = notes_for(request)
    known = connection.peer
    if known is None:
        transport = connection.transport
        peer = getattr(transport, "getPeer", None)
        address = peer() if peer is not None else None
        host, port = getattr(address, "host", None), getattr(address, "port", None)
        if host is None or port is None:
            return
        scheme = (notes.upstream or "http://").split("://", 1)[0]
        shown = f"[{host}]" if ":" in host else host
        known = connection.peer = f"{scheme}://{shown}:{port}"
    notes.upstream = known


def _stripped(proxy: Proxy) -> frozenset[bytes]:
    """The proxy's extra header names never forwarded, lower case (cached per record)."""
    names = _strip_cache.get(proxy.strip_request_headers)
    if names is None:
        names = frozenset(n.lower().encode("ascii") for n in proxy.strip_request_headers)
        if len(_strip_cache) < 1000:
            _strip_cache[proxy.strip_request_headers] = names
    return names


_strip_cache: dict[tuple[str, ...], frozenset[bytes]] = {}


def client_ip_of(request: Request) -> str:
    """The client's address as text (the PROXY-protocol address when the wrapper set it)."""
    host = getattr(request.getClientAddress(), "host", None)
    return host if isinstance(host, str) else "unknown"


@define
class Forwarder:
    """Forwards requests to upstreams over one pool of persistent connections."""

    reactor: Any  # IReactorTime & IReactorTCP
    pool: UpstreamPool = field(
        default=Factory(
            lambda self: UpstreamPool(self.reactor, MAX_IDLE_PER_UPSTREAM, IDLE_TIMEOUT),
            takes_self=True,
        )
    )
    #: upstream connections write at the end of the reactor's turn (serving/tcp.py)
    connector: UpstreamConnector = field(
        default=Factory(
            lambda self: UpstreamConnector(tuned_reactor(self.reactor)), takes_self=True
        )
    )
    _cooperator: Cooperator | None = None
    #: exchanges under a read timeout (an insertion-ordered set)
    _watched: dict[Exchange, None] = field(factory=dict)
    _sweeper: IDelayedCall | None = None

    def close(self) -> Deferred[None]:
        """Stop the timeout sweep and close idle upstream connections (shutdown, tests)."""
        if self._sweeper is not None and self._sweeper.active():
            self._sweeper.cancel()
        self._sweeper = None
        return self.pool.close()

    def _body_producer(self, request: Request) -> IBodyProducer | None:
        """The request's streamed body, a producer for its spooled body, or None (no body)."""
        streamed: RequestBody | None = getattr(request, "body", None)
        if streamed is not None:
            return streamed
        headers = request.requestHeaders
        if not (headers.hasHeader(b"content-length") or headers.hasHeader(b"transfer-encoding")):
            return None
        if self._cooperator is None:
            reactor = self.reactor
            self._cooperator = Cooperator(scheduler=lambda f: reactor.callLater(1e-8, f))
        content = request.content
        assert content is not None
        content.seek(0)
        return FileBodyProducer(content, cooperator=self._cooperator)

    def forward(
        self, request: Request, decision: Forward, scheme: str, host: bytes | None = None
    ) -> None:
        """Send ``request`` upstream and relay the answer; the caller returns NOT_DONE_YET.

        ``host`` is the client's Host value when the caller already has it.
        """
        proxy = decision.proxy
        upstream = decision.upstream
        if host is None:
            host = request.getHeader(b"host") or upstream.netloc
        upgrade = wants_websocket(request)
        headers = upstream_request_headers(
            request.requestHeaders,
            client_ip=client_ip_of(request),
            scheme=scheme,
            host=host,
            upstream_netloc=upstream.netloc,
            preserve_host=proxy.preserve_host_header,
            custom=proxy.custom_request_headers,
            upgrade=upgrade,
            strip=_stripped(proxy),
            keep_underscores=proxy.keep_underscore_headers,
        )
        notes = notes_for(request)
        notes.upstream = f"{upstream.scheme}://{upstream.netloc.decode('ascii', 'replace')}"
        try:
            endpoint = self.connector.endpoint(upstream, proxy.connect_timeout)
        except UnusableUpstreamTLS as e:
            _log.warn("proxy {host}: {detail}", host=proxy.hostname, detail=e.detail)
            note_error(request, "upstream TLS settings are unusable")
            respond_error(request, 502, b"bad gateway: upstream TLS settings are unusable\n")
            return
        if upgrade:
            # the tunnel answers (101 -> byte tunnel, anything else relayed as is, ATK-16)
            url = b"%s://%s%s" % (upstream.scheme.encode(), upstream.netloc, decision.path)
            creator = self.connector.creator(upstream) if upstream.scheme == "https" else None
            tunnel = open_tunnel(
                request,
                url,
                headers,
                proxy.connect_timeout,
                self.reactor,
                creator,
                response_timeout=proxy.read_timeout,
            )
            tunnel.done.addCallback(_log_tunnel, tunnel)
            return
        exchange = Exchange(request, proxy.read_timeout, self, decision, headers)
        producer = self._body_producer(request)
        if isinstance(producer, RequestBody):
            exchange.request_body = producer
            clock = self.reactor
            producer.on_progress = lambda: exchange.touch(clock)
        request.notifyFinish().addErrback(exchange.on_client_gone)
        connection = self.pool.take(upstream.key)
        if connection is not None:
            self._send(connection, exchange, producer)
        else:
            self._connect(exchange, endpoint, producer)

    def _connect(
        self, exchange: Exchange, endpoint: IStreamClientEndpoint, producer: IBodyProducer | None
    ) -> None:
        """Open a new upstream connection for ``exchange``, then send on it."""
        d = self.pool.connect(exchange.decision.upstream.key, endpoint)
        d.addCallbacks(
            self._send,
            self._connect_failed,
            callbackArgs=(exchange, producer),
            errbackArgs=(exchange,),
        )
        exchange.pending = d

    def _send(
        self, connection: UpstreamConnection, exchange: Exchange, producer: IBodyProducer | None
    ) -> None:
        """Write the request on ``connection``; the response head is now on the clock."""
        if exchange.client_gone:
            exchange.pending = None
            self.pool.release(connection)  # unused: still clean
            return
        reactor = self.reactor
        exchange.sent_at = now = reactor.seconds()
        exchange.deadline = now + exchange.read_timeout
        exchange.pending = connection
        _note_peer(exchange.request, connection)
        self._watched[exchange] = None
        if self._sweeper is None:
            self._sweeper = reactor.callLater(_SWEEP_INTERVAL, self._sweep)
        request = exchange.request
        connection.send(
            request.method, exchange.decision.path, exchange.headers, producer, exchange
        )

    def _connect_failed(self, failure: Failure, exchange: Exchange) -> None:
        """No connection to the upstream (refused, timed out, cancelled)."""
        self.failed(exchange, failure, False)

    def failed(self, exchange: Exchange, failure: Failure, retryable: bool) -> None:
        """No response head: retry once when safe, else 504 (timeouts) or 502."""
        exchange.pending = None
        if retryable and not (exchange.retried or exchange.client_gone or exchange.timed_out):
            # a kept-alive connection the upstream had closed meanwhile: a new one
            exchange.retried = True
            upstream = exchange.decision.upstream
            endpoint = self.connector.endpoint(upstream, exchange.decision.proxy.connect_timeout)
            self._connect(exchange, endpoint, None)
            return
        self.unwatch(exchange)
        body = exchange.request_body
        if exchange.client_gone or (body is not None and body.failure is not None):
            return  # nobody to answer, or the body's failure answered already (413)
        note_error(exchange.request, upstream_error(failure))
        if exchange.timed_out or failure.check(inet_error.TimeoutError):
            respond_error(exchange.request, 504, b"gateway timeout: the upstream did not answer\n")
        elif failure.check(UpstreamProtocolError):
            respond_error(
                exchange.request, 502, b"bad gateway: the upstream's answer is not HTTP\n"
            )
        else:
            respond_error(exchange.request, 502, b"bad gateway: the upstream is unreachable\n")

    def unwatch(self, exchange: Exchange) -> None:
        """The exchange needs no read timeout any more (answered, failed or finished)."""
        self._watched.pop(exchange, None)

    def _sweep(self) -> None:
        """Time out every exchange whose upstream is overdue (one timer for all of them).

        Overdue means no response head, or no body bytes while the client was keeping up,
        for ``read_timeout`` seconds (like nginx's ``proxy_read_timeout``; a stream must send
        something, e.g. an SSE comment, within that time).  A DelayedCall per request costs
        more than the forwarding it guards; sweeping a few times a second gives read timeouts
        a resolution of ``_SWEEP_INTERVAL``.
        """
        self._sweeper = None
        now = self.reactor.seconds()
        overdue = [
            e for e in self._watched if e.deadline <= now and not e.paused and not e.sending()
        ]
        for exchange in overdue:
            del self._watched[exchange]
            exchange.timed_out = True
            note_error(exchange.request, f"upstream read timed out ({exchange.read_timeout:g} s)")
            if exchange.body is not None:
                exchange.body.stopProducing()  # headers are out: the client sees an abort
            elif exchange.pending is not None:
                exchange.pending.cancel()  # no head yet: 504
        if self._watched:
            self._sweeper = self.reactor.callLater(_SWEEP_INTERVAL, self._sweep)
