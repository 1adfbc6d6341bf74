"""Sample request-log records and finished twisted.web requests for the request-log tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import evolve
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.web.test.requesthelper import DummyChannel

from oauthproxy.requestlog.record import RequestRecord, record_from_request

#: a time on 2025-01-01 (UTC), so day buckets are easy to reason about
T0 = 1_735_689_600.0


def sample(n: int = 0, **changes: Any) -> RequestRecord:
    """Record number ``n``: one second after the previous, unique correlation id."""
    base = RequestRecord(
        time=T0 + n,
        correlation_id=f"{int(T0 + n)}-https-{n:08x}",
        client_ip="192.0.2.10",
        method="GET",
        host="api.example.com",
        path="/items",
        status=200,
        bytes_in=0,
        bytes_out=512,
        duration=0.010,
        scheme="https",
    )
    return evolve(base, **changes)


class Answering(Resource):
    """Answers every request with ``code`` and ``body``."""

    isLeaf = True

    def __init__(self, code: int = 200, body: bytes = b"hello") -> None:
        super().__init__()
        self.code = code
        self.body = body

    def render(self, request: Request) -> bytes:
        """Set the status and return the body."""
        request.setResponseCode(self.code)
        return self.body


class HookedSite(Site):
    """A Site that calls ``hook(request)`` where twisted.web logs a finished request."""

    def __init__(self, resource: Resource, hook: Callable[[Request], None]) -> None:
        super().__init__(resource)
        self.hook = hook

    def log(self, request: Request) -> None:
        """Like GatewaySite.log: hand the request to the access-log hook."""
        self.hook(request)


def finish_request(
    hook: Callable[[Request], None],
    uri: bytes = b"/items",
    method: bytes = b"GET",
    headers: dict[bytes, bytes] | None = None,
    code: int = 200,
    body: bytes = b"hello",
    peer: IPv4Address | IPv6Address | None = None,
    secure: bool = False,
    before: Callable[[Request], None] | None = None,
) -> Request:
    """Run a real ``server.Request`` to completion; ``hook`` sees it as the gateway's does.

    ``before(request)`` runs before the request is processed (to attach notes).
    """
    channel = DummyChannel(peer)
    if secure:
        channel.transport = DummyChannel.SSL(peer)
    site = HookedSite(Answering(code, body), hook)
    channel.site = site
    channel.factory = site  # where Request.finish looks for the access log
    request = Request(channel)
    request.gotLength(0)  # what the channel does before the body: an empty body
    for name, value in (headers or {b"host": b"api.example.com"}).items():
        request.requestHeaders.setRawHeaders(name, [value])
    if before is not None:
        before(request)
    request.requestReceived(method, uri, b"HTTP/1.1")
    assert request.finished, "the sample resource did not finish the request"
    return request


def logged_record(*args: Any, now: float = T0, **kwargs: Any) -> RequestRecord:
    """The record the access-log hook builds for ``finish_request(hook, *args, **kwargs)``.

    The random part of its correlation id is ``a7b3c9d2``.
    """
    built: list[RequestRecord] = []
    finish_request(
        lambda r: built.append(record_from_request(r, now, lambda: "a7b3c9d2")), *args, **kwargs
    )
    [record] = built
    return record
