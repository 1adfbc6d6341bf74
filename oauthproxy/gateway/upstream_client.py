# twisted.internet is partly untyped; mypy strict would flag those calls
# mypy: disable-error-code="no-untyped-call"
"""The gateway's upstream HTTP/1.1 client: persistent connections parsed by ``httptools``.

Why not twisted.web's client: its response parser is pure Python (``LineReceiver``), and
every request pays for a ``Request``, a ``Response``, a ``Headers``, several Deferreds and
the pool's per-request wrappers.  Here one :class:`UpstreamConnection` per TCP (or TLS)
connection writes a request head in one write and feeds whatever the upstream sends to
llhttp (through ``httptools``, the parser uvicorn uses), which calls back into a
:class:`ResponseHandler` (the forwarder's exchange) with the head, the body chunks and the
end.  No Deferred is made per request on a kept-alive connection.

What it keeps from twisted.web's client (the forwarder relies on all of it):

- the request head as ``HTTP11ClientProtocol`` writes it: request line, then
  ``Content-Length`` or ``Transfer-Encoding: chunked`` (``Content-Length: 0`` for a bodiless
  ``POST``/``PUT``), then the headers in order;
- a request body is an ``IBodyProducer`` registered with the upstream transport (the
  transport pauses it), framed by length (checked) or chunked;
- the response head may arrive, and the whole response may end, before the request body is
  sent (the connection is then closed, not reused); 1xx interim answers are skipped (a 101
  is an error here: the WebSocket tunnel does its own handshake);
- bodies delimited by ``Content-Length``, chunked or the close of the connection; none
  after ``HEAD``, 204 or 304;
- a connection is reused only when the upstream allows it (``should_keep_alive``), the
  request and the response both ended cleanly and nothing more arrived;
- :attr:`UpstreamConnection.retryable` tells when a failure on a *reused* connection may be
  retried on a new one: no response byte arrived, the method is idempotent and there is no
  body (as twisted.web's pool decides);
- the response head is limited to :data:`MAX_HEAD_BYTES`.

The connections are kept alive between requests by
:class:`~oauthproxy.gateway.upstream_pool.UpstreamPool`.
"""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING, Any
from typing import Protocol as TypingProtocol

import httptools
from twisted.internet.defer import CancelledError
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web._newclient import _ensureValidMethod, _ensureValidURI
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer

if TYPE_CHECKING:
    from oauthproxy.gateway.upstream_pool import UpstreamPool

#: bytes of a response head (status line and headers) we accept; more is an error
MAX_HEAD_BYTES = 64 * 1024
#: methods a failed reused connection may retry (twisted.web's pool retries these)
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"DELETE", b"TRACE"})
#: methods whose empty body is still stated (``Content-Length: 0``), as twisted.web does
_EMPTY_LENGTH_STATED = frozenset({b"PUT", b"POST"})


def _response_parser(protocol: Any) -> httptools.HttpResponseParser:
    """A response parser calling back into ``protocol``.

    It takes a bare LF where a line of the head should end in CRLF, as RFC 9112
    section 2.2 lets a recipient do, and as twisted.web's client and nginx do: CGI
    scripts and small embedded servers write such heads.  The body's framing stays
    strict (a chunk size line needs its CRLF, as twisted.web's did); only a response
    is read this way (requests from clients stay strict, see
    :mod:`oauthproxy.serving.framing`), and its head is never passed on as it came: the
    gateway writes its own, so a bare LF cannot reach a client.
    """
    parser = httptools.HttpResponseParser(protocol)
    parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True)
    return parser


class UpstreamProtocolError(Exception):
    """The upstream broke HTTP/1.1: a bad head or body framing, an oversized head."""


class ResponseHandler(TypingProtocol):
    """What a connection reports one response to (the forwarder's exchange)."""

    def response_head(
        self,
        connection: UpstreamConnection,
        code: int,
        phrase: bytes,
        headers: list[tuple[bytes, bytes]],
        length: int | None,
    ) -> None:
        """The final response head: raw header pairs; ``length`` if it states one."""

    def response_body(self, data: bytes) -> None:
        """A chunk of the response body (decoded from chunked framing)."""

    def response_end(self, failure: Failure | None) -> None:
        """The body ended: completely (None) or cut short (why)."""

    def response_failed(self, connection: UpstreamConnection, failure: Failure) -> None:
        """No response head will come (connection failed, cancelled, broken answer)."""


class _HeadOnly(Exception):
    """Raised inside the parser after the head of an answer to HEAD (no body follows)."""


