# twisted.web and its client are untyped; mypy strict would flag every call into them
# mypy: disable-error-code="no-untyped-call"
"""One forwarded exchange: its state, the response-body relay and the client-side answers.

:class:`~.forward.Forwarder` starts an :class:`Exchange` per client request and hands the
upstream response body to a :class:`Relay`, which streams it into the client request with
the upstream transport registered as the client's producer (a slow client pauses upstream
reads; :class:`UpstreamProducer` notes the pause so the read timeout does not blame the
upstream).  :func:`respond_error` and :func:`abort_client` are the two ways to end a
client request that went wrong: an answer while no head is out, an abort after.
:func:`upstream_error` names why an exchange failed, for the request log's ``error``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define
from OpenSSL import SSL
from twisted.internet import error as inet_error
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web._newclient import ResponseDone
from twisted.web.http import PotentialDataLoss, Request
from zope.interface import implementer

from oauthproxy.gateway.body import RequestBody
from oauthproxy.requestlog.record import notes_for


@define(eq=False)
class Exchange:
    """The state of one forwarded request: what to cancel when the client goes away."""

    request: Request
    read_timeout: float
    pending: Deferred[Any] | None = None
    body: Any = None  # the upstream response body transport, once streaming
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
            # also when "called": it may be paused on the inner request Deferred, which
            # cancel() then cancels; on a finished Deferred cancel() does nothing
            self.pending.cancel()
        if self.body is not None:
            self.body.stopProducing()


@implementer(IPushProducer)
class UpstreamProducer:
    """The upstream body transport as the client's producer, noting when we pause it."""

    def __init__(self, transport: Any, exchange: Exchange, clock: IReactorTime) -> None:
        self._transport = transport
        self._exchange = exchange
        self._clock = clock

    def pauseProducing(self) -> None:
        """The client is slow: stop reading the upstream (and stop its idle clock)."""
        self._exchange.paused = True
        self._transport.pauseProducing()

    def resumeProducing(self) -> None:
        """The client caught up: read on, with a fresh idle allowance."""
        self._exchange.paused = False
        self._exchange.touch(self._clock)
        self._transport.resumeProducing()

    def stopProducing(self) -> None:
        """The client is gone."""
        self._transport.stopProducing()


class Relay(Protocol):
    """Streams an upstream response body into the client request, with back-pressure."""

    def __init__(
        self, exchange: Exchange, clock: IReactorTime, done: Callable[[Exchange], None]
    ) -> None:
        """:param done: called when the upstream body ends (the forwarder stops watching)."""
        self.exchange = exchange
        self.clock = clock
        self.done = done

    def connectionMade(self) -> None:
        """Register the upstream transport as the producer: a slow client pauses the upstream."""
        exchange = self.exchange
        exchange.body = self.transport
        exchange.request.registerProducer(
            UpstreamProducer(self.transport, exchange, self.clock), True
        )

    def dataReceived(self, data: bytes) -> None:
        """Pass a chunk on unless the client is gone; the upstream is alive."""
        exchange = self.exchange
        if exchange.client_gone:
            transport: Any = self.transport
            transport.stopProducing()
        else:
            exchange.touch(self.clock)
            exchange.request.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Finish the client response, or abort it if the upstream body was cut short."""
        exchange = self.exchange
        exchange.body = None
        self.done(exchange)
        request = exchange.request
        if exchange.client_gone or request.finished:
            return
        request.unregisterProducer()
        body = exchange.request_body
        if body is not None and not body.sent:
            # answered before the request body was sent: the upstream gets no more of it
            body.stopProducing()
        if reason.check(ResponseDone, PotentialDataLoss):
            request.finish()
        else:
            note_error(request, "upstream cut the response short: " + upstream_error(reason))
            abort_client(request)


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


class Discard(Protocol):
    """Swallows a response body nobody will read; stops it at once."""

    def connectionMade(self) -> None:
        """Stop the upstream body: the client is gone."""
        transport: Any = self.transport
        transport.stopProducing()


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
    if isinstance(error, inet_error.ConnectError):
        return f"upstream connect failed: {error.osError or error}"[:200]
    return f"upstream failed: {type(error).__name__}"


def note_error(request: Request, error: str) -> None:
    """Record why the gateway failed ``request`` (the first reason wins)."""
    notes = notes_for(request)
    if notes.error is None:
        notes.error = error
