# twisted.web and its client are untyped; mypy strict would flag every call into them
# mypy: disable-error-code="no-untyped-call"
"""One forwarded exchange: its state, the response relay and the client-side answers.

:class:`~.forward.Forwarder` starts an :class:`Exchange` per client request and sends it
on an :class:`~.upstream_client.UpstreamConnection`, which reports the response to the
exchange: the head is copied into the client request
(:func:`~.headers.relay_response_headers`), the body streams through with the upstream
connection registered as the client's producer (a slow client pauses upstream reads;
:class:`UpstreamProducer` notes the pause so the read timeout does not blame the upstream).
:func:`respond_error` and :func:`abort_client` are the two ways to end a client request
that went wrong: an answer while no head is out, an abort after.  :func:`upstream_error`
names why an exchange failed, for the request log's ``error``.
"""

from __future__ import annotations

from typing import Any

from attrs import define
from OpenSSL import SSL
from twisted.internet import error as inet_error
from twisted.internet.defer import CancelledError, TimeoutError
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.python.failure import Failure
from twisted.web.http import Request
from zope.interface import implementer

from oauthproxy.gateway.body import RequestBody
from oauthproxy.gateway.headers import HOP_BY_HOP, relay_response_headers
from oauthproxy.gateway.upstream_client import UpstreamProtocolError
from oauthproxy.requestlog.record import notes_for


@define(eq=False)
class Exchange:
    """One forwarded request: its state, and the handler of its upstream response.

    The upstream connection reports the response here (:class:`~.upstream_client.
    ResponseHandler`): the head is copied into the client request, body chunks are
    written through, and the end finishes (or aborts) the client's answer.  A request
    that gets no response head goes back to the forwarder (:meth:`~.forward.Forwarder.
    failed`), which retries it or answers 502/504.
    """

    request: Request
    read_timeout: float
    #: the forwarder (its clock, read-timeout sweep and failure answers)
    forwarder: Any = None
    #: the routing decision (path, proxy settings) and the headers sent upstream
    decision: Any = None
    headers: Any = None
    #: what to cancel while no response head is in: the connect Deferred, or the connection
    pending: Any = None
    #: the upstream connection while its response body streams (paused, stopped through it)
    body: Any = None
    client_gone: bool = False
    timed_out: bool = False
    #: when the upstream is overdue: response head, then the next body chunk
    deadline: float = 0.0
    #: the client is slow and we paused the upstream: not the upstream's fault
    paused: bool = False
    #: the streamed request body, while it is being sent
    request_body: RequestBody | None = None
    #: the upstream's answer head was relayed (early answers arrive before the request ends)
    answered: bool = False
    #: when the request went to the upstream (its response time is measured from here)
    sent_at: float = 0.0
    #: the request was retried on a new connection once already
    retried: bool = False

    def sending(self) -> bool:
        """Whether the request body is still on its way and the upstream keeps taking it.

        The response-head clock does not run then: a long upload is not a silent upstream.
        An upstream that stops taking the body (it paused us) is on the clock.
        """
        body = self.request_body
        return (
            body is not None
            and not (body.sent or body.stopped or body.upstream_paused)
            and body.failure is None
        )

    def touch(self, clock: IReactorTime) -> None:
        """The upstream made progress: a fresh ``read_timeout`` allowance."""
        self.deadline = clock.seconds() + self.read_timeout

    def on_client_gone(self, _reason: Failure) -> None:
        """Cancel the upstream request, or stop the upstream body mid-stream."""
        self.client_gone = True
        if self.pending is not None:
            self.pending.cancel()
        if self.body is not None:
            self.body.stopProducing()

    # -- the upstream response (ResponseHandler) -------------------------------------------

    def response_head(
        self,
        connection: Any,
        code: int,
        phrase: bytes,
        headers: list[tuple[bytes, bytes]],
        length: int | None,
    ) -> None:
        """Copy status and headers, send the head; body chunks follow."""
        self.answered = True
        self.pending = None
        request = self.request
        forwarder = self.forwarder
        clock = forwarder.reactor
        notes_for(request).upstream_seconds = clock.seconds() - self.sent_at
        if self.client_gone or request.finished:
            forwarder.unwatch(self)
            connection.stopProducing()  # nobody reads it
            return
        self.touch(clock)
        self.body = connection
        request.setResponseCode(code, phrase)
        out = request.responseHeaders
        head_request = request.method == b"HEAD"
        relay_response_headers(
            headers,
            out,
            self.decision.proxy.custom_response_headers,
            _NOT_RELAYED_HEAD if head_request else _NOT_RELAYED,
        )
        # Content-Length is restored last so the body is not re-chunked (HEAD, 204 and 304
        # answers have no body to measure; a HEAD answer's own Content-Length was copied)
        if length is not None and not head_request and code not in _NO_BODY:
            out.setRawHeaders(b"content-length", [b"%d" % length])
        # send the head now: a stream whose first bytes come later (SSE, long polls) shows
        # its status at once; in the common case head and body still leave in one write
        request.write(b"")
        request.registerProducer(UpstreamProducer(connection, self, clock), True)

    def response_body(self, data: bytes) -> None:
        """Pass a chunk on unless the client is gone; the upstream is alive."""
        if self.client_gone:
            if self.body is not None:
                self.body.stopProducing()
            return
        self.deadline = self.forwarder.reactor.seconds() + self.read_timeout
        self.request.write(data)

    def response_end(self, failure: Failure | None) -> None:
        """Finish the client response, or abort it if the upstream body was cut short."""
        self.body = None
        self.forwarder.unwatch(self)
        request = self.request
        if self.client_gone or request.finished:
            return
        request.unregisterProducer()
        body = self.request_body
        if body is not None and not body.sent:
            # answered before the request body was sent: the upstream gets no more of it
            body.stopProducing()
        if failure is None:
            request.finish()
        else:
            note_error(request, "upstream cut the response short: " + upstream_error(failure))
            abort_client(request)

    def response_failed(self, connection: Any, failure: Failure) -> None:
        """No response head: the forwarder retries, or answers 502/504."""
        self.forwarder.failed(self, failure, connection.retryable)


