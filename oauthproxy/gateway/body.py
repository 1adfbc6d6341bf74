"""A request body streamed to the upstream while the client still sends it (HTTP/1.1).

:class:`RequestBody` sits between the client connection (twisted.web's body decoder calls
:meth:`RequestBody.feed` and :meth:`RequestBody.end`) and the upstream request (it is the
``IBodyProducer`` of the client request the forwarder writes).  Nothing is spooled:

- chunks go straight to the upstream consumer while it accepts them;
- when the upstream transport's buffer is full it pauses us; chunks then wait here, and once
  :data:`HIGH_WATER` bytes wait we pause reading from the client (its TCP window closes, its
  send stalls); when the upstream drains and fewer than :data:`LOW_WATER` bytes wait, reading
  resumes.  So a slow upstream costs at most ``HIGH_WATER`` plus one socket read of memory;
- ``Expect: 100-continue`` is answered only when the upstream request actually starts
  (:meth:`startProducing`), through the ``send_continue`` callback;
- the client going away or sending too much (:meth:`fail`) fails the producer's Deferred, so
  the HTTP client aborts the upstream request instead of completing a truncated one; once the
  upstream stops wanting the body (:meth:`stopProducing`: its answer is complete or its
  connection is gone) the rest is discarded and the Deferred never fires (as
  ``IBodyProducer`` requires).

HTTP/2 requests use it too: there ``transport`` is the ``H2Stream``, whose pause and resume
hold back the stream's flow-control window, so a slow upstream stops the client by HTTP/2 flow
control.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IConsumer
from twisted.python.failure import Failure
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from oauthproxy.errors import InvalidInput

#: bytes waiting for a paused upstream before we stop reading the client
HIGH_WATER = 64 * 1024
#: bytes waiting below which reading the client resumes
LOW_WATER = 16 * 1024


class RequestBodyTooLarge(InvalidInput):
    """A request body went past ``max_request_body`` while it was being forwarded."""

    code = "request_body_too_large"


@implementer(IBodyProducer)
class RequestBody:
    """One request body on its way from the client to the upstream (see the module docstring).

    ``length`` is the client's ``Content-Length`` (None for chunked: the upstream request is
    then chunked too); ``transport`` is the client connection's transport (paused and resumed
    for back-pressure); ``send_continue`` writes the interim ``100 Continue``.
    """

    def __init__(
        self,
        length: int | None,
        transport: Any,
        send_continue: Callable[[], None] | None = None,
    ) -> None:
        self.length: int | str = UNKNOWN_LENGTH if length is None else length
        self._transport = transport
        self._send_continue = send_continue
        self._chunks: deque[bytes] = deque()
        self.buffered = 0
        self._consumer: IConsumer | None = None
        self._done: Deferred[None] | None = None
        #: the upstream's transport asked us to wait
        self.upstream_paused = False
        #: we stopped reading the client
        self.client_paused = False
        #: the client sent its whole body
        self.complete = False
        #: the whole body went to the upstream (the producer's Deferred fired)
        self.sent = False
        #: the upstream no longer wants the body (stopProducing)
        self.stopped = False
        #: why the body failed (client gone, too large), if it did
        self.failure: Failure | None = None
        #: the client asked for ``100 Continue`` (answered when the upstream request starts)
        self.expect_continue = False
        #: called when the upstream makes progress (resumes, or has the whole body)
        self.on_progress: Callable[[], None] | None = None
        #: bytes received from the client / handed to the upstream (for tests and logs)
        self.received = 0
        self.forwarded = 0

    # -- the client side ---------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """A chunk of the client's body: pass it on, or hold it and maybe pause the client."""
        self.received += len(data)
        if self.stopped or self.failure is not None:
            return  # nobody wants it: discard
        consumer = self._consumer
        if consumer is not None and not self.upstream_paused and not self._chunks:
            self.forwarded += len(data)
            consumer.write(data)
            return
        self._chunks.append(data)
        self.buffered += len(data)
        if self.buffered > HIGH_WATER and not self.client_paused:
            self.client_paused = True
            self._transport.pauseProducing()

    def end(self) -> None:
        """The client's body is complete."""
        self.complete = True
        self._flush()

    def fail(self, reason: Failure) -> None:
        """The body cannot complete (client gone, over the limit): fail the upstream request."""
        if self.failure is not None or self.sent:
            return
        self.failure = reason
        self._chunks.clear()
        self.buffered = 0
        done, self._done = self._done, None
        if done is not None and not self.stopped:
            done.errback(reason)

    # -- the upstream side (IBodyProducer) -----------------------------------------------

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        """The upstream request is written: send what we hold and stream the rest."""
        if self.failure is not None:
            return fail(self.failure)
        self._consumer = consumer
        self._done = Deferred(self._cancelled)
        if self.expect_continue and self._send_continue is not None:
            self.expect_continue = False
            self._send_continue()
        done = self._done
        self._flush()
        return done

    def _cancelled(self, _d: Deferred[None]) -> None:
        """The upstream request was cancelled (timeout, client gone): stop, discard the rest."""
        self._done = None
        self.stopProducing()

    def pauseProducing(self) -> None:
        """The upstream's transport buffer is full: hold chunks here."""
        self.upstream_paused = True

    def resumeProducing(self) -> None:
        """The upstream drained: send what waits, maybe read the client again."""
        self.upstream_paused = False
        if self.on_progress is not None:
            self.on_progress()
        self._flush()

    def stopProducing(self) -> None:
        """The upstream no longer wants the body: discard it; read (and drop) the rest."""
        self.stopped = True
        self._done = None
        self._chunks.clear()
        self.buffered = 0
        self._resume_client()

    # -- internals ------------------------------------------------------------------------

    def _flush(self) -> None:
        """Write held chunks while the upstream accepts them; finish when all is sent."""
        consumer = self._consumer
        if consumer is None or self.stopped or self.failure is not None:
            return
        chunks = self._chunks
        while chunks and not self.upstream_paused:
            data = chunks.popleft()
            self.buffered -= len(data)
            self.forwarded += len(data)
            consumer.write(data)
        if self.buffered <= LOW_WATER and not self.complete:
            self._resume_client()
        if self.complete and not chunks and not self.sent:
            done, self._done = self._done, None
            if done is not None:
                self.sent = True
                if self.on_progress is not None:
                    self.on_progress()
                done.callback(None)

    def _resume_client(self) -> None:
        """Read the client again if we had paused it."""
        if self.client_paused:
            self.client_paused = False
            self._transport.resumeProducing()
