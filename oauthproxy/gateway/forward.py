# twisted.web and its client are untyped; mypy strict would flag every call into them
# mypy: disable-error-code="no-untyped-call"
"""The streaming forwarder: one client request -> one upstream request over a pooled connection.

Why not ``Agent.request``: the bench profile (``shared/bench/BASELINE.md``) puts 35 % of a bare
Agent proxy's CPU there, mostly URI parsing, endpoint construction and IDNA per request.  The
routing table already resolved every upstream to an :class:`~.routing.Upstream`, so each
upstream gets its endpoint (and TLS connection creator) built once and cached by
:class:`~.upstreams.UpstreamConnector`, and requests go
straight to :meth:`HTTPConnectionPool.getConnection` and ``HTTP11ClientProtocol.request`` — the
same pool, keep-alive and stale-connection retry Agent uses, minus the per-request setup.

Streaming: a request body (HTTP/1.1 or HTTP/2) is forwarded while it arrives: the request is
dispatched before its body and its :class:`~.body.RequestBody` is the upstream request's body
producer (back-pressure both ways, bounded buffers).  An upstream that answers before the body
is sent is relayed at once (see :meth:`Forwarder._send`); an HTTP/1.1 client connection then
closes after the answer.  (A request from any other channel still has a spooled body, sent
with a ``FileBodyProducer``.)  The response body is relayed with the upstream transport
registered as the client request's producer, so a slow client pauses upstream reads (never
fully buffered).
Content-Length is copied, encodings are untouched.

WebSocket: an HTTP/1.1 ``GET`` with ``Upgrade: websocket`` goes to
:func:`oauthproxy.gateway.tunnel.open_tunnel` with the rewritten headers; it tunnels only on a
101 from the upstream (ATK-16).  Any other ``Upgrade`` (``h2c``) is dropped as hop-by-hop.

Errors: connection failure -> 502; connect timeout, or no response head within the proxy's
``read_timeout`` -> 504; an upstream dying mid-body, or silent for ``read_timeout`` while the
client keeps up, aborts the client's stream (the only honest signal once headers are out).  The
client going away cancels the pending upstream request or stops the upstream body.  Read
timeouts are checked by one sweep timer per forwarder, not a DelayedCall per request.
"""

from __future__ import annotations

from typing import Any

from attrs import Factory, define, field
from twisted.internet import error as inet_error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
)
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web._newclient import HTTP11ClientProtocol
from twisted.web._newclient import Request as ClientRequest
from twisted.web.client import FileBodyProducer, HTTPConnectionPool
from twisted.web.http import Request
from twisted.web.iweb import IBodyProducer, IResponse

from oauthproxy.gateway.body import RequestBody
from oauthproxy.gateway.exchange import (
    Discard,
    Exchange,
    Relay,
    note_error,
    respond_error,
    upstream_error,
)
from oauthproxy.gateway.headers import copy_response_headers, upstream_request_headers
from oauthproxy.gateway.routing import Forward
from oauthproxy.gateway.tunnel import open_tunnel
from oauthproxy.gateway.upstreams import UnusableUpstreamTLS, UpstreamConnector
from oauthproxy.model import Proxy
from oauthproxy.requestlog.record import notes_for
from oauthproxy.serving.tcp import tuned_reactor

_log = Logger()

#: statuses that never carry a body, so never a Content-Length of ours
_NO_BODY = frozenset({204, 304})
#: seconds between read-timeout sweeps (the resolution of every read timeout)
_SWEEP_INTERVAL = 0.25


def wants_websocket(request: Request) -> bool:
    """Whether an HTTP/1.1 GET asks for ``Upgrade: websocket``."""
    values = request.requestHeaders.getRawHeaders(b"upgrade")
    if not values or request.clientproto != b"HTTP/1.1" or request.method != b"GET":
        return False
    return any(b"websocket" in v.lower() for v in values)


def _note_peer(request: Request, protocol: Any) -> None:
    """The request log's ``upstream``: the address actually connected to, once known.

    Worked out once per upstream connection (pooled connections serve many requests).
    """
    inner = getattr(protocol, "_clientProtocol", protocol)  # a cached connection's wrapper
    notes = notes_for(request)
    known: str | None = getattr(inner, _PEER, None)
    if known is None:
        transport = getattr(inner, "transport", None)
        peer = getattr(transport, "getPeer", None)
        address = peer() if peer is not None else None
        host, port = getattr(address, "host", None), getattr(address, "port", None)
        if host is None or port is None:
            return
        scheme = (notes.upstream or "http://").split("://", 1)[0]
        shown = f"[{host}]" if ":" in host else host
        known = f"{scheme}://{shown}:{port}"
        setattr(inner, _PEER, known)
    notes.upstream = known


#: attribute of an upstream connection's protocol: the address it is connected to
_PEER = "_oauthproxy_peer"


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


def _new_pool(reactor: Any) -> HTTPConnectionPool:
    """A keep-alive pool sized for a proxy (the default keeps only 2 idle per upstream)."""
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 256
    pool.cachedConnectionTimeout = 120
    return pool


