"""The gateway's HTTP data plane end to end: real listeners, real backends, loopback only.

Each test starts an in-process backend (:mod:`tests.support.backends`) and a gateway
(``GatewaySite`` over ``GatewayResource``) on free loopback ports of the real reactor, fed by a
:class:`~tests.support.backends.SnapshotFeed`, and talks to it with treq (own pool) or a raw
TCP client when the bytes on the wire matter.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import treq
from attrs import define
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    connectProtocol,
    wrapServerTLS,
)
from twisted.internet.interfaces import IListeningPort, IPushProducer
from twisted.internet.protocol import ProcessProtocol, Protocol, connectionDone
from twisted.internet.ssl import CertificateOptions, PrivateCertificate
from twisted.internet.task import LoopingCall, deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import Resource
from zope.interface import implementer

from oauthproxy.acme.responder import ChallengeResource
from oauthproxy.config import Config
from oauthproxy.gateway.body import HIGH_WATER
from oauthproxy.gateway.forward import Forwarder
from oauthproxy.gateway.hosts import GatewayResource
from oauthproxy.gateway.site import GatewaySite
from oauthproxy.gateway.table import LiveTable
from oauthproxy.model import Proxy, Snapshot
from oauthproxy.storage.mirror import Mirror
from oauthproxy.testing import MemoryStorage
from tests.support.backends import (
    GZIPPED,
    Backend,
    RawUpstream,
    SnapshotFeed,
    self_signed_pem,
    start_backend,
    start_raw_upstream,
)

reactor: Any = global_reactor
HOST = "app.test"


def snapshot(*proxies: Proxy) -> Snapshot:
    """A snapshot holding ``proxies``."""
    return Snapshot(proxies={p.hostname: p for p in proxies})


def http_proxy(target: str, **kw: Any) -> Proxy:
    """An HTTP-only proxy for ``app.test`` (so plain HTTP is forwarded, not redirected)."""
    kw.setdefault("enable_https", False)
    return Proxy(hostname=HOST, target_url=target, **kw)


@define
class Gateway:
    """A running gateway: port, feed and what a test needs to poke."""

    port: IListeningPort
    feed: SnapshotFeed

    @property
    def number(self) -> int:
        """The listening port number."""
        return int(self.port.getHost().port)

    def url(self, path: str) -> str:
        """A URL to this gateway (send ``Host`` separately)."""
        return f"http://127.0.0.1:{self.number}{path}"


async def start_gateway(
    test: TestCase,
    snap: Snapshot,
    config: Config | None = None,
    source: Any = None,
    acme: Resource | None = None,
) -> Gateway:
    """Start a gateway on a free loopback port; stopped by the test's cleanups.

    The table follows ``source`` (an ISnapshotSource) if given, else a feed holding ``snap``;
    ``acme`` answers the reserved challenge path.
    """
    feed = SnapshotFeed(snap)
    table = LiveTable()
    table.attach(source if source is not None else feed)
    forwarder = Forwarder(reactor)
    test.addCleanup(forwarder.close)
    resource = GatewayResource(table, forwarder, acme=acme)
    site = GatewaySite(resource, config or Config(), reactor)
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    test.addCleanup(port.stopListening)
    return Gateway(port, feed)


class _Raw(Protocol):
    """A raw TCP client that records the bytes (up to ``keep``), counts all, can stall."""

    def __init__(self, keep: int = 1 << 30) -> None:
        self.data = bytearray()
        self.keep = keep
        self.received = 0
        self.closed: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        """Keep the first ``keep`` bytes, count the rest."""
        self.received += len(data)
        if len(self.data) < self.keep:
            self.data += data[: self.keep - len(self.data)]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Hand over everything received."""
        self.closed.callback(bytes(self.data))


async def connect_raw(test: TestCase, port: int, keep: int = 1 << 30) -> _Raw:
    """A connected raw client (aborted in cleanup if still open)."""
    proto = _Raw(keep)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), proto)

    def close() -> None:
        if proto.transport is not None and not proto.closed.called:
            proto.transport.abortConnection()

    test.addCleanup(close)
    return proto


async def raw_exchange(test: TestCase, port: int, payload: bytes, timeout: float = 10) -> bytes:
    """Send ``payload`` and return every byte received until the server closes."""
    proto = await connect_raw(test, port)
    assert proto.transport is not None
    proto.transport.write(payload)
    return await proto.closed.addTimeout(timeout, reactor)


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    """Poll ``predicate`` every 20 ms (bounded)."""
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await deferLater(reactor, 0.02, lambda: None)
    raise AssertionError("condition not reached in time")


