# twisted.web is untyped; mypy strict would flag every call into it
# mypy: disable-error-code="no-untyped-call"
"""The HTTP/1.1 channel every listener of the daemon uses: head deadline, framing, drain.

:class:`StrictChannel` is a ``twisted.web.http.HTTPChannel`` (built inside twisted.web's
generic wrapper, which still negotiates h2) that adds:

- the **head deadline** (ATK-18): a request head (request line and headers) must arrive
  within ``header_timeout`` seconds of its first byte, else 408 and disconnect; the
  stock idle timeout is reset by every byte, so it alone does not stop slowloris;
- **strict framing** (ATK-14/15): the rules of :mod:`oauthproxy.serving.framing` on the
  request line, line endings, ``Host`` and chunk sizes, and the head limits answered
  with 414 (request line) and 431 (header size and count) instead of silence; every
  refusal closes the connection, since the rest of the stream cannot be trusted;
- **draining** (graceful shutdown, :mod:`oauthproxy.serving.drain`): :meth:`drain`
  closes an idle kept-alive connection now, else lets the request in flight finish
  with ``Connection: close`` on its answer and closes after it; a request head that
  was arriving is still served, the same way.  A connection that has not sent its
  first request yet gets :data:`FIRST_REQUEST_GRACE` seconds for it: a balancer in TCP
  mode connects before it relays the client's request, so closing such a connection
  at once would lose a request nobody can retry safely.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import _ChunkedTransferDecoder, _MalformedChunkedDataError

from oauthproxy.serving import framing
from oauthproxy.serving.framing import FramingError


def raw_answer(status: bytes, text: bytes) -> bytes:
    """A complete HTTP/1.1 answer that closes the connection, written before any Request."""
    return (
        b"HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (status, len(text), text)
    )


_HEADER_TIMEOUT = raw_answer(b"408 Request Timeout", b"request head took too long.\r\n")
_REASONS = {
    400: b"400 Bad Request",
    413: b"413 Content Too Large",
    414: b"414 URI Too Long",
    431: b"431 Request Header Fields Too Large",
    501: b"501 Not Implemented",
}


def refusal(error: FramingError) -> bytes:
    """The answer to a request that breaks a framing rule (closes the connection)."""
    return raw_answer(_REASONS.get(error.status, _REASONS[400]), error.detail.encode() + b"\r\n")


class StrictChunkedDecoder(_ChunkedTransferDecoder):
    """twisted.web's chunked decoder, with :func:`framing.chunk_size` on every size line."""

    #: the largest chunk size accepted (the channel sets the body limit)
    max_size = 1 << 62

    def _dataReceived_CHUNK_LENGTH(self) -> bool:
        """Check the size line by our rules before twisted.web parses it."""
        end = self._buffer.find(b"\r\n", self._start)
        if end != -1:
            try:
                framing.chunk_size(bytes(self._buffer[:end]), self.max_size)
            except FramingError as error:
                raise _MalformedChunkedDataError(error.detail) from None
        elif b"\n" in self._buffer:
            raise _MalformedChunkedDataError("a chunk-size line ends in LF without CR")
        handled: bool = super()._dataReceived_CHUNK_LENGTH()
        return handled


#: seconds a new connection may take to send its first request once draining began
FIRST_REQUEST_GRACE = 1.0


