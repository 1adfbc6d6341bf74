# twisted.web is untyped; mypy strict would flag every call into it
# mypy: disable-error-code="no-untyped-call"
"""The HTTP/1.1 channel every listener of the daemon uses: head deadline and drain.

:class:`StrictChannel` is a ``twisted.web.http.HTTPChannel`` (built inside twisted.web's
generic wrapper, which still negotiates h2) that adds:

- the **head deadline** (ATK-18): a request head (request line and headers) must arrive
  within ``header_timeout`` seconds of its first byte, else 408 and disconnect; the
  stock idle timeout is reset by every byte, so it alone does not stop slowloris;
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


def raw_answer(status: bytes, text: bytes) -> bytes:
    """A complete HTTP/1.1 answer that closes the connection, written before any Request."""
    return (
        b"HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (status, len(text), text)
    )


_HEADER_TIMEOUT = raw_answer(b"408 Request Timeout", b"request head took too long.\r\n")

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
    #: requests answered on this connection
    _answered = 0
    _grace: IDelayedCall | None = None
    _grace_over = False

    def dataReceived(self, data: bytes) -> None:
        """Arm the head deadline on the first byte of a request head."""
        if self._in_head and data:
            self._head_started = True
            if self._head_deadline is None and self.header_timeout:
                self._head_deadline = self.callLater(self.header_timeout, self._head_too_slow)
        super().dataReceived(data)

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
        """The head is complete: no deadline now."""
        self._in_head = False
        self._head_started = False
        self._cancel_head_deadline()
        super().allHeadersReceived()

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
