"""WebSocket pass-through: turn an HTTP/1.1 connection into a byte tunnel, but only on 101.

:func:`open_tunnel` takes over a request that asks for ``Upgrade: websocket``:
it connects to the upstream (TCP, or TLS with the caller's verification
policy), replays the request head, and reads the upstream's answer.

- **101 Switching Protocols**: the upstream's head is relayed as is and the
  client connection becomes a raw bidirectional tunnel, with back-pressure
  both ways (a slow client pauses upstream reads, a slow upstream pauses
  client reads) and an idle timeout.
- **Anything else** is relayed as an ordinary HTTP response (body framing
  decoded, hop-by-hop headers dropped) and the client connection stays HTTP:
  bytes the client sent after its request are parsed as the next HTTP request,
  never tunnelled (ATK-16, the oauth2-proxy#1347 smuggling).
- connect failure: 502; no answer within ``response_timeout``: 504.

The switch uses ``HTTPChannel._protocolUpgradeForWebsockets``, the private hook
Twisted's own ``WebSocketResource`` uses; ``tests/gateway/test_tunnel.py`` guards
it.  HTTP/2 streams have no such hook (and RFC 8441 is not supported): they get 400.

The returned :class:`Tunnel` can be closed at any time (the OAuth guard closes
streams whose token expires, ATK-27); its ``done`` Deferred fires when both
sides are gone.  An upgraded request never finishes in twisted.web terms, so
callers that log requests should log from ``done``.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http_headers import Headers

from oauthproxy.errors import InvalidInput
from oauthproxy.gateway.upgrade import (
    MAX_RESPONSE_HEAD,
    BadUpstreamResponse,
    ResponseHead,
    body_framing,
    parse_response_head,
    relayed_headers,
    request_head,
)
from oauthproxy.requestlog.record import notes_for

_log = Logger()

State = Literal["connecting", "handshake", "relaying", "open", "closed"]


class TunnelRefused(InvalidInput):
    """The request cannot be tunnelled (not an HTTP/1.1 GET asking for a WebSocket)."""

    code = "tunnel_refused"


class _Side(Protocol):
    """One end of the tunnel, reporting to its :class:`Tunnel`."""

    def __init__(self, tunnel: Tunnel, upstream: bool) -> None:
        self.tunnel = tunnel
        self.upstream = upstream

    def dataReceived(self, data: bytes) -> None:
        """Hand the bytes to the tunnel."""
        if self.upstream:
            self.tunnel._from_upstream(data)
        else:
            self.tunnel._from_client(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Tell the tunnel this side is gone."""
        self.tunnel._side_lost(self.upstream, reason)


