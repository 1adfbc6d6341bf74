# twisted.web and its client are untyped; mypy strict would flag every call into them
# mypy: disable-error-code="no-untyped-call"
"""The gateway's ``Site``: connection hygiene around the dispatch resource.

:class:`GatewaySite` is what the HTTP listener serves and what the TLS / PROXY listeners wrap.
It adds what stock twisted.web lacks (ATK-14/15/18):

- a **header deadline** (:class:`~oauthproxy.serving.channel.StrictChannel`): a request head
  (request line and headers) must arrive within ``request_header_timeout`` seconds of its
  first byte (or of the connection / the previous response), or the client gets 408 and is
  disconnected — the stock idle timeout is reset by every byte, so it alone does not stop
  slowloris;
- an **idle timeout** of ``idle_timeout`` seconds between requests (twisted.web's ``timeOut``);
- **header limits**: ``max_header_bytes`` for request line plus headers and ``max_header_count``
  headers, enforced by the channel (400 and disconnect);
- a **body limit**: :class:`GatewayRequest` answers 413 as soon as ``Content-Length`` or the
  chunked body passes ``max_request_body``, and discards the rest without spooling it;
- **streamed request bodies**: an HTTP/1.1 request with a body is dispatched as soon as its
  head is complete and the body flows to the upstream with back-pressure
  (:mod:`oauthproxy.gateway.body`); an answer that starts before the body has been read closes
  the connection after it, so keep-alive never desynchronises (``channel``).  An HTTP/2
  request with a body is dispatched with its first DATA bytes (or its end) and streams the
  same way, its flow-control window as back-pressure (twisted.web sends its ``100 Continue``);
- **no access-log formatting** on the hot path unless an ``access_log`` hook is given.

Pipelined requests are answered in order by twisted.web itself (the channel buffers the next
request until the current one's body and answer are done); the tests pin that down.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from io import BytesIO
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.resource import IResource, getChildForRequest

from oauthproxy.config import Config
from oauthproxy.gateway.body import RequestBody, RequestBodyTooLarge
from oauthproxy.gateway.channel import GatewayChannel
from oauthproxy.requestlog.record import notes_for
from oauthproxy.serving.channel import raw_answer
from oauthproxy.serving.site import StrictSite

#: the Server header of our own answers (no version: nothing to fingerprint)
SERVER = b"oauthproxy"


def _is_h2_stream(channel: object) -> bool:
    """Whether ``channel`` is an HTTP/2 stream (twisted.web's ``H2Stream``)."""
    if not http.H2_ENABLED:
        return False
    from twisted.web._http2 import H2Stream

    return isinstance(channel, H2Stream)


_TOO_LARGE = raw_answer(b"413 Content Too Large", b"request body exceeds the limit.\r\n")


class GatewayRequest(server.Request):
    """A request with a body limit (413) whose body is streamed, never spooled.

    For requests with a body, :meth:`gotLength` makes a :class:`RequestBody`; the HTTP/1.1
    channel dispatches the request as soon as its head is complete (:meth:`dispatch`), an
    HTTP/2 request is dispatched with its first body bytes; chunks then flow through
    :attr:`body` to the upstream.
    """

    _received = 0
    _held_content_type: Sequence[bytes] | None = None
    too_large = False
    #: the streamed request body (HTTP/1.1 requests with one), else None
    body: RequestBody | None = None
    _max_body = 1 << 62
    _dispatched = False
    #: HTTP/2: the answer is complete, the stream ends when the request body does
    _finish_pending = False
    #: the channel of a streamed request (``self.channel`` is deleted once the answer is done)
    _gateway_channel: GatewayChannel | None = None
    #: (method, target, version) of an HTTP/1.1 chunked request dispatched with its first chunk
    _pending_head: tuple[bytes, bytes, bytes] | None = None

    def gotLength(self, length: int | None) -> None:
        """Refuse at once when ``Content-Length`` says too much; set up streaming or spooling."""
        channel = self.channel
        site = getattr(channel, "site", None)
        self._max_body = limit = getattr(site, "max_request_body", 1 << 62)
        if site is not None and getattr(site, "logs_requests", False):
            # the head is complete: the request log measures the duration from here
            notes_for(self).started = site.reactor.seconds()
        if length is not None and length > limit:
            self._refuse()
            self.content = BytesIO()  # stays empty: nothing of the body is kept
            return
        if length != 0:
            if isinstance(channel, GatewayChannel):
                self._gateway_channel = channel
                self.content = BytesIO()  # stays empty: the body goes to ``self.body``
                self.body = RequestBody(length, channel.transport, self._send_continue)
                return
            if _is_h2_stream(channel):
                # the stream's pause/resume hold back its flow-control window
                self.content = BytesIO()
                self.body = RequestBody(length, channel)
                # twisted.web's HTTP/2 cannot end a stream whose request is still arriving
                # (later DATA frames hit a stream it forgot): end it once the body is in
                self.finish = self._finish_after_body  # type: ignore[method-assign]
                return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        """Count the body as it arrives and pass it on (or spool it); past the limit, refuse."""
        if self.too_large:
            return
        body = self.body
        if body is not None and not self._dispatched:
            # dispatched with the first body bytes: an HTTP/1.1 chunked body once its first
            # chunk size passed the framing rules, HTTP/2 once the stream is registered
            head = self._pending_head
            if head is None:
                stream: Any = self.channel
                head = (stream.command, stream.path, b"HTTP/2")
            self.dispatch(*head)
        self._received += len(data)
        if self._received > self._max_body:
            self._refuse()
            return
        if body is None:
            super().handleContentChunk(data)
        else:
            body.feed(data)  # dropped if the answer is done (the body is stopped then)

    def _refuse(self) -> None:
        """Answer 413 and close, without waiting for (or storing) the rest of the body."""
        self.too_large = True
        notes = notes_for(self)
        notes.error = notes.error or f"request body over the limit ({self._max_body} bytes)"
        body = self.body
        if body is not None:
            self._refuse_streamed(body)
            return
        channel = self.channel
        if isinstance(channel, http.HTTPChannel):
            # HTTP/1.x: earlier pipelined requests are done (the channel parses one at a time),
            # so a raw answer is in order; the connection cannot be reused mid-body anyway.
            assert channel.transport is not None
            channel.transport.write(_TOO_LARGE)
            self._log_raw_answer(channel, 413)
            channel.loseConnection()
        # HTTP/2: the stream's body is discarded and process() answers 413 at its end.

    def _log_raw_answer(self, channel: http.HTTPChannel, code: int) -> None:
        """Hand a request answered below twisted.web (it never finishes) to the access log."""
        site = getattr(channel, "site", None)
        command = getattr(channel, "_command", None)
        if site is None or command is None:
            return
        self.method, self.uri, self.clientproto = command, channel._path, channel._version
        self.path = self.uri.split(b"?", 1)[0]
        self.code = code
        site.log(self)

    def _refuse_streamed(self, body: RequestBody) -> None:
        """A chunked body crossed the limit while it was being forwarded: stop everything.

        The upstream request fails (its connection is aborted, so it never sees a complete
        but truncated body); the client gets 413 if no answer has started, else an abort.
        """
        channel = self._gateway_channel
        # first abort the upstream request, so it never completes with a truncated body
        body.fail(Failure(RequestBodyTooLarge("request body exceeds the limit")))
        if self.finished or self._disconnected:
            if channel is not None:
                channel.close_now()  # an early answer is out already; we were dropping the rest
        elif self._finish_pending:
            stream: Any = self.channel
            stream.abortConnection()  # HTTP/2: the answer is out; stop the stream now
        elif not self.startedWriting:
            text = b"request body exceeds the limit.\r\n"
            self.setResponseCode(413)
            headers = self.responseHeaders
            headers.setRawHeaders(b"content-type", [b"text/plain; charset=utf-8"])
            headers.setRawHeaders(b"content-length", [b"%d" % len(text)])
            self.write(text)
            self.finish()  # the channel closes: the request is marked too large
        elif channel is not None:
            channel.closed = True
            transport: Any = channel.transport
            transport.abortConnection()
        else:
            h2_stream: Any = self.channel
            h2_stream.abortConnection()  # HTTP/2: this stream only

    def _finish_after_body(self) -> None:
        """HTTP/2 ``finish``: if the request body is still arriving, drop the rest and end the
        stream when it is complete (the answer itself is already written)."""
        body = self.body
        if body is None or body.complete or self._disconnected:
            server.Request.finish(self)
            return
        self._finish_pending = True
        body.stopProducing()

    def _send_continue(self) -> None:
        """``100 Continue``, sent when the upstream request starts (if no answer started)."""
        channel = self._gateway_channel
        if channel is None or channel.transport is None or self.startedWriting or self.finished:
            return
        channel.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def dispatch_with_first_chunk(self, command: bytes, path: bytes, version: bytes) -> None:
        """Dispatch when the first body bytes arrive (or the body ends), not now."""
        self._pending_head = (command, path, version)

    def dispatch(self, command: bytes, path: bytes, version: bytes) -> None:
        """Route and forward now, before the body (the channel calls this at the head's end)."""
        self._dispatched = True
        self._received_head(command, path, version)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """Keep twisted.web from parsing form bodies: the gateway only streams them on.

        Stock ``requestReceived`` reads a whole ``application/x-www-form-urlencoded`` or
        multipart POST body into memory to fill ``args`` (a 50 MB upload cost 64 MB of RAM and
        the CPU to parse it); hiding Content-Type for that call skips it, and
        :meth:`process` puts it back before anything renders.  For a streamed body that was
        dispatched already, the channel calling this means the body is complete.
        """
        body = self.body
        if body is not None:
            if not self._dispatched:
                if body.received == 0:
                    self.body = None  # HTTP/2 request that ended with its head: no body
                else:
                    self.dispatch(command, path, version)
            if self.body is not None:
                body.end()
                if self._finish_pending and not self._disconnected:
                    server.Request.finish(self)
                return
        if self.too_large and isinstance(self.channel, http.HTTPChannel):
            return  # answered with 413 already; the connection is closing
        self._received_head(command, path, version)

    def _received_head(self, command: bytes, path: bytes, version: bytes) -> None:
        """Stock ``requestReceived`` with Content-Type hidden (see :meth:`requestReceived`)."""
        self._held_content_type = self.requestHeaders.getRawHeaders(b"content-type")
        if self._held_content_type is not None:
            self.requestHeaders.removeHeader(b"content-type")
        super().requestReceived(command, path, version)

    def connectionLost(self, reason: Failure) -> None:
        """The client is gone: a body still on its way fails, so the upstream request aborts."""
        super().connectionLost(reason)
        body = self.body
        if body is not None and not body.complete:
            body.fail(reason)

    def process(self) -> None:
        """Restore Content-Type, then render (skipped for a refused body).

        Same as ``server.Request.process`` minus two per-request costs: the ``Date`` value is
        the site's, refreshed once a second, and ``Server`` does not advertise the Twisted
        version (an upstream's own ``Server``/``Date`` replace both).
        """
        held = self._held_content_type
        if held is not None:
            self.requestHeaders.setRawHeaders(b"content-type", held)
            self._held_content_type = None
        if self.too_large:
            if not isinstance(self.channel, http.HTTPChannel):
                self.setResponseCode(413)
                self.responseHeaders.setRawHeaders(b"content-type", [b"text/plain"])
                self.write(b"request body exceeds the limit.\r\n")
                self.finish()
            return
        site: GatewaySite = getattr(self.channel, "site")  # noqa: B009 (typed as HTTPChannel)
        self.site = site
        raw = self.responseHeaders._rawHeaders
        raw[b"Server"] = [SERVER]
        raw[b"Date"] = [site.date_header]
        self.prepath = []
        self.postpath = list(map(unquote_to_bytes, self.path[1:].split(b"/")))
        self.sitepath: list[bytes] = []
        try:
            self.render(getChildForRequest(site.resource, self))
        except BaseException:
            self.processingFailed(Failure())


class GatewaySite(StrictSite):
    """The gateway ``Site``: hand it the dispatch resource; wrap it in TLS / PROXY as needed."""

    requestFactory = GatewayRequest
    channel_class = GatewayChannel

    def __init__(
        self,
        resource: IResource,
        config: Config,
        reactor: Any,
        access_log: Callable[[http.Request], None] | None = None,
    ) -> None:
        super().__init__(resource, config, reactor)
        self.max_request_body = config.max_request_body
        self._access_log = access_log
        #: whether requests are logged (then they note their arrival time)
        self.logs_requests = access_log is not None
        self.date_header: bytes = http.datetimeToString(reactor.seconds())

    def _updateLogDateTime(self) -> None:
        """Twisted's once-a-second tick: refresh the ``Date`` header value with the log's."""
        self.date_header = http.datetimeToString(self.reactor.seconds())
        super()._updateLogDateTime()

    def log(self, request: http.Request) -> None:
        """Call the access-log hook, if any (no formatting otherwise)."""
        if self._access_log is not None:
            self._access_log(request)
