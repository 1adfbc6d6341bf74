"""What the guard does to long requests: cut them when their token ends, collect bodies.

:class:`StreamCloser` aborts a request (a streamed response or a WebSocket tunnel) whose
OAuth token expires or is revoked while it runs (ATK-27).  :class:`BodyCollector` reads a
streamed request body (the gateway streams bodies instead of spooling them) for the
authorization server, which reads ``request.content``, up to :data:`MAX_AUTH_BODY`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import define, field
from twisted.internet.interfaces import IConsumer, IDelayedCall, IReactorTime
from twisted.web.server import Request
from zope.interface import implementer


@define(eq=False)
class _Watched:
    """One admitted request whose token bounds its life."""

    request: Request
    jti: str
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


@define(eq=False)
class StreamCloser:
    """Aborts requests still running when their token expires or is revoked (ATK-27).

    Every OAuth-admitted request is watched until it finishes: a timer fires at the
    token's ``exp``, and :meth:`revoked` aborts those whose ``jti`` was revoked.  A
    WebSocket tunnel never finishes in twisted.web terms, so it stays watched for its
    whole life and is cut like any long response.
    """

    clock: IReactorTime
    watched: dict[int, _Watched] = field(factory=dict)

    def watch(self, request: Request, jti: str, expires_at: float) -> None:
        """Watch ``request`` until it finishes; cut it at ``expires_at`` or on revocation."""
        entry = _Watched(request, jti)
        key = id(entry)
        delay = max(0.0, expires_at - self.clock.seconds())
        entry.timer = self.clock.callLater(delay, self._cut, key)
        self.watched[key] = entry
        request.notifyFinish().addBoth(self._finished, key)

    def _finished(self, result: object, key: int) -> None:
        entry = self.watched.pop(key, None)
        if entry is not None and entry.timer is not None and entry.timer.active():
            entry.timer.cancel()

    def _cut(self, key: int) -> None:
        entry = self.watched.pop(key, None)
        if entry is None:
            return
        if entry.timer is not None and entry.timer.active():
            entry.timer.cancel()
        if not entry.request.finished:
            abort_request(entry.request)

    def revoked(self, revocations: Mapping[str, object]) -> None:
        """Cut every watched request whose token's ``jti`` is in ``revocations``."""
        for key in [k for k, e in self.watched.items() if e.jti in revocations]:
            self._cut(key)

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