@define(eq=False)
class Tunnel:
    """One WebSocket upgrade in progress or open; ``close()`` ends it at any time."""

    request: Any
    reactor: Any
    idle_timeout: float
    response_timeout: float
    state: State = "connecting"
    #: the upstream's status code once its head arrived
    status_code: int | None = None
    bytes_to_upstream: int = 0
    bytes_to_client: int = 0
    #: fires (with None) when the exchange is over and both connections are closed
    done: Deferred[None] = field(factory=Deferred)
    _connecting: Deferred[_Side] | None = None
    _upstream: _Side | None = None
    _client: _Side | None = None
    _buffer: bytes = b""
    _timer: IDelayedCall | None = None
    _decoder: Any = None
    _client_gone: bool = False

    # -- setup ---------------------------------------------------------------------------

    def _connected(self, upstream: _Side, head: bytes) -> None:
        self._connecting = None
        if self.state == "closed":
            upstream.transport.abortConnection()  # type: ignore[union-attr]
            return
        self._upstream = upstream
        self.state = "handshake"
        upstream.transport.write(head)  # type: ignore[union-attr]
        self._arm(self.response_timeout, self._response_timed_out)

    def _connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        if self.state == "closed":
            self._finish_all()
            return
        _log.info("WebSocket upstream unreachable: {error}", error=failure.getErrorMessage())
        self._answer_error(http.BAD_GATEWAY, b"upstream unreachable\n")

    def _client_left(self, failure: Failure) -> None:
        """The client went away before the upgrade or during a relayed answer."""
        if self.state in ("connecting", "handshake", "relaying"):
            self._client_gone = True
            self._finish_all()

    # -- timers ----------------------------------------------------------------------------

    def _arm(self, seconds: float, call: Any) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.reactor.callLater(seconds, call)

    def _response_timed_out(self) -> None:
        self._timer = None
        if self.state == "handshake":
            self._answer_error(http.GATEWAY_TIMEOUT, b"upstream did not answer in time\n")

    def _idle_timed_out(self) -> None:
        self._timer = None
        _log.info("closing an idle WebSocket tunnel")
        self.close()

    # -- upstream answer -------------------------------------------------------------------

    def _touch(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.reset(self.idle_timeout)

    def _from_upstream(self, data: bytes) -> None:
        if self.state == "open":
            self.bytes_to_client += len(data)
            self._touch()
            self.request.channel.transport.write(data)
        elif self.state == "relaying":
            self._relay_body(data)
        elif self.state == "handshake":
            self._buffer += data
            self._read_head()

    def _read_head(self) -> None:
        end = self._buffer.find(b"\r\n\r\n")
        if end == -1:
            if len(self._buffer) > MAX_RESPONSE_HEAD:
                self._answer_error(http.BAD_GATEWAY, b"upstream response head too large\n")
            return
        raw, rest = self._buffer[: end + 4], self._buffer[end + 4 :]
        try:
            head = parse_response_head(raw[:-4])
        except BadUpstreamResponse as error:
            _log.info("bad WebSocket upstream answer: {error}", error=str(error))
            self._answer_error(http.BAD_GATEWAY, b"bad upstream response\n")
            return
        self._buffer = b""
        if 100 <= head.code < 200 and head.code != 101:
            self._buffer = rest  # interim answers (100, 103) precede the real one
            self._read_head()
        elif head.code == 101:
            self.status_code = 101
            self._switch(raw, rest)
        else:
            self.status_code = head.code
            self._relay(head, rest)

    def _switch(self, raw_head: bytes, rest: bytes) -> None:
        """101: the client connection becomes a tunnel (only here, ATK-16)."""
        channel = self.request.channel
        transport = channel.transport
        self.state = "open"
        self._client = _Side(self, upstream=False)
        channel._protocolUpgradeForWebsockets(self._client)
        transport.write(raw_head + rest)  # raw: request.write() would chunk-encode it
        self.bytes_to_client += len(rest)
        pending = b"".join(channel._dataBuffer)  # sent by the client after its request head
        channel._dataBuffer = []
        upstream_transport: Any = self._upstream.transport  # type: ignore[union-attr]
        self.request.registerProducer(upstream_transport, True)  # slow client: pause upstream
        upstream_transport.registerProducer(transport, True)  # slow upstream: pause client
        transport.resumeProducing()  # HTTPChannel may have paused reads while we waited
        self._arm(self.idle_timeout, self._idle_timed_out)
        if pending:
            self._from_client(pending)

    def _relay(self, head: ResponseHead, rest: bytes) -> None:
        """Not 101: answer as plain HTTP and keep the client connection HTTP."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        request = self.request
        try:
            framing, length = body_framing(head, request.method)
        except BadUpstreamResponse:
            self._answer_error(http.BAD_GATEWAY, b"bad upstream response framing\n")
            return
        request.setResponseCode(head.code, head.reason or None)
        relayed = relayed_headers(head)
        if framing in ("chunked", "close"):
            relayed.pop(b"content-length", None)
        for name, values in relayed.items():  # replaces twisted.web's own Server and Date
            request.responseHeaders.setRawHeaders(name, values)
        if framing == "none" or length == 0:
            self._relay_done(rest)
            return
        identity: Any = http._IdentityTransferDecoder
        if framing == "chunked":
            self._decoder = http._ChunkedTransferDecoder(request.write, self._relay_done)
        else:
            self._decoder = identity(length, request.write, self._relay_done)
        self.state = "relaying"
        request.registerProducer(self._upstream.transport, True)  # type: ignore[union-attr]
        if rest:
            self._relay_body(rest)

    def _relay_body(self, data: bytes) -> None:
        try:
            self._decoder.dataReceived(data)
        except (http._MalformedChunkedDataError, RuntimeError):
            self._abort_client()

    def _relay_done(self, extra: bytes) -> None:
        if self.state == "closed":
            return
        if self.state == "relaying":
            self.request.unregisterProducer()
        self.state = "closed"
        self._decoder = None
        self.request.finish()
        self._finish_all()

    def _answer_error(self, code: int, body: bytes) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        request = self.request
        notes = notes_for(request)  # the request log's error
        notes.error = notes.error or body.decode("utf-8", "replace").strip()
        if self._client_gone or request.startedWriting:
            self._finish_all()
            return
        request.setResponseCode(code)
        request.responseHeaders.setRawHeaders(b"content-type", [b"text/plain; charset=utf-8"])
        request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % len(body)])
        request.write(body)
        self.state = "closed"
        request.finish()
        self._finish_all()

    # -- tunnel ----------------------------------------------------------------------------

    def _from_client(self, data: bytes) -> None:
        if self.state != "open" or self._upstream is None:
            return
        self.bytes_to_upstream += len(data)
        self._touch()
        self._upstream.transport.write(data)  # type: ignore[union-attr]

    def _side_lost(self, upstream: bool, reason: Failure) -> None:
        if not upstream:
            self._client = None
            self._client_gone = True
            self._finish_all()  # drops the upstream too
            return
        self._upstream = None
        if self.state == "relaying":
            try:
                self._decoder.noMoreData()
            except http.PotentialDataLoss:
                pass  # a body delimited by the connection's end is complete now
            except http._DataLoss:
                self._abort_client()  # truncated: the client must not take it as whole
        elif self.state == "handshake":
            self._answer_error(http.BAD_GATEWAY, b"upstream closed without answering\n")
        elif self.state == "open":
            self.request.channel.transport.loseConnection()  # flush what the upstream sent
        self._finish_all()

    def _abort_client(self) -> None:
        self.state = "closed"
        self.request.channel.transport.abortConnection()
        self._finish_all()

    def close(self) -> None:
        """End the exchange now: both connections are dropped, whatever the state."""
        if self.state == "closed" and self._upstream is None and self._client is None:
            return
        was_open = self.state == "open"
        self.state = "closed"
        if was_open or not self._client_gone:
            transport = self.request.channel.transport
            if transport is not None:
                transport.abortConnection()
        self._finish_all()

    def _finish_all(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.state = "closed"
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
        if self._upstream is not None and self._upstream.transport is not None:
            self._upstream.transport.abortConnection()  # type: ignore[attr-defined]
        if not self.done.called:
            self.done.callback(None)


def open_tunnel(
    request: Any,
    upstream_url: str | bytes,
    headers: Headers,
    connect_timeout: float,
    reactor: Any,
    tls_creator: IOpenSSLClientConnectionCreator | None = None,
    *,
    response_timeout: float = 30.0,
    idle_timeout: float = 300.0,
) -> Tunnel:
    """Take over ``request`` (an HTTP/1.1 ``Upgrade: websocket`` GET) and proxy it.

    ``upstream_url`` is the full target (``ws``/``http`` or ``wss``/``https``;
    its path and query are the request target sent upstream); ``headers`` are
    the already rewritten request headers (Host included; ``Connection`` and
    ``Upgrade`` are set here from the client's request).  ``tls_creator``
    overrides the default verifying TLS policy for ``wss``/``https``.  The
    caller's ``render`` returns ``NOT_DONE_YET``; the answer is written here.
    """
    if isinstance(upstream_url, bytes):
        upstream_url = upstream_url.decode("ascii", "replace")
    tunnel = Tunnel(request, reactor, idle_timeout, response_timeout)
    upgrade = [
        token.strip().lower()
        for value in request.requestHeaders.getRawHeaders(b"upgrade") or []
        for token in value.split(b",")
    ]
    channel = request.channel
    refusal = None
    if not hasattr(channel, "_protocolUpgradeForWebsockets"):
        refusal = b"WebSocket over HTTP/2 is not supported; use HTTP/1.1\n"
    elif request.clientproto != b"HTTP/1.1" or request.method != b"GET":
        refusal = b"a WebSocket upgrade must be an HTTP/1.1 GET\n"
    elif b"websocket" not in upgrade:
        refusal = b"only WebSocket upgrades are tunnelled\n"
    parts = urlsplit(upstream_url)
    secure = parts.scheme in ("https", "wss")
    if refusal is None and (
        parts.scheme not in ("http", "ws", "https", "wss") or not parts.hostname
    ):
        raise TunnelRefused(f"cannot tunnel to {upstream_url!r}", field="upstream_url")
    if refusal is not None:
        tunnel._answer_error(http.BAD_REQUEST, refusal)
        return tunnel
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    endpoint: Any = HostnameEndpoint(reactor, host, port, timeout=connect_timeout)
    if secure:
        endpoint = wrapClientTLS(tls_creator or optionsForClientTLS(host), endpoint)
    authority = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        authority += f":{parts.port}"
    try:
        head = request_head(
            request.method, path.encode("ascii"), authority.encode("ascii"), headers
        )
    except UnicodeEncodeError as error:
        raise TunnelRefused(
            f"non-ASCII upstream URL {upstream_url!r}", field="upstream_url"
        ) from error
    request.notifyFinish().addErrback(tunnel._client_left)
    connecting: Deferred[_Side] = connectProtocol(  # type: ignore[no-untyped-call]
        endpoint, _Side(tunnel, upstream=True)
    )
    tunnel._connecting = connecting
    connecting.addCallbacks(tunnel._connected, tunnel._connect_failed, callbackArgs=(head,))
    connecting.addErrback(lambda failure: _log.failure("WebSocket tunnel setup", failure))
    return tunnel