class StrictChannel(http.HTTPChannel):
    """An HTTP/1.1 channel with a head deadline and a draining mode (see the module)."""

    header_timeout: float | None = None
    _head_deadline: IDelayedCall | None = None
    #: True while the next bytes belong to a request head (not a body, not a backlog)
    _in_head = True
    #: bytes of a request head have arrived, its end has not
    _head_started = False
    #: the daemon is shutting down: every answer closes the connection after it
    draining = False
    #: a framing rule was broken: nothing more is parsed or dispatched
    refused = False
    #: the last bytes of the head seen so far (a CRLF may be split between two packets)
    _head_tail = b""
    #: the body limit chunk sizes are checked against (the gateway sets it)
    max_body = 1 << 62
    #: requests answered on this connection
    _answered = 0
    _grace: IDelayedCall | None = None
    _grace_over = False
    #: whether the transport is TLS, once asked (it cannot change during a connection)
    _secure: bool | None = None

    def isSecure(self) -> bool:
        """Whether the connection is TLS: adapting the transport to ``ISSLTransport`` once
        per connection, not per request and caller (the gateway, the request log and the
        metrics all ask)."""
        secure = self._secure
        if secure is None:
            secure = self._secure = bool(super().isSecure())
        return secure

    def dataReceived(self, data: bytes) -> None:
        """Arm the head deadline on the first byte of a request head; refuse bare LFs."""
        if self._in_head and data:
            self._head_started = True
            if self._head_deadline is None and self.header_timeout:
                self._head_deadline = self.callLater(self.header_timeout, self._head_too_slow)
            # only the head: a body may hold any byte
            tail = self._head_tail
            seen = tail + data
            end = seen.find(b"\r\n\r\n")
            head = data if end == -1 else data[: max(0, end + 4 - len(tail))]
            try:
                framing.check_line_ending(tail, head)
            except FramingError as error:
                self.refuse(error)
                return
            self._head_tail = seen[-3:]
        super().dataReceived(data)

    def refuse(self, error: FramingError) -> None:
        """Answer a framing error and close; parse nothing more from this connection."""
        self.refused = True
        transport: Any = self.transport
        if transport is None or transport.disconnecting:
            return
        self.persistent = False
        if any(request.startedWriting for request in self.requests):
            # an answer is under way: nothing else can be said on this connection
            transport.abortConnection()
            return
        transport.write(refusal(error))
        self.loseConnection()

    def _respondToBadRequestAndDisconnect(self) -> None:
        """twisted.web's own refusals, with the status its checks mean (431 for the head's
        size and count) and answered like ours."""
        if self._receivedHeaderCount > self.maxHeaders:
            error = FramingError(431, f"more than {self.maxHeaders} request headers")
        elif self._receivedHeaderSize > self.totalHeadersSize:
            error = FramingError(431, f"the request head is over {self.totalHeadersSize} bytes")
        else:
            error = FramingError(400, "the request is malformed")
        self.refuse(error)

    def lineLengthExceeded(self, line: bytes) -> None:
        """A line longer than the head limit: 414 for the request line, else 431."""
        if not self.requests:  # in line mode, a head's Request exists from its first line on
            error = FramingError(414, f"the request line is over {self.totalHeadersSize} bytes")
        else:
            error = FramingError(431, f"the request head is over {self.totalHeadersSize} bytes")
        self.refuse(error)

    def _cancel_head_deadline(self) -> None:
        """Stop the head deadline (head complete, or connection gone)."""
        call, self._head_deadline = self._head_deadline, None
        if call is not None and call.active():
            call.cancel()

    def _head_too_slow(self) -> None:
        """408 and close: the client took too long to send a request head (slowloris)."""
        self._head_deadline = None
        if self.transport is None:
            return
        self.transport.write(_HEADER_TIMEOUT)
        # like timeoutConnection: a client that does not read cannot keep us waiting either
        if self.abortTimeout is not None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()

    def allHeadersReceived(self) -> None:
        """The head is complete: no deadline now; ``Host`` must be one valid host[:port]."""
        self._in_head = False
        self._head_started = False
        self._head_tail = b""
        self._cancel_head_deadline()
        hosts = self.requests[-1].requestHeaders.getRawHeaders(b"host") or []
        try:
            # twisted.web checked the line's form already; the rest of our rules here
            framing.check_request(self._command, self._path, self._version)
            if len(hosts) > 1:
                raise FramingError(400, "more than one Host header")
            if hosts:
                framing.check_host(hosts[0])
            elif self._version == b"HTTP/1.1":
                raise FramingError(400, "HTTP/1.1 requires a Host header")
        except FramingError as error:
            self.refuse(error)
            return
        decoder = self._transferDecoder
        # (names bound at import: twisted.web.http is a deprecation proxy, slow per access)
        if type(decoder) is _ChunkedTransferDecoder:
            strict = StrictChunkedDecoder(decoder.dataCallback, decoder.finishCallback)
            strict.max_size = self.max_body
            self._transferDecoder = strict
        super().allHeadersReceived()

    def allContentReceived(self) -> None:
        """Nothing is processed once refused."""
        if self.refused:
            return
        super().allContentReceived()

    def checkPersistence(self, request: Any, version: bytes) -> bool:
        """Stock keep-alive rules, except that a draining channel keeps nothing alive."""
        if self.draining:
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
            return False
        persistent: bool = super().checkPersistence(request, version)
        return persistent

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        """Write a response head; while draining it says ``Connection: close``."""
        if self.draining:
            headers.setRawHeaders(b"connection", [b"close"])
        super().writeHeaders(version, code, reason, headers)

    def requestDone(self, request: http.Request) -> None:
        """After each response the next bytes start a new head."""
        self._in_head = True
        self._answered += 1
        super().requestDone(request)

    @property
    def idle(self) -> bool:
        """No request in flight and no head arriving: closing now loses nothing."""
        return not self.requests and not self._head_started

    def drain(self) -> bool:
        """Close once idle (now if it is): whether the connection is closing already."""
        first = not self.draining
        self.draining = True
        if self.idle:
            if self._answered or self._grace_over:
                self.loseConnection()
                return True
            if first:
                self._grace = self.callLater(FIRST_REQUEST_GRACE, self._end_grace)
            return False
        if self.requests:
            # the answer in flight closes the connection (a head still arriving is not
            # touched: stock twisted.web would drop it; ``checkPersistence`` closes it)
            self.persistent = False
        return False

    def _end_grace(self) -> None:
        """A new connection had its chance to send a request while draining."""
        self._grace = None
        self._grace_over = True
        if self.idle:
            self.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """No timer outlives the connection."""
        self._cancel_head_deadline()
        grace, self._grace = self._grace, None
        if grace is not None and grace.active():
            grace.cancel()
        super().connectionLost(reason)