def rss_bytes() -> int:
    """This process's resident set size."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _RssPeak:
    """Samples RSS every 50 ms; ``growth`` is the peak above the starting value."""

    def __init__(self) -> None:
        self.start = rss_bytes()
        self.peak = self.start
        self.loop = LoopingCall(self._sample)
        self.loop.clock = reactor
        self.loop.start(0.05)

    def _sample(self) -> None:
        self.peak = max(self.peak, rss_bytes())

    def stop(self) -> int:
        """Stop sampling and return the growth in bytes."""
        self._sample()
        if self.loop.running:
            self.loop.stop()
        return self.peak - self.start


class GatewayHttpTestCase(TestCase):
    """Shared setup: a backend and a treq pool."""

    backend: Backend

    async def setUp(self) -> None:  # type: ignore[override]
        """Start the backend and a client pool."""
        self.backend = await start_backend(self, reactor)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    async def get(self, gw: Gateway, path: str, **kw: Any) -> Any:
        """GET through the gateway with ``Host: app.test``."""
        headers = kw.pop("headers", {})
        headers.setdefault(b"Host", [HOST.encode()])
        return await treq.get(gw.url(path), headers=headers, pool=self.pool, **kw)


class ForwardingTests(GatewayHttpTestCase):
    """Requests reach the backend and answers come back."""

    async def test_request_is_forwarded_with_path_and_query(self) -> None:
        """The backend sees the canonical path and the untouched query."""
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url)))
        response = await self.get(gw, "/a/../b?x=1&y=%2F")
        self.assertEqual(response.code, 200)
        seen = json.loads(await response.content())
        self.assertEqual(seen["uri"], "/b?x=1&y=%2F")

    async def test_header_hygiene_seen_by_backend(self) -> None:
        """ATK-5/6/7: spoofed forwarding and identity headers are replaced or removed."""
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url)))
        response = await self.get(
            gw,
            "/",
            headers={
                b"X-Forwarded-For": [b"6.6.6.6"],
                b"X_Forwarded_Host": [b"evil"],
                b"X-User-Id": [b"root"],
                b"Forwarded": [b"for=6.6.6.6"],
                b"Connection": [b"X-Forwarded-For, X-Real-IP"],
                b"Accept": [b"a", b"b"],
            },
        )
        seen = json.loads(await response.content())
        headers = [(n.lower(), v) for n, v in seen["headers"]]
        self.assertIn(("x-forwarded-for", "127.0.0.1"), headers)
        self.assertIn(("x-real-ip", "127.0.0.1"), headers)
        self.assertIn(("x-forwarded-proto", "http"), headers)
        self.assertIn(("host", HOST), headers)
        self.assertEqual([v for n, v in headers if n == "accept"], ["a", "b"])
        names = {n for n, _ in headers}
        for banned in ("x_forwarded_host", "x-user-id", "forwarded", "connection"):
            self.assertNotIn(banned, names)
        self.assertEqual([v for n, v in headers if n == "x-forwarded-for"], ["127.0.0.1"])

    async def test_response_headers_and_cookies_pass(self) -> None:
        """Repeated Set-Cookie and custom response headers reach the client."""
        proxy = http_proxy(self.backend.url, custom_response_headers=(("X-Frame-Options", "DENY"),))
        gw = await start_gateway(self, snapshot(proxy))
        response = await self.get(gw, "/")
        await response.content()
        self.assertEqual(response.headers.getRawHeaders(b"set-cookie"), [b"a=1", b"b=2"])
        self.assertEqual(response.headers.getRawHeaders(b"x-frame-options"), [b"DENY"])

    async def test_compressed_body_passes_untouched(self) -> None:
        """A gzip body and its Content-Encoding reach the client byte for byte."""
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url)))
        answer = await raw_exchange(
            self,
            gw.number,
            b"GET /gzip HTTP/1.1\r\nHost: app.test\r\nAccept-Encoding: gzip\r\n"
            b"Connection: close\r\n\r\n",
        )
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertEqual(body, GZIPPED)
        self.assertIn(b"Content-Encoding: gzip", head)
        self.assertIn(b"Content-Length: %d" % len(GZIPPED), head)

    async def test_no_content_answer_gets_no_length(self) -> None:
        """A 204 from the upstream reaches the client without a body or Content-Length."""
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url)))
        answer = await raw_exchange(
            self,
            gw.number,
            b"GET /status/204 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        )
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 204"), head)
        self.assertNotIn(b"content-length", head.lower())
        self.assertEqual(body, b"")

    async def test_http_redirects_to_https(self) -> None:
        """A proxy with HTTPS enabled answers plain HTTP with 301 (GET) / 308 (POST)."""
        gw = await start_gateway(self, snapshot(Proxy(hostname=HOST, target_url=self.backend.url)))
        got = await self.get(gw, "/p?q=1", allow_redirects=False)
        self.assertEqual(got.code, 301)
        self.assertEqual(got.headers.getRawHeaders(b"location"), [b"https://app.test/p?q=1"])
        posted = await treq.post(
            gw.url("/p"), b"x", headers={b"Host": [HOST]}, pool=self.pool, allow_redirects=False
        )
        self.assertEqual(posted.code, 308)

    async def test_acme_challenge_is_answered_not_redirected(self) -> None:
        """The reserved ACME path reaches the real responder, not the HTTPS redirect."""
        storage = MemoryStorage(reactor)
        await storage.challenges.put("tok", "tok.key-auth", 60)
        gw = await start_gateway(
            self,
            snapshot(Proxy(hostname=HOST, target_url=self.backend.url)),
            acme=ChallengeResource(storage.challenges),
        )
        got = await self.get(gw, "/.well-known/acme-challenge/tok", allow_redirects=False)
        self.assertEqual((got.code, await got.content()), (200, b"tok.key-auth"))

    async def test_unknown_host_is_404_json(self) -> None:
        """No proxy for the host: 404, JSON when asked for."""
        gw = await start_gateway(self, snapshot())
        got = await self.get(gw, "/", headers={b"Accept": [b"application/json"]})
        self.assertEqual(got.code, 404)
        self.assertEqual(json.loads(await got.content())["error"], "not_found")

    async def test_proxy_added_serves_next_request_and_deleted_answers_404(self) -> None:
        """A snapshot change is live on the next request, both ways."""
        gw = await start_gateway(self, snapshot())
        self.assertEqual((await self.get(gw, "/")).code, 404)
        gw.feed.publish(snapshot(http_proxy(self.backend.url)))
        self.assertEqual((await self.get(gw, "/")).code, 200)
        gw.feed.publish(snapshot())
        self.assertEqual((await self.get(gw, "/")).code, 404)


class StoreToDataPlaneTests(GatewayHttpTestCase):
    """The real snapshot source: a store write reaches the data plane through the Mirror."""

    async def test_proxy_created_in_store_serves_within_a_second_and_404_after_delete(
        self,
    ) -> None:
        """Acceptance: create -> served within 1 s, no restart; delete -> 404."""
        storage = MemoryStorage(reactor)
        mirror = Mirror(storage, reactor, block=0.2)
        mirror.startService()
        self.addCleanup(mirror.stopService)
        await mirror.when_loaded()
        gw = await start_gateway(self, snapshot(), source=mirror)
        self.assertEqual((await self.get(gw, "/")).code, 404)
        created_at = reactor.seconds()
        await storage.proxies.create(http_proxy(self.backend.url))
        codes: list[int] = []

        async def served() -> bool:
            codes.append((await self.get(gw, "/")).code)
            return codes[-1] == 200

        for _ in range(50):
            if await served():
                break
            await deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(codes[-1], 200)
        self.assertLess(reactor.seconds() - created_at, 1.0)
        await storage.proxies.delete(HOST)
        for _ in range(50):
            if not await served():
                break
            await deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(codes[-1], 404)


class FailureTests(GatewayHttpTestCase):
    """Limits and upstream failures."""

    async def test_body_over_limit_is_413(self) -> None:
        """A Content-Length above ``max_request_body`` gets 413 before the body is read."""
        gw = await start_gateway(
            self, snapshot(http_proxy(self.backend.url)), Config(max_request_body=1000)
        )
        got = await treq.post(gw.url("/"), b"x" * 2000, headers={b"Host": [HOST]}, pool=self.pool)
        self.assertEqual(got.code, 413)
        self.assertEqual(self.backend.state.requests, [])

    async def test_chunked_body_over_limit_is_413(self) -> None:
        """A chunked body is cut off at the limit too."""
        gw = await start_gateway(
            self, snapshot(http_proxy(self.backend.url)), Config(max_request_body=1000)
        )
        chunk = b"x" * 800
        payload = (
            b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2
            + b"0\r\n\r\n"
        )
        answer = await raw_exchange(self, gw.number, payload)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413"), answer[:40])

    async def test_connection_refused_is_502(self) -> None:
        """An upstream port with nothing listening gives 502."""
        probe = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(_NoFactory())
        dead = probe.getHost().port
        await probe.stopListening()
        gw = await start_gateway(self, snapshot(http_proxy(f"http://127.0.0.1:{dead}")))
        self.assertEqual((await self.get(gw, "/")).code, 502)

    async def test_read_timeout_is_504_and_cancels_upstream(self) -> None:
        """No response head within ``read_timeout``: 504, and the upstream request is dropped."""
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url, read_timeout=0.3)))
        got = await self.get(gw, "/slow")
        self.assertEqual(got.code, 504)
        await wait_until(lambda: self.backend.state.slow_cancelled == 1)

    async def test_client_disconnect_cancels_upstream(self) -> None:
        """The client hanging up cancels the pending upstream request."""
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url)))
        client = await connect_raw(self, gw.number)
        assert client.transport is not None
        client.transport.write(b"GET /slow HTTP/1.1\r\nHost: app.test\r\n\r\n")
        await wait_until(lambda: self.backend.state.slow_started == 1)
        client.transport.abortConnection()
        await wait_until(lambda: self.backend.state.slow_cancelled == 1)


class UpstreamTlsTests(TestCase):
    """HTTPS upstreams are verified unless a proxy opts out."""

    async def setUp(self) -> None:  # type: ignore[override]
        """An HTTPS backend with a self-signed certificate, and a client pool."""
        self.cert_pem, key_pem = self_signed_pem()
        self.backend = await start_backend(self, reactor, (self.cert_pem, key_pem))
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    async def code_for(self, **proxy: Any) -> int:
        """The status a GET through a gateway with this proxy configuration gets."""
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url, **proxy)))
        got = await treq.get(gw.url("/"), headers={b"Host": [HOST]}, pool=self.pool)
        await got.content()
        return int(got.code)

    async def test_untrusted_upstream_certificate_is_502(self) -> None:
        """Verification is on by default: a self-signed upstream is refused."""
        self.assertEqual(await self.code_for(), 502)

    async def test_ca_bundle_makes_upstream_trusted(self) -> None:
        """``upstream_ca_pem`` trusts exactly that CA."""
        self.assertEqual(await self.code_for(upstream_ca_pem=self.cert_pem), 200)

    async def test_verification_can_be_turned_off_per_proxy(self) -> None:
        """``verify_upstream_tls=False`` is the explicit opt-out."""
        self.assertEqual(await self.code_for(verify_upstream_tls=False), 200)


class _NoFactory:
    """A factory that is never used (the probe port only reserves a number)."""

    def doStart(self) -> None:
        """Nothing to start."""

    def doStop(self) -> None:
        """Nothing to stop."""

    def buildProtocol(self, addr: Any) -> None:
        """Refuse connections."""
        return None


class StreamingTests(GatewayHttpTestCase):
    """Bodies stream in both directions with bounded memory."""

    async def test_sse_event_arrives_before_upstream_ends(self) -> None:
        """The first event reaches the client while the upstream response is still open."""
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url)))
        client = await connect_raw(self, gw.number)
        assert client.transport is not None
        client.transport.write(b"GET /sse HTTP/1.1\r\nHost: app.test\r\n\r\n")
        await wait_until(lambda: b"data: first" in client.data)
        self.assertFalse(self.backend.state.sse_release.called)
        self.backend.state.sse_release.callback(None)
        await wait_until(lambda: client.data.endswith(b"0\r\n\r\n"))

    async def test_response_head_is_relayed_before_the_first_body_byte(self) -> None:
        """A stream whose upstream sent only its head shows status and headers at once."""
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url)))
        client = await connect_raw(self, gw.number)
        assert client.transport is not None
        client.transport.write(b"GET /quiet-sse HTTP/1.1\r\nHost: app.test\r\n\r\n")
        await wait_until(lambda: b"text/event-stream" in client.data)
        self.assertTrue(client.data.startswith(b"HTTP/1.1 200"))
        self.assertNotIn(b"data: late", client.data)
        self.backend.state.sse_release.callback(None)
        await wait_until(lambda: client.data.endswith(b"0\r\n\r\n"))
        self.assertIn(b"data: late", client.data)

    async def test_stalled_stream_is_cut_after_read_timeout(self) -> None:
        """An upstream silent mid-body for ``read_timeout`` is dropped and the client aborted."""
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url, read_timeout=0.3)))
        client = await connect_raw(self, gw.number)
        assert client.transport is not None
        client.transport.write(b"GET /sse HTTP/1.1\r\nHost: app.test\r\n\r\n")
        data = await client.closed.addTimeout(5, reactor)
        self.assertIn(b"data: first", data)
        self.assertFalse(data.endswith(b"0\r\n\r\n"), "the stream must not look complete")
        await wait_until(lambda: self.backend.state.sse_cut == 1)

    async def test_50mb_download_with_back_pressure(self) -> None:
        """A stalled client stops the upstream; the full 50 MB then arrives, memory bounded."""
        size = 50 * 1024 * 1024
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url)))
        rss = _RssPeak()
        client = await connect_raw(self, gw.number, keep=4096)
        assert client.transport is not None
        client.transport.pauseProducing()
        client.transport.write(
            b"GET /large?size=%d HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n" % size
        )
        await deferLater(reactor, 1.0, lambda: None)
        stalled_at = self.backend.state.produced
        self.assertLess(stalled_at, 24 * 1024 * 1024)
        client.transport.resumeProducing()
        data = await client.closed.addTimeout(60, reactor)
        growth = rss.stop()
        head = data.partition(b"\r\n\r\n")[0]
        self.assertIn(b"Content-Length: %d" % size, head)
        self.assertEqual(client.received, len(head) + 4 + size)
        self.assertLess(growth, 30 * 1024 * 1024)

    async def test_50mb_upload_with_bounded_memory(self) -> None:
        """curl uploads 50 MB; the backend gets every byte; this process stays small."""
        size = 50 * 1024 * 1024
        path = self.mktemp()
        digest = hashlib.sha256()
        block = os.urandom(1 << 20)
        with open(path, "wb") as f:
            for _ in range(size >> 20):
                f.write(block)
                digest.update(block)
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url)))
        rss = _RssPeak()
        out, err, code = await getProcessOutputAndValue(
            "/usr/bin/curl",
            [
                "-sS",
                "--data-binary",
                f"@{path}",
                "-H",
                f"Host: {HOST}",
                # the default form type would make the in-process *backend* parse the body
                "-H",
                "Content-Type: application/octet-stream",
                gw.url("/upload"),
            ],
            reactor=reactor,
        )
        growth = rss.stop()
        self.assertEqual(code, 0, err)
        seen = json.loads(out)
        self.assertEqual((seen["body_length"], seen["body_sha256"]), (size, digest.hexdigest()))
        self.assertLess(growth, 30 * 1024 * 1024)


class ConnectionHygieneTests(GatewayHttpTestCase):
    """Wire-level behaviour: pipelining, timeouts, limits, refused forms."""

    async def test_pipelined_requests_answered_in_order(self) -> None:
        """ATK-15: a slow first request is still answered first."""
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url)))
        answer = await raw_exchange(
            self,
            gw.number,
            b"GET /delay?ms=300 HTTP/1.1\r\nHost: app.test\r\n\r\n"
            b"GET /fast HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        )
        first = answer.find(b'"uri": "/delay?ms=300"')
        second = answer.find(b'"uri": "/fast"')
        self.assertTrue(0 < first < second, answer)

    async def test_slow_request_head_gets_408(self) -> None:
        """ATK-18: a head dribbling past ``request_header_timeout`` is cut off."""
        gw = await start_gateway(
            self, snapshot(http_proxy(self.backend.url)), Config(request_header_timeout=0.3)
        )
        client = await connect_raw(self, gw.number)
        assert client.transport is not None
        client.transport.write(b"GET / HTTP/1.1\r\nHost: app.test\r\n")
        answer = await client.closed.addTimeout(5, reactor)
        self.assertTrue(answer.startswith(b"HTTP/1.1 408"), answer)

    async def test_idle_connection_is_closed(self) -> None:
        """An idle keep-alive connection is closed after ``idle_timeout``."""
        gw = await start_gateway(
            self, snapshot(http_proxy(self.backend.url)), Config(idle_timeout=0.3)
        )
        client = await connect_raw(self, gw.number)
        self.assertEqual(await client.closed.addTimeout(5, reactor), b"")

    async def test_too_many_headers_is_431(self) -> None:
        """ATK-18: more than ``max_header_count`` headers (431, issue 10 defect 6)."""
        gw = await start_gateway(
            self, snapshot(http_proxy(self.backend.url)), Config(max_header_count=10)
        )
        extra = b"".join(b"X-H%d: v\r\n" % i for i in range(20))
        answer = await raw_exchange(
            self, gw.number, b"GET / HTTP/1.1\r\nHost: app.test\r\n" + extra + b"\r\n"
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 431"), answer)

    async def test_oversized_head_is_431(self) -> None:
        """ATK-18: a head over ``max_header_bytes`` (431, issue 10 defect 6)."""
        gw = await start_gateway(
            self, snapshot(http_proxy(self.backend.url)), Config(max_header_bytes=1024)
        )
        answer = await raw_exchange(
            self,
            gw.number,
            b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n",
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 431"), answer)

    async def test_connect_is_refused(self) -> None:
        """ATK-16: CONNECT gets 405."""
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url)))
        answer = await raw_exchange(
            self,
            gw.number,
            b"CONNECT app.test:443 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 405"), answer)

    async def test_h2c_upgrade_is_not_honoured(self) -> None:
        """ATK-16: ``Upgrade: h2c`` gets a plain HTTP/1.1 answer and never reaches upstream."""
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url)))
        answer = await raw_exchange(
            self,
            gw.number,
            b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade, HTTP2-Settings, close\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer)
        names = {n.lower() for n, _ in self.backend.state.requests[0]["headers"]}
        self.assertFalse(names & {"upgrade", "http2-settings"})

    async def test_websocket_upgrade_answered_200_is_relayed_not_tunnelled(self) -> None:
        """ATK-16: the forwarder hands upgrades to the tunnel; a 200 answer is relayed as is."""
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url)))
        client = await connect_raw(self, gw.number)
        assert client.transport is not None
        client.transport.write(
            b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        await wait_until(lambda: bytes(client.data).rstrip().endswith(b"}"))
        self.assertTrue(client.data.startswith(b"HTTP/1.1 200"), client.data[:80])
        headers = {n.lower(): v for n, v in self.backend.state.requests[0]["headers"]}
        self.assertEqual(headers["upgrade"], "websocket")
        self.assertEqual(headers["x-forwarded-for"], "127.0.0.1")

    async def test_two_host_headers_are_400(self) -> None:
        """RFC 9112 §3.2: two Host headers are refused, never a choice between vhosts."""
        other = Proxy(hostname="other.test", target_url=self.backend.url, enable_https=False)
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url), other))
        answer = await raw_exchange(
            self,
            gw.number,
            b"GET / HTTP/1.1\r\nHost: app.test\r\nHost: other.test\r\nConnection: close\r\n\r\n",
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 400"), answer)
        self.assertEqual(self.backend.state.requests, [])

    async def test_absolute_form_cannot_select_another_vhost(self) -> None:
        """ATK-12: ``GET http://other.test/`` with ``Host: app.test`` is refused."""
        other = Proxy(hostname="other.test", target_url=self.backend.url, enable_https=False)
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url), other))
        answer = await raw_exchange(
            self,
            gw.number,
            b"GET http://other.test/x HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 400"), answer)
        self.assertEqual(self.backend.state.requests, [])


