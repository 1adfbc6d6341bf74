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

It also costs less per request than the stock channel: a request head that arrives whole
in one read (the usual case) is parsed in one go instead of line by line, without a head
deadline to arm and cancel, and a response head is written as one string; anything
unusual is left to twisted.web's line parser, which answers it as it always did.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import (
    _ChunkedTransferDecoder,
    _MalformedChunkedDataError,
    _parseRequestLine,
)
from twisted.web.http_headers import Headers, InvalidHeaderName, _nameEncoder
from twisted.web.iweb import INonQueuedRequestFactory

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


#: the headers that choose how a request body is framed
_FRAMING_HEADERS = frozenset({b"Content-Length", b"Transfer-Encoding"})


def _headers(lines: list[bytes]) -> list[tuple[bytes, bytes]] | None:
    """The header lines of a head (after its request line) as canonical names and values,
    None if one of them is not ``name ":" value`` with a token for a name (twisted.web's
    ``headerReceived`` refuses those; the values hold no CR, LF or NUL, checked before)."""
    encode = _nameEncoder.encode
    headers = []
    for index in range(1, len(lines)):
        name, colon, value = lines[index].partition(b":")
        if not colon:
            return None
        try:
            headers.append((encode(name), value.strip(b" \t")))
        except InvalidHeaderName:
            return None
    return headers


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
    #: the last Host value that passed :func:`framing.check_host` on this connection
    _valid_host: bytes | None = None
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
        """Take whole heads at once; else arm the head deadline on the first byte of a
        request head, refuse bare LFs and parse line by line."""
        while self._in_head and data and self._at_head_start():
            rest = self._take_head(data)
            if rest is None:
                break  # not a plain whole head: the line-by-line parser decides
            transport: Any = self.transport
            if not rest or transport is None or transport.disconnecting:
                return  # (like LineReceiver: nothing is parsed once the connection closes)
            data = rest
        if self._in_head and data and not self._head_bytes(data):
            return
        super().dataReceived(data)

    def _head_bytes(self, data: bytes) -> bool:
        """Bytes of a request head arrived: arm its deadline, refuse a bare LF in it (then
        False)."""
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
            return False
        self._head_tail = seen[-3:]
        return True

    def _at_head_start(self) -> bool:
        """Whether the next byte starts a request head, nothing of it buffered or pending."""
        return bool(
            self.line_mode
            and not self._buffer
            and not self._busyReceiving
            and self._HTTPChannel__first_line == 1
            and self.persistent
            and not self.refused
            and not self._handlingRequest
        )

    def _take_head(self, data: bytes) -> bytes | None:
        """Parse a request head that ``data`` holds whole, in one go: what follows it.

        This is twisted.web's ``lineReceived`` and ``headerReceived`` for the common head
        (one chunk, CRLF line ends, no folded lines, well-formed headers, within the
        limits), without a call per line and without a head deadline (the head is
        complete now); header values go straight into the request's ``Headers`` (checked
        free of CR, LF and NUL here, so ``addRawHeader``'s sanitising changes nothing).
        Anything else is left to the line-by-line parser (None), which answers every
        irregular head as it always did; the checks and callbacks here are the ones it
        makes, in its order.
        """
        end = data.find(b"\r\n\r\n")
        if end <= 0 or end >= self._whole_head_limit or data.startswith(b"\r\n"):
            return None
        head = data[:end]
        crlf = head.count(b"\r\n")
        if head.count(b"\n") != crlf or head.count(b"\r") != crlf or b"\x00" in head:
            return None  # a bare LF or CR, or a NUL: the line parser refuses it
        if b"\r\n " in head or b"\r\n\t" in head or crlf > self.maxHeaders:
            return None  # obs-fold, or 431 from the line parser
        lines = head.split(b"\r\n")
        headers = _headers(lines)
        if headers is None:
            return None
        self.resetTimeout()
        self._receivedHeaderSize = end - 2 * (len(lines) - 1)
        factory = self.requestFactory
        if INonQueuedRequestFactory.providedBy(factory):
            request = factory(self)
        else:
            request = factory(self, len(self.requests))
        self.requests.append(request)
        self._HTTPChannel__first_line = 0
        try:
            command, path, version = _parseRequestLine(lines[0])
        except ValueError:
            self._respondToBadRequestAndDisconnect()
            return b""
        self._command = command
        self._path = path
        self._version = version
        # twisted.web's headerReceived for each (its checks passed in _headers)
        raw = request.requestHeaders._rawHeaders
        for name, value in headers:
            if name in _FRAMING_HEADERS and not self._maybeChooseTransferDecoder(name, value):
                return b""
            values = raw.get(name)
            if values is None:
                raw[name] = [value]
            else:
                values.append(value)
        self._receivedHeaderCount = len(headers)
        self.allHeadersReceived()
        if self.length == 0:
            self.allContentReceived()
        else:
            self.setRawMode()
        return data[end + 4 :]

    @property
    def _whole_head_limit(self) -> int:
        """Heads this long or longer are parsed line by line (it answers 414 and 431)."""
        return min(self.MAX_LENGTH, self.totalHeadersSize)

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
                host = hosts[0]
                if host != self._valid_host:  # a kept-alive client sends the same one
                    framing.check_host(host)
                    self._valid_host = host
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
        if type(headers) is not Headers:
            super().writeHeaders(version, code, reason, headers)
            return
        # one write of one string: twisted.web's writeSequence of four pieces per header
        # costs a call and a type check per piece (names are canonical and values
        # sanitized when they are set, as twisted.web relies on too)
        lines = [b"%s %s %s" % (version, code, reason)]
        for name, values in headers._rawHeaders.items():
            if len(values) == 1:
                lines.append(name + b": " + values[0])
            else:
                lines.extend([name + b": " + value for value in values])
        lines.append(b"\r\n")
        transport: Any = self.transport
        transport.write(b"\r\n".join(lines))

    def requestDone(self, request: http.Request) -> None:
        """After each response the next bytes start a new head.

        An answer given while its head was being parsed (a synchronous one) leaves the
        rest of that read in the line parser's buffer, which goes on with it: those bytes
        start the next head and are checked like any that arrive later.
        """
        self._in_head = True
        self._answered += 1
        super().requestDone(request)
        pending = self._buffer
        if pending and self._busyReceiving and self.line_mode and self.persistent:
            self._head_bytes(pending)

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