#: statuses that never carry a body, so never a Content-Length of ours
_NO_BODY = frozenset({204, 304})
#: response headers twisted.web's client kept apart as connection control (never relayed);
#: ``Content-Length`` is relayed as sent for HEAD answers, restored from the length otherwise
_CONTROL = frozenset(
    {
        b"content-length",
        b"connection",
        b"keep-alive",
        b"te",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
    }
)
_NOT_RELAYED = HOP_BY_HOP | _CONTROL
#: a HEAD answer's Content-Length describes the body a GET would get: relayed as sent
_NOT_RELAYED_HEAD = _NOT_RELAYED - {b"content-length"}


@implementer(IPushProducer)
class UpstreamProducer:
    """The upstream connection as the client's producer, noting when we pause it."""

    def __init__(self, connection: Any, exchange: Exchange, clock: IReactorTime) -> None:
        self._connection = connection
        self._exchange = exchange
        self._clock = clock

    def pauseProducing(self) -> None:
        """The client is slow: stop reading the upstream (and stop its idle clock)."""
        self._exchange.paused = True
        self._connection.pauseProducing()

    def resumeProducing(self) -> None:
        """The client caught up: read on, with a fresh idle allowance."""
        self._exchange.paused = False
        self._exchange.touch(self._clock)
        self._connection.resumeProducing()

    def stopProducing(self) -> None:
        """The client is gone."""
        self._connection.stopProducing()


def abort_client(request: Request) -> None:
    """Abort the client's stream (HTTP/2: this stream only; HTTP/1: the connection).

    twisted.web logs a request when it finishes, which an aborted one never does: it
    is handed to the site's access log here, so the request log keeps it (and why).
    """
    site = getattr(request, "site", None)
    if site is not None and not request.finished:
        site.log(request)
    channel = request.channel
    abort = getattr(channel, "abortConnection", None)
    if abort is not None:
        abort()
    elif channel is not None and channel.transport is not None:
        transport: Any = channel.transport
        transport.abortConnection()


def respond_error(request: Request, code: int, text: bytes) -> None:
    """A short plain-text error answer, if the client is still there."""
    if request.finished or request.startedWriting:
        return
    request.setResponseCode(code)
    request.responseHeaders.setRawHeaders(b"content-type", [b"text/plain; charset=utf-8"])
    request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % len(text)])
    request.write(text)
    request.finish()


def upstream_error(failure: Failure) -> str:
    """Why an upstream exchange failed, in a few words (the request log's ``error``).

    twisted.web's client wraps the real reasons (``ResponseNeverReceived`` and the like
    carry ``reasons``); the first one is the cause.
    """
    reasons = getattr(failure.value, "reasons", None)
    if reasons and isinstance(reasons[0], Failure):
        return upstream_error(reasons[0])
    error = failure.value
    if isinstance(error, inet_error.ConnectionRefusedError):
        return "upstream refused the connection"
    if isinstance(error, inet_error.DNSLookupError):
        return "upstream name did not resolve"
    if isinstance(error, inet_error.TimeoutError | TimeoutError | CancelledError):
        return "upstream connect timed out"
    if isinstance(error, SSL.Error):
        return "upstream TLS error"
    if isinstance(error, inet_error.ConnectionDone | inet_error.ConnectionLost):
        return "upstream reset the connection"
    if isinstance(error, UpstreamProtocolError):
        return f"upstream broke HTTP: {error}"[:200]
    if isinstance(error, inet_error.ConnectError):
        return f"upstream connect failed: {error.osError or error}"[:200]
    return f"upstream failed: {type(error).__name__}"


def note_error(request: Request, error: str) -> None:
    """Record why the gateway failed ``request`` (the first reason wins)."""
    notes = notes_for(request)
    if notes.error is None:
        notes.error = error
