# twisted.web is untyped; mypy strict would flag every call into it
# mypy: disable-error-code="no-untyped-call"
"""The gateway's HTTP/1.1 channel: early dispatch of requests with a body.

:class:`GatewayChannel` is the channel that :class:`~oauthproxy.gateway.site.GatewaySite`
builds (inside twisted.web's generic wrapper, which still negotiates h2).  On top of
:class:`~oauthproxy.serving.channel.StrictChannel` (head deadline, drain) it adds:

- **early dispatch**: a request with a body is handed to the resource when its head is
  complete, and its body streams (:mod:`oauthproxy.gateway.body`);
- **no keep-alive desync**: an answer that starts before the body has been read says
  ``Connection: close``; an answer that ends first makes the channel read and drop the rest for
  up to :data:`LINGER_SECONDS` (so the client is not reset before it reads the answer), then
  close.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http

from oauthproxy.serving.channel import StrictChannel

if TYPE_CHECKING:
    from oauthproxy.gateway.site import GatewayRequest

#: seconds we keep reading (and dropping) a request body after an early answer, then close
LINGER_SECONDS = 5.0


class GatewayChannel(StrictChannel):
    """An HTTP/1.1 channel with early dispatch of requests with a body.

    A request with a body is handed to the resource when its head is complete; its body then
    streams (:class:`~oauthproxy.gateway.body.RequestBody`).  If the answer starts before the
    body has been read, it says ``Connection: close`` (the connection cannot be reused without
    reading the rest); if the answer ends first, the rest of the body is read and dropped for
    up to :data:`LINGER_SECONDS` before closing, so the client is not reset before it reads
    the answer.  Pipelining is unchanged: the next request is parsed only after the body and
    the answer of this one.
    """

    #: the request whose streamed body is still arriving
    _body_request: GatewayRequest | None = None
    #: the answer is done, the body is not: dropping the rest before closing
    _lingering = False
    _linger_call: IDelayedCall | None = None
    #: the connection is closing: parse nothing more
    closed = False

    def allHeadersReceived(self) -> None:
        """The head is complete: a request with a body is dispatched now.

        A chunked body is dispatched with its first chunk instead, once the first
        chunk size passed the framing rules: a malformed one is refused before
        anything of the request reaches the upstream.
        """
        super().allHeadersReceived()
        if self.refused or self.length == 0:
            return
        request: GatewayRequest = self.requests[-1]
        if request.body is not None and not request.too_large:
            self._body_request = request
            # only while a body streams (the hot path keeps the stock writeHeaders)
            self.writeHeaders = self._write_headers_closing  # type: ignore[method-assign]
            head = (self._command, self._path, self._version)
            if self.length is None:
                request.dispatch_with_first_chunk(*head)
                if request.body.expect_continue:
                    # the client waits for 100 before its first chunk, which we wait for
                    request.body.expect_continue = False
                    super()._send100Continue()
            else:
                request.dispatch(*head)

    def _send100Continue(self) -> None:
        """Streamed bodies get ``100 Continue`` when forwarding starts; refused ones never."""
        request: GatewayRequest = self.requests[-1]
        if request.body is not None:
            request.body.expect_continue = True
        elif not request.too_large:
            super()._send100Continue()

    def allContentReceived(self) -> None:
        """The body is complete: end the streamed body, or close after an early answer."""
        if self.closed:
            return
        if self._lingering:
            self.close_now()
            return
        self._body_request = None
        self.__dict__.pop("writeHeaders", None)
        super().allContentReceived()

    def _write_headers_closing(
        self, version: bytes, code: bytes, reason: bytes, headers: Any
    ) -> None:
        """``writeHeaders`` while a body streams: an answer before its end closes after it."""
        self.persistent = False
        headers.setRawHeaders(b"connection", [b"close"])
        super().writeHeaders(version, code, reason, headers)

    def requestDone(self, request: http.Request) -> None:
        """After each response the next bytes start a new head (or, mid-body, we close)."""
        body_request = self._body_request
        if body_request is None:
            super().requestDone(request)
            return
        self._in_head = True
        # the answer is done before the request body: nothing after it can be parsed
        del self.requests[0]
        body = body_request.body
        assert body is not None
        body.stopProducing()  # the upstream gets no more of it; the rest is read and dropped
        if body_request.too_large or self.transport is None:
            self.close_now()
            return
        self._lingering = True
        self._linger_call = self.callLater(LINGER_SECONDS, self.close_now)

    def close_now(self) -> None:
        """Stop lingering and close the connection."""
        self._lingering = False
        self._body_request = None
        self.__dict__.pop("writeHeaders", None)
        call, self._linger_call = self._linger_call, None
        if call is not None and call.active():
            call.cancel()
        if not self.closed:
            self.closed = True
            self.loseConnection()

    @property
    def idle(self) -> bool:
        """Idle, and not reading the rest of a body after an early answer."""
        return super().idle and not self._lingering and self._body_request is None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """No timer outlives the connection."""
        call, self._linger_call = self._linger_call, None
        if call is not None and call.active():
            call.cancel()
        super().connectionLost(reason)