def _frame(method: bytes, target: bytes, te_or_cl: bytes | None, headers: Headers) -> bytes:
    """The request head, laid out as twisted.web's ``Request._writeHeaders`` does."""
    lines = [_ensureValidMethod(method) + b" " + _ensureValidURI(target) + b" HTTP/1.1\r\n"]
    if te_or_cl is not None:
        lines.append(te_or_cl)
    for name, values in headers._rawHeaders.items():
        for value in values:
            lines.append(name + b": " + value + b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


class UpstreamConnection(Protocol):
    """One persistent HTTP/1.1 connection to an upstream (see the module docstring)."""

    def __init__(self, pool: UpstreamPool, key: Any) -> None:
        self.pool = pool
        self.key = key
        #: the address connected to, as the request log shows it (set by the forwarder)
        self.peer: str | None = None
        #: requests this connection carried before the current one
        self.served = 0
        #: the clock reading when it last became idle
        self.idle_since = 0.0
        self.connected = False
        self._handler: ResponseHandler | None = None
        self._parser = _response_parser(self)
        self._method = b""
        self._has_body = False
        self._body: IBodyProducer | None = None
        self._chunked = False
        self._remaining = -1
        self._request_done = True
        self._reading_paused = False
        self._reset_response()

    def _reset_response(self) -> None:
        """Forget the last response (a new request, or after a 1xx)."""
        self._phrase = b""
        self._headers: list[tuple[bytes, bytes]] = []
        #: bytes received for this response (while no head is in: the head's size so far)
        self._head_bytes = 0
        #: the size of the header lines parsed so far (a head that arrives whole is checked)
        self._header_bytes = 0
        self._head_seen = False
        self._done = False
        self._reusable = False
        self._delimited = True  # by length or chunks; False: by the close of the connection
        self._any_byte = False
        self._extra = False
        self._error: Failure | None = None

    # -- requests ---------------------------------------------------------------------------

    @property
    def retryable(self) -> bool:
        """Whether the current request may be retried on a new connection after a failure."""
        return (
            self.served > 0
            and not self._any_byte
            and not self._has_body
            and self._method in IDEMPOTENT
            and (self._error is None or not self._error.check(CancelledError))
        )

    def send(
        self,
        method: bytes,
        target: bytes,
        headers: Headers,
        body: IBodyProducer | None,
        handler: ResponseHandler,
    ) -> None:
        """Write one request; its response goes to ``handler``.  Never raises.

        A request that cannot be written (an invalid method or target, a body that fails)
        ends with ``handler.response_failed``.
        """
        self._handler = handler
        self._method = method
        self._body = body
        self._has_body = body is not None
        self._reset_response()
        transport: Any = self.transport
        try:
            if body is None:
                stated = b"Content-Length: 0\r\n" if method in _EMPTY_LENGTH_STATED else None
                transport.write(_frame(method, target, stated, headers))
                self._request_done = True
                return
            length = body.length
            self._chunked = length is UNKNOWN_LENGTH
            if self._chunked:
                head = _frame(method, target, b"Transfer-Encoding: chunked\r\n", headers)
            else:
                self._remaining = int(length)
                head = _frame(method, target, b"Content-Length: %d\r\n" % self._remaining, headers)
        except ValueError as e:
            self._fail_now(Failure(e))
            return
        self._request_done = False
        transport.write(head)
        transport.registerProducer(body, True)
        sent = body.startProducing(self)
        sent.addCallbacks(self._body_sent, self._body_failed, errbackArgs=(body,))

    def _fail_now(self, failure: Failure) -> None:
        """The request could not be written: give the connection up, tell the handler."""
        self._error = failure
        body, self._body = self._body, None
        self._stop_body(body)
        self.abort()

    # IConsumer, for the request body
    def write(self, data: bytes) -> None:
        """A chunk of the request body from its producer."""
        if not data or self._request_done:
            return
        transport: Any = self.transport
        if self._chunked:
            transport.writeSequence((b"%x\r\n" % len(data), data, b"\r\n"))
            return
        self._remaining -= len(data)
        if self._remaining < 0:
            self._error = Failure(UpstreamProtocolError("request body longer than its length"))
            self.abort()
            return
        transport.write(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """Not used: the body producer is registered with the transport directly."""

    def unregisterProducer(self) -> None:
        """Not used (see :meth:`registerProducer`)."""

    def _body_sent(self, _: object) -> None:
        """The producer is done: end the framing, or fail a body shorter than its length."""
        if self._request_done or not self.connected:
            return
        transport: Any = self.transport
        transport.unregisterProducer()
        if self._chunked:
            transport.write(b"0\r\n\r\n")
        elif self._remaining != 0:
            self._error = Failure(UpstreamProtocolError("request body shorter than its length"))
            self.abort()
            return
        self._request_done = True

    def _body_failed(self, failure: Failure, body: IBodyProducer) -> None:
        """The body cannot be completed (client gone, too large): abort the upstream request."""
        if self._body is not body or not self.connected:
            return
        if self._error is None:
            self._error = failure
        self.abort()

    # -- the response -------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """Parse what arrived; release the connection once a response is complete."""
        if self._handler is None or self._done:
            self._extra = True  # nothing asked for this: the connection is not reusable
            self.abort()
            return
        self._any_byte = True
        self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except _HeadOnly:
            self._reusable = self._reusable and data.endswith(b"\r\n\r\n")
            self._parser = _response_parser(self)
        except httptools.HttpParserUpgrade:
            self._protocol_error("101 Switching Protocols outside a WebSocket tunnel")
            return
        except httptools.HttpParserError as e:
            cause = e.__context__
            if isinstance(cause, _HeadOnly):
                self._reusable = self._reusable and data.endswith(b"\r\n\r\n")
                self._parser = _response_parser(self)
            elif not self._done:
                if isinstance(cause, UpstreamProtocolError):
                    self._protocol_error(str(cause))
                else:
                    self._protocol_error(f"bad response: {e}")
                return
            else:
                self._extra = True
        if self._done:
            self._complete()
        elif not self._head_seen and self._head_bytes > MAX_HEAD_BYTES:
            self._protocol_error(f"response head over {MAX_HEAD_BYTES} bytes")

    def _protocol_error(self, why: str) -> None:
        """The upstream broke HTTP: give the connection up (the handler learns why)."""
        if self._error is None:
            self._error = Failure(UpstreamProtocolError(why))
        self.abort()

    def on_message_begin(self) -> None:
        """A response starts; another one after the current one ended is extra data."""
        if self._done:
            self._extra = True

    def on_status(self, status: bytes) -> None:
        """(Part of) the reason phrase."""
        self._phrase += status

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header line, raw (names as sent, values without surrounding whitespace)."""
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > MAX_HEAD_BYTES:
            raise UpstreamProtocolError(f"response head over {MAX_HEAD_BYTES} bytes")
        self._headers.append((name, value.strip()))

    def on_headers_complete(self) -> None:
        """A head is in: skip 1xx, hand a final one to the handler."""
        parser = self._parser
        code = parser.get_status_code()
        if code < 200:
            self._phrase = b""
            self._headers = []
            return
        self._head_seen = True
        headers = self._headers
        length: int | None = None
        framed = False
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-length":
                length = int(value)
            elif lower == b"transfer-encoding" and b"chunked" in value.lower():
                framed = True
        if framed:
            length = None
        elif length is None and code not in (204, 304) and self._method != b"HEAD":
            self._delimited = False
        handler = self._handler
        assert handler is not None
        handler.response_head(self, code, self._phrase, headers, length)
        if self._method == b"HEAD":
            self._done = True
            self._reusable = parser.should_keep_alive()
            raise _HeadOnly()

    def on_body(self, data: bytes) -> None:
        """A body chunk: straight to the handler."""
        handler = self._handler
        if handler is not None and not self._done:
            handler.response_body(data)

    def on_message_complete(self) -> None:
        """A response ended (1xx ones are skipped)."""
        if not self._head_seen or self._done:
            return
        self._done = True
        self._reusable = self._parser.should_keep_alive()

    def _complete(self) -> None:
        """The response is complete: keep or close the connection, then tell the handler.

        The connection is settled first: the handler may send the next request at once.
        """
        handler, self._handler = self._handler, None
        if self._request_done:
            self._release()
        else:
            # answered before the request ended: the rest of the body is not sent, and the
            # upstream cannot tell where the request ends, so the connection goes
            body, self._body = self._body, None
            self._stop_body(body)
            self.abort()
        if handler is not None:
            handler.response_end(None)

    @staticmethod
    def _stop_body(body: IBodyProducer | None) -> None:
        """Stop a request body nobody will send (a producer may already have stopped)."""
        if body is None:
            return
        with suppress(Exception):  # a finished FileBodyProducer's task refuses a second stop
            body.stopProducing()

    def _release(self) -> None:
        """Back to the pool if the exchange ended cleanly, else closed."""
        if not self.connected:
            return
        self._body = None
        if self._reusable and not self._extra:
            if self._reading_paused:
                self.resumeProducing()
            self.served += 1
            self._method = b""
            self.pool.release(self)
        else:
            transport: Any = self.transport
            transport.loseConnection()

    # -- the response body as a push producer (a slow client pauses the upstream) ----------

    def pauseProducing(self) -> None:
        """Stop reading from the upstream."""
        self._reading_paused = True
        transport: Any = self.transport
        transport.pauseProducing()

    def resumeProducing(self) -> None:
        """Read from the upstream again."""
        self._reading_paused = False
        transport: Any = self.transport
        transport.resumeProducing()

    def stopProducing(self) -> None:
        """The response is not wanted any more: drop the connection."""
        self.abort()

    def cancel(self) -> None:
        """Give the request up before its head arrived (read timeout, client gone)."""
        if self._error is None:
            self._error = Failure(CancelledError())
        self.abort()

    def abort(self) -> None:
        """Drop the connection now (its handler hears of it in :meth:`connectionLost`)."""
        self._reusable = False
        transport: Any = self.transport
        if transport is not None and self.connected:
            transport.abortConnection()

    # -- the connection ---------------------------------------------------------------------

    def connectionMade(self) -> None:
        """Connected (for TLS: the handshake may still be under way)."""
        self.connected = True

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Tell the handler of a request in flight how it ended; leave the pool."""
        self.connected = False
        self.pool.lost(self)
        handler, self._handler = self._handler, None
        body, self._body = self._body, None
        if not self._request_done:
            self._stop_body(body)
        if handler is None:
            return
        failure = self._error or reason
        if not self._head_seen:
            handler.response_failed(self, failure)
        elif self._done:
            handler.response_end(None)
        elif not self._delimited and self._error is None:
            handler.response_end(None)  # a body delimited by the close of the connection
        else:
            handler.response_end(failure)