@implementer(IPushProducer)
class _Uploader:
    """Writes ``size`` body bytes (a repeating 64 KiB block) to a transport, honouring pauses."""

    block = bytes(range(256)) * 256

    def __init__(self, transport: Any, size: int, chunked: bool = False) -> None:
        self.transport = transport
        self.left = size
        self.sent = 0
        self.chunked = chunked
        self.paused = False
        self.stopped = False
        self.digest = hashlib.sha256()
        self.done: Deferred[float] = Deferred()

    def start(self) -> None:
        """Register with the transport and write until paused or done."""
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self) -> None:
        """Write blocks until the transport pushes back."""
        self.paused = False
        while not self.paused and not self.stopped and self.left > 0:
            data = self.block[: min(self.left, len(self.block))]
            self.left -= len(data)
            self.sent += len(data)
            self.digest.update(data)
            if self.chunked:
                self.transport.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                self.transport.write(data)
        if self.left == 0 and not self.stopped:
            self.stopped = True
            if self.chunked:
                self.transport.write(b"0\r\n\r\n")
            self.transport.unregisterProducer()
            self.done.callback(reactor.seconds())

    def pauseProducing(self) -> None:
        """The connection's send buffer is full."""
        self.paused = True

    def stopProducing(self) -> None:
        """The connection is gone."""
        self.stopped = True