@define
class Forwarder:
    """Forwards requests to upstreams over one persistent connection pool."""

    reactor: Any  # IReactorTime & IReactorTCP
    pool: HTTPConnectionPool = field(
        default=Factory(lambda self: _new_pool(self.reactor), takes_self=True)
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
        closed: Deferred[None] = self.pool.closeCachedConnections()
        return closed

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
            open_tunnel(
                request,
                url,
                headers,
                proxy.connect_timeout,
                self.reactor,
                creator,
                response_timeout=proxy.read_timeout,
            )
            return
        exchange = Exchange(request, proxy.read_timeout)
        producer = self._body_producer(request)
        if isinstance(producer, RequestBody):
            exchange.request_body = producer
            clock = self.reactor
            producer.on_progress = lambda: exchange.touch(clock)
        client_request = ClientRequest(
            request.method, decision.path, headers, producer, persistent=True
        )
        d = self.pool.getConnection(upstream.key, endpoint)
        d.addCallback(self._send, client_request, exchange, decision)
        d.addCallbacks(
            self._respond, self._fail, callbackArgs=(exchange, decision), errbackArgs=(exchange,)
        )
        exchange.pending = d
        request.notifyFinish().addErrback(exchange.on_client_gone)

    def _send(
        self,
        protocol: HTTP11ClientProtocol,
        client_request: ClientRequest,
        exchange: Exchange,
        decision: Forward,
    ) -> Deferred[IResponse]:
        """Write the request on a pooled connection; the response head is now on the clock.

        While a streamed body is still being sent, Twisted's client holds the response back
        until the request is complete *or* the whole response is in; an upstream answering
        early (401, 413, a full-duplex stream) would wait on a body it does not read.  So the
        parser's head Deferred is watched too and an early head is relayed at once.
        """
        exchange.touch(self.reactor)
        exchange.sent_at = self.reactor.seconds()
        _note_peer(exchange.request, protocol)
        self._watched[exchange] = None
        if self._sweeper is None:
            self._sweeper = self.reactor.callLater(_SWEEP_INTERVAL, self._sweep)
        sent: Deferred[IResponse] = protocol.request(client_request)
        if exchange.request_body is not None:
            # a cached connection comes wrapped for retries (never used with a body)
            inner: HTTP11ClientProtocol = getattr(protocol, "_clientProtocol", protocol)
            head: Deferred[IResponse] | None = inner._responseDeferred
            if head is not None and inner.state == "TRANSMITTING":
                head.addCallbacks(
                    self._early_head,
                    self._early_failure,
                    callbackArgs=(exchange, decision),
                    errbackArgs=(inner,),
                )
        return sent

    def _early_head(self, response: IResponse, exchange: Exchange, decision: Forward) -> IResponse:
        """Relay a response head as soon as it is parsed; pass it on to the client's chain."""
        self._respond(response, exchange, decision)
        return response

    @staticmethod
    def _early_failure(failure: Failure, protocol: HTTP11ClientProtocol) -> Failure | None:
        """Pass a head failure on, unless nothing will ever chain it (request never sent)."""
        if protocol.state == "TRANSMITTING":
            return None  # the connection is given up; the request Deferred reports it
        return failure

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

    def _respond(self, response: IResponse, exchange: Exchange, decision: Forward) -> None:
        """Copy status and headers, then stream the body through a :class:`~.exchange.Relay`."""
        if exchange.answered:
            return  # relayed early already (see _send)
        exchange.answered = True
        exchange.pending = None
        request = exchange.request
        notes_for(request).upstream_seconds = self.reactor.seconds() - exchange.sent_at
        if exchange.client_gone or request.finished:
            self.unwatch(exchange)
            response.deliverBody(Discard())
            return
        exchange.touch(self.reactor)
        request.setResponseCode(response.code, response.phrase)
        out = request.responseHeaders
        copy_response_headers(response.headers, out, decision.proxy.custom_response_headers)
        # the client parser keeps Content-Length out of response.headers: restore it so the
        # body is not re-chunked (HEAD, 204 and 304 answers have no body to measure)
        length = response.length
        if isinstance(length, int) and request.method != b"HEAD" and response.code not in _NO_BODY:
            out.setRawHeaders(b"content-length", [b"%d" % length])
        # send the head now: a stream whose first bytes come later (SSE, long polls) shows
        # its status at once; in the common case head and body still leave in one write
        request.write(b"")
        response.deliverBody(Relay(exchange, self.reactor, self.unwatch))

    def _fail(self, failure: Failure, exchange: Exchange) -> None:
        """Map an upstream failure to 504 (timeouts) or 502 (everything else)."""
        exchange.pending = None
        if exchange.answered:
            # the head went out early and the request body then failed (client gone, too
            # large): the relay, or the client's disconnect, ends the rest
            if exchange.client_gone:
                self.unwatch(exchange)
            return
        self.unwatch(exchange)
        body = exchange.request_body
        if exchange.client_gone or (body is not None and body.failure is not None):
            return  # nobody to answer, or the body's failure answered already (413)
        note_error(exchange.request, upstream_error(failure))
        if exchange.timed_out or failure.check(inet_error.TimeoutError):
            respond_error(exchange.request, 504, b"gateway timeout: the upstream did not answer\n")
        else:
            respond_error(exchange.request, 502, b"bad gateway: the upstream is unreachable\n")
