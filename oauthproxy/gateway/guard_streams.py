"""What the guard does to long requests: cut them when their token ends, collect bodies.

:class:`StreamCloser` ends a request whose OAuth token expires or is revoked while it
runs (ATK-27): one still waiting for its upstream's answer gets a clean 401 (the
connection stays usable, like for the next request with that token); one whose answer
has started (a streamed response, a WebSocket tunnel) is aborted, which cuts this stream
only on HTTP/2 and the connection on HTTP/1.1, where the connection is the stream.
:class:`BodyCollector` reads a streamed request body (the gateway streams bodies instead
of spooling them) for the authorization server, which reads ``request.content``, up to
:data:`MAX_AUTH_BODY`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from attrs import define, field
from twisted.internet.interfaces import IConsumer, IDelayedCall, IReactorTime
from twisted.web.server import Request
from zope.interface import implementer

#: answers a request whose token ended before its answer started: ``refuse(request, why)``
Refusal = Callable[[Request, str], None]


@define(eq=False)
class _Watched:
    """One admitted request whose token bounds its life."""

    request: Request
    jti: str
    refuse: Refusal | None = None
    timer: IDelayedCall | None = None


def abort_request(request: Request) -> None:
    """Abort a response or tunnel mid-way (HTTP/2: the stream; HTTP/1: the connection)."""
    channel = request.channel
    abort = getattr(channel, "abortConnection", None)
    if abort is not None:
        abort()
        return
    transport = getattr(channel, "transport", None)
    if transport is not None:
        transport.abortConnection()


def _upgrading(request: Request) -> bool:
    """Whether ``request`` asked for a protocol switch (a tunnel in the making is cut)."""
    return bool(request.requestHeaders.hasHeader(b"upgrade"))


@define(eq=False)
class StreamCloser:
    """Ends requests still running when their token expires or is revoked (ATK-27).

    Every OAuth-admitted request is watched until it finishes: a timer fires at the
    token's ``exp``, and :meth:`revoked` ends those whose ``jti`` was revoked, and only
    those.  A request whose answer has not started is answered by its ``refuse``
    (a 401); any other is aborted.  A WebSocket tunnel never finishes in twisted.web
    terms, so it stays watched for its whole life and is cut like any long response.
    """

    clock: IReactorTime
    watched: dict[int, _Watched] = field(factory=dict)

    def watch(
        self, request: Request, jti: str, expires_at: float, refuse: Refusal | None = None
    ) -> None:
        """Watch ``request`` until it finishes; end it at ``expires_at`` or on revocation."""
        entry = _Watched(request, jti, refuse)
        key = id(entry)
        delay = max(0.0, expires_at - self.clock.seconds())
        entry.timer = self.clock.callLater(delay, self._cut, key, "the access token expired")
        self.watched[key] = entry
        request.notifyFinish().addBoth(self._finished, key)

    def _finished(self, result: object, key: int) -> None:
        entry = self.watched.pop(key, None)
        if entry is not None and entry.timer is not None and entry.timer.active():
            entry.timer.cancel()

    def _cut(self, key: int, why: str) -> None:
        entry = self.watched.pop(key, None)
        if entry is None:
            return
        if entry.timer is not None and entry.timer.active():
            entry.timer.cancel()
        request = entry.request
        if request.finished or request._disconnected:
            return
        if entry.refuse is not None and not request.startedWriting and not _upgrading(request):
            # nothing of the answer is out: refuse cleanly, keep the connection (the
            # upstream's answer, when it comes, finds the request finished and is dropped)
            entry.refuse(request, why)
            return
        abort_request(request)

    def revoked(self, revocations: Mapping[str, object]) -> None:
        """End every watched request whose token's ``jti`` is in ``revocations``."""
        for key in [k for k, e in self.watched.items() if e.jti in revocations]:
            self._cut(key, "the access token was revoked")

    def close(self) -> None:
        """Cancel every timer (shutdown); the requests themselves are left alone."""
        for entry in self.watched.values():
            if entry.timer is not None and entry.timer.active():
                entry.timer.cancel()
        self.watched.clear()


#: the largest body the authorization server is handed (its endpoints take 64 KiB)
MAX_AUTH_BODY = 256 * 1024


@implementer(IConsumer)
class BodyCollector:
    """Collects a streamed request body for the authorization server, up to a limit."""

    def __init__(self, producer: Any) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.too_large = False
        self._producer = producer

    def write(self, data: bytes) -> None:
        """Keep a chunk; past the limit, stop the body and drop what was kept."""
        if self.too_large:
            return
        self.size += len(data)
        if self.size > MAX_AUTH_BODY:
            self.too_large = True
            self.chunks.clear()
            self._producer.stopProducing()
            return
        self.chunks.append(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """The body producer registers itself; nothing to do."""

    def unregisterProducer(self) -> None:
        """Nothing to do."""