def upload_head(size: int | None, path: bytes = b"/upload", extra: bytes = b"") -> bytes:
    """A POST head for ``app.test`` with a Content-Length (or chunked when ``size`` is None)."""
    length = b"Transfer-Encoding: chunked" if size is None else b"Content-Length: %d" % size
    return (
        b"POST %s HTTP/1.1\r\nHost: app.test\r\nContent-Type: application/octet-stream\r\n"
        b"%s\r\n%s\r\n" % (path, length, extra)
    )


class RequestStreamingTests(GatewayHttpTestCase):
    """Request bodies flow to the upstream while they arrive, with back-pressure both ways."""

    async def test_50mb_upload_streams_with_bounded_memory(self) -> None:
        """The backend gets the first body bytes before the client has sent the rest; all
        50 MB arrive intact and this process (gateway, backend spooling to disk, client)
        stays small."""
        size = 50 * 1024 * 1024
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url)))
        rss = _RssPeak()
        client = await connect_raw(self, gw.number)
        assert client.transport is not None
        client.transport.write(upload_head(size) + _Uploader.block)
        # the client holds back the other 49.9 MB until the backend has seen body bytes
        await wait_until(lambda: self.backend.state.body_started is not None)
        uploader = _Uploader(client.transport, size - len(_Uploader.block))
        uploader.digest.update(_Uploader.block)
        uploader.start()
        finished_sending = await uploader.done.addTimeout(60, reactor)
        body_started = self.backend.state.body_started
        assert body_started is not None
        self.assertLess(body_started, finished_sending)
        await wait_until(lambda: b'"body_sha256"' in client.data, timeout=60)
        growth = rss.stop()
        seen = json.loads(bytes(client.data).partition(b"\r\n\r\n")[2])
        self.assertEqual(
            (seen["body_length"], seen["body_sha256"]), (size, uploader.digest.hexdigest())
        )
        self.assertLess(growth, 30 * 1024 * 1024)

    async def test_slow_upstream_stalls_the_client_not_the_proxy(self) -> None:
        """An upstream that stops reading makes the client's send stall; the gateway holds
        only a bounded amount, and everything arrives once the upstream reads again."""
        upstream = await start_raw_upstream(self, reactor, RawUpstream(stall=True))
        size = 64 * 1024 * 1024
        gw = await start_gateway(self, snapshot(http_proxy(upstream.url)))
        rss = _RssPeak()
        client = await connect_raw(self, gw.number)
        assert client.transport is not None
        client.transport.write(upload_head(size))
        uploader = _Uploader(client.transport, size)
        uploader.start()
        await wait_until(upstream.head_seen)
        await deferLater(reactor, 1.5, lambda: None)
        stalled_at = uploader.sent
        await deferLater(reactor, 0.5, lambda: None)
        growth = rss.stop()
        # only kernel socket buffers (a few MB each on loopback) hold the difference
        self.assertTrue(uploader.paused)
        self.assertEqual(uploader.sent, stalled_at, "the client's send must stall")
        self.assertLess(uploader.sent, 40 * 1024 * 1024)
        self.assertLess(growth, 16 * 1024 * 1024)
        upstream.resume()
        await uploader.done.addTimeout(60, reactor)
        await wait_until(lambda: upstream.received >= size, timeout=30)
        self.assertEqual(upstream.received - upstream.data.index(b"\r\n\r\n") - 4, size)

    async def test_chunked_upload_over_limit_is_413_and_not_forwarded_past_it(self) -> None:
        """A chunked body crossing ``max_request_body`` mid-stream: 413 to the client, the
        upstream connection is aborted, and the upstream never gets more than the limit."""
        limit = 1024 * 1024
        upstream = await start_raw_upstream(self, reactor, RawUpstream())
        gw = await start_gateway(
            self, snapshot(http_proxy(upstream.url)), Config(max_request_body=limit)
        )
        client = await connect_raw(self, gw.number)
        assert client.transport is not None
        client.transport.write(upload_head(None))
        uploader = _Uploader(client.transport, 4 * limit, chunked=True)
        uploader.start()
        answer = await client.closed.addTimeout(10, reactor)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413"), answer[:60])
        await wait_until(lambda: upstream.lost == 1)
        head_and_framing = upstream.data.index(b"\r\n\r\n") + 4 + 1024  # chunk headers
        self.assertLessEqual(upstream.received, limit + head_and_framing)
        self.assertNotIn(b"\r\n0\r\n\r\n", bytes(upstream.data))

    async def test_early_upstream_answer_is_relayed_then_connection_closes(self) -> None:
        """An upstream answering 401 before the body ends: the client gets the 401 while it
        is still sending, marked ``Connection: close``, and the connection then closes."""
        answer = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\n\r\ndenied"
        upstream = await start_raw_upstream(self, reactor, RawUpstream(answer=answer))
        gw = await start_gateway(self, snapshot(http_proxy(upstream.url)))
        client = await connect_raw(self, gw.number)
        assert client.transport is not None
        client.transport.write(upload_head(8 * 1024 * 1024) + b"x" * 1000)
        await wait_until(lambda: client.data.endswith(b"denied"))
        head = bytes(client.data).partition(b"\r\n\r\n")[0]
        self.assertTrue(head.startswith(b"HTTP/1.1 401"), head)
        self.assertIn(b"connection: close", head.lower())
        self.assertEqual(upstream.lost, 1)  # not reused: the request was cut short
        client.transport.write(b"y" * 4096)  # the rest is read and dropped until we close
        data = await client.closed.addTimeout(10, reactor)
        self.assertTrue(data.endswith(b"denied"))

    async def test_answer_after_full_body_keeps_the_connection(self) -> None:
        """A POST answered after its whole body stays keep-alive: a pipelined GET follows."""
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url)))
        answer = await raw_exchange(
            self,
            gw.number,
            upload_head(5, b"/first") + b"hello"
            b"GET /second HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        )
        first = answer.find(b'"uri": "/first"')
        second = answer.find(b'"uri": "/second"')
        self.assertTrue(0 < first < second, answer)
        self.assertNotIn(b"connection: close", answer[:first].lower())
        self.assertEqual(self.backend.state.requests[0]["body_length"], 5)

    async def test_expect_100_continue_sent_when_forwarding_starts(self) -> None:
        """``Expect: 100-continue`` gets ``100 Continue`` (once the upstream request starts),
        then the body flows; the final answer follows."""
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url)))
        client = await connect_raw(self, gw.number)
        assert client.transport is not None
        client.transport.write(upload_head(5, extra=b"Expect: 100-continue\r\n"))
        await wait_until(lambda: client.data.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"))
        self.assertEqual(self.backend.state.requests, [])
        client.transport.write(b"hello")
        await wait_until(lambda: b'"body_length": 5' in client.data)
        self.assertNotIn(b"expect", bytes(client.data).lower())

    async def test_expect_100_continue_not_sent_for_a_refusal(self) -> None:
        """No ``100 Continue`` for a request that is answered without forwarding (404)."""
        gw = await start_gateway(self, snapshot())
        answer = await raw_exchange(
            self, gw.number, upload_head(5, extra=b"Expect: 100-continue\r\n")
        )
        self.assertTrue(answer.startswith(b"HTTP/1.1 404"), answer[:40])
        self.assertNotIn(b"100 Continue", answer)

    async def test_client_disconnect_mid_upload_cancels_upstream(self) -> None:
        """The client hanging up mid-body aborts the upstream request (its connection drops)."""
        upstream = await start_raw_upstream(self, reactor, RawUpstream())
        gw = await start_gateway(self, snapshot(http_proxy(upstream.url)))
        client = await connect_raw(self, gw.number)
        assert client.transport is not None
        client.transport.write(upload_head(1024 * 1024) + b"x" * 4096)
        await wait_until(lambda: upstream.received > 4096)
        client.transport.abortConnection()
        await wait_until(lambda: upstream.lost == 1)
        self.assertLess(upstream.received, 1024 * 1024)

    async def test_head_answer_keeps_content_length(self) -> None:
        """A HEAD answer carries the upstream's Content-Length (and no body)."""
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url)))
        answer = await raw_exchange(
            self,
            gw.number,
            b"HEAD /large?size=12345 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        )
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertIn(b"content-length: 12345", head.lower())
        self.assertEqual(body, b"")

    async def test_uploads_reuse_the_upstream_connection(self) -> None:
        """Streamed uploads in a row go over the pooled upstream connection and all arrive."""
        gw = await start_gateway(self, snapshot(http_proxy(self.backend.url)))
        for i in range(3):
            got = await treq.post(
                gw.url(f"/u{i}"),
                b"z" * (1000 + i),
                headers={b"Host": [HOST], b"Content-Type": [b"application/octet-stream"]},
                pool=self.pool,
            )
            seen = json.loads(await got.content())
            self.assertEqual(seen["body_length"], 1000 + i)


class _Curl(ProcessProtocol):
    """A curl run whose end can be awaited (and that a test can kill)."""

    def __init__(self) -> None:
        self.ended: Deferred[None] = Deferred()
        self.running = True
        self.out = bytearray()

    def outReceived(self, data: bytes) -> None:
        """Keep what curl prints."""
        self.out += data

    def processEnded(self, reason: Failure) -> None:
        """Note the end."""
        self.running = False
        self.ended.callback(None)


class _Capturing(GatewayResource):
    """The gateway resource, remembering each request it renders."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.seen: list[Any] = []

    def render(self, request: Any) -> Any:
        """Remember, then route as usual."""
        self.seen.append(request)
        return super().render(request)


async def start_h2_gateway(
    test: TestCase, snap: Snapshot, config: Config | None = None
) -> tuple[int, _Capturing]:
    """A gateway behind TLS with ALPN ``h2`` on a free loopback port (every name ``app.test``)."""
    feed = SnapshotFeed(snap)
    table = LiveTable()
    table.attach(feed)
    forwarder = Forwarder(reactor)
    test.addCleanup(forwarder.close)
    resource = _Capturing(table, forwarder, server_name_of=lambda request: HOST)
    cert_pem, key_pem = self_signed_pem()
    cert = PrivateCertificate.loadPEM(key_pem + cert_pem)
    options = CertificateOptions(
        privateKey=cert.privateKey.original,
        certificate=cert.original,
        acceptableProtocols=[b"h2", b"http/1.1"],
    )
    endpoint = wrapServerTLS(options, TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"))
    port = await endpoint.listen(GatewaySite(resource, config or Config(), reactor))
    test.addCleanup(port.stopListening)
    return int(port.getHost().port), resource


def curl_h2_upload(
    test: TestCase, number: int, size: int, stream: bool = False
) -> tuple[_Curl, Any]:
    """Start ``curl --http2`` posting ``size`` bytes to the h2 gateway; killed in cleanup.

    With ``stream`` the body comes through curl's stdin, so it has no Content-Length.
    """
    source = "-"
    if not stream:
        source = test.mktemp()
        with open(source, "wb") as f:
            f.write(b"u" * size)
    curl = _Curl()
    process = reactor.spawnProcess(
        curl,
        "/usr/bin/curl",
        [
            "curl",
            "-sSk",
            "--http2",
            "-X",
            "POST",
            "-T",
            source,
            "-o",
            "-",
            "-w",
            "\n%{http_code} %{http_version}",
            "--resolve",
            f"{HOST}:{number}:127.0.0.1",
            f"https://{HOST}:{number}/up",
        ],
        env={},
    )
    if stream:
        process.write(b"u" * size)
        process.closeStdin()

    def stop() -> Deferred[None]:
        if curl.running:
            process.signalProcess("KILL")
        return curl.ended

    test.addCleanup(stop)
    return curl, process


class Http2UploadTests(GatewayHttpTestCase):
    """HTTP/2 request bodies stream too (flow-control window as back-pressure)."""

    async def test_h2_upload_reaches_a_stalled_upstream_before_the_client_is_done(self) -> None:
        """curl --http2 uploads 64 MB to an upstream that stops reading: the upstream gets the
        request head while curl is still sending, and the gateway holds little of the body."""
        upstream = await start_raw_upstream(self, reactor, RawUpstream(stall=True))
        number, resource = await start_h2_gateway(
            self, snapshot(http_proxy(upstream.url, enable_https=True))
        )
        rss = _RssPeak()
        self.addCleanup(rss.stop)
        curl, _process = curl_h2_upload(self, number, 64 * 1024 * 1024)
        await wait_until(upstream.head_seen, timeout=10)
        await deferLater(reactor, 1.0, lambda: None)
        self.assertTrue(curl.running, "the client must still be sending")
        self.assertIn(b"POST /up HTTP/1.1", bytes(upstream.data))
        self.assertLess(rss.stop(), 16 * 1024 * 1024)
        [request] = resource.seen
        self.assertEqual(request.clientproto, b"HTTP/2")
        body = request.body
        self.assertLessEqual(body.buffered, HIGH_WATER + 65536)
        # the flow-control window stops the client: far from all 64 MB reached the gateway
        self.assertLess(body.received, 32 * 1024 * 1024)
        received = body.received
        await deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(body.received, received)

    async def test_h2_early_upstream_answer_is_relayed(self) -> None:
        """An upstream answering 401 before an HTTP/2 body ends: curl gets the 401 intact."""
        answer = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\n\r\ndenied"
        upstream = await start_raw_upstream(self, reactor, RawUpstream(answer=answer))
        number, _resource = await start_h2_gateway(
            self, snapshot(http_proxy(upstream.url, enable_https=True))
        )
        curl, _process = curl_h2_upload(self, number, 8 * 1024 * 1024)
        await curl.ended.addTimeout(30, reactor)
        self.assertEqual(bytes(curl.out), b"denied\n401 2")
        self.assertEqual(upstream.lost, 1)

    async def test_h2_body_over_limit_is_413(self) -> None:
        """An HTTP/2 body without a length crossing ``max_request_body`` mid-stream: 413 to
        the client, the upstream request is aborted short of the limit."""
        upstream = await start_raw_upstream(self, reactor, RawUpstream())
        number, _resource = await start_h2_gateway(
            self,
            snapshot(http_proxy(upstream.url, enable_https=True)),
            Config(max_request_body=1024 * 1024),
        )
        curl, _process = curl_h2_upload(self, number, 8 * 1024 * 1024, stream=True)
        await curl.ended.addTimeout(30, reactor)
        self.assertTrue(bytes(curl.out).endswith(b"413 2"), bytes(curl.out)[-80:])
        await wait_until(lambda: upstream.lost == 1)
        self.assertLess(upstream.received, 1024 * 1024 + 65536)
        self.assertNotIn(b"\r\n0\r\n\r\n", bytes(upstream.data))

    async def test_h2_declared_length_over_limit_is_413_unforwarded(self) -> None:
        """An HTTP/2 Content-Length over ``max_request_body``: 413, nothing reaches upstream."""
        upstream = await start_raw_upstream(self, reactor, RawUpstream())
        number, _resource = await start_h2_gateway(
            self,
            snapshot(http_proxy(upstream.url, enable_https=True)),
            Config(max_request_body=1024 * 1024),
        )
        curl, _process = curl_h2_upload(self, number, 2 * 1024 * 1024)
        await curl.ended.addTimeout(30, reactor)
        self.assertTrue(bytes(curl.out).endswith(b"413 2"), bytes(curl.out)[-80:])
        self.assertEqual(upstream.connections, [])
