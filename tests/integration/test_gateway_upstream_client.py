"""The gateway over its own upstream client: odd upstreams seen from a client, end to end.

A real gateway (``GatewaySite``, ``GatewayResource``, ``Forwarder``) on loopback in front of
the scripted upstream of :mod:`tests.gateway.test_upstream_client`; clients speak raw HTTP.
"""

from __future__ import annotations

from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial.unittest import TestCase

from tests.gateway.test_upstream_client import OK, _Server, _Upstream, answer
from tests.integration.test_gateway_http import (
    connect_raw,
    http_proxy,
    raw_exchange,
    reactor,
    snapshot,
    start_gateway,
)


def request(method: bytes = b"GET", close: bool = True, body: bytes | None = None) -> bytes:
    """A raw request to ``app.test``."""
    lines = [method + b" /x HTTP/1.1", b"Host: app.test"]
    if close:
        lines.append(b"Connection: close")
    if body is not None:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


class OddUpstreamTests(TestCase):
    """What a client sees when the upstream is unusual."""

    async def start(self, upstream: _Upstream) -> int:
        """Listen with ``upstream`` and start a gateway in front; returns the gateway's port."""
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(upstream)
        self.addCleanup(port.stopListening)

        def close() -> None:
            for server in upstream.connections:
                if server.transport is not None:
                    server.transport.abortConnection()

        self.addCleanup(close)
        url = f"http://127.0.0.1:{port.getHost().port}"
        gw = await start_gateway(self, snapshot(http_proxy(url)))
        return gw.number

    async def test_stale_kept_alive_connection_is_retried_for_a_get(self) -> None:
        """The upstream drops its kept-alive connection at the next request: a GET is retried
        on a new connection and answered; a POST is not retried (502)."""
        served: list[_Server] = []

        def script(server: _Server, _head: bytes) -> None:
            assert server.transport is not None
            if server in served:
                server.transport.abortConnection()  # stale: the second request on it dies
            else:
                served.append(server)
                server.transport.write(OK)

        upstream = _Upstream(script)
        port = await self.start(upstream)
        first = await raw_exchange(self, port, request())
        self.assertTrue(first.startswith(b"HTTP/1.1 200"), first)
        second = await raw_exchange(self, port, request())
        self.assertTrue(second.startswith(b"HTTP/1.1 200"), second)
        self.assertEqual(len(upstream.connections), 2)
        await raw_exchange(self, port, request())  # the third connection is the kept one now
        posted = await raw_exchange(self, port, request(b"POST", body=b"abc"))
        self.assertTrue(posted.startswith(b"HTTP/1.1 502"), posted)

    async def test_connection_nominated_and_hop_by_hop_response_headers_are_dropped(
        self,
    ) -> None:
        """``Connection: X-Secret`` removes X-Secret; Keep-Alive never reaches the client."""
        head = (
            b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n"
            b"set-cookie: a=1\r\nX-Kept: 2\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok"
        )
        port = await self.start(_Upstream(answer(head)))
        got = await raw_exchange(self, port, request())
        top, _, body = got.partition(b"\r\n\r\n")
        self.assertEqual(body, b"ok")
        self.assertNotIn(b"x-secret", top.lower())
        self.assertNotIn(b"keep-alive", top.lower())
        self.assertIn(b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Kept: 2", top)
        self.assertIn(b"Content-Length: 2", top)

    async def test_close_delimited_answer_reaches_the_client_whole(self) -> None:
        """No length and no chunks: the gateway relays until the upstream closes, then ends."""
        port = await self.start(
            _Upstream(answer(b"HTTP/1.1 200 OK\r\n\r\n" + b"z" * 100_000, close=True))
        )
        got = await raw_exchange(self, port, request())
        _, _, body = got.partition(b"\r\n\r\n")
        self.assertTrue(got.startswith(b"HTTP/1.1 200"), got[:100])
        self.assertIn(b"Transfer-Encoding: chunked", got.partition(b"\r\n\r\n")[0])
        self.assertEqual(body.count(b"z"), 100_000)
        self.assertTrue(body.endswith(b"0\r\n\r\n"))

    async def test_interim_answer_is_not_relayed(self) -> None:
        """A 100 Continue from the upstream is skipped; the client sees the final answer."""
        port = await self.start(_Upstream(answer(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)))
        got = await raw_exchange(self, port, request())
        self.assertTrue(got.startswith(b"HTTP/1.1 200 OK\r\n"), got)
        self.assertTrue(got.endswith(b"hello"))

    async def test_broken_answer_is_502_and_named(self) -> None:
        """A status line that is not HTTP gets 502 saying so (not "unreachable")."""
        port = await self.start(_Upstream(answer(b"SSH-2.0-OpenSSH\r\n\r\n")))
        got = await raw_exchange(self, port, request())
        self.assertTrue(got.startswith(b"HTTP/1.1 502"), got)
        self.assertTrue(got.endswith(b"bad gateway: the upstream's answer is not HTTP\n"), got)

    async def test_bare_lf_answer_is_relayed_with_crlf(self) -> None:
        """A head in bare LFs (a CGI script's) is read, and the client gets a CRLF head."""
        port = await self.start(
            _Upstream(answer(b"HTTP/1.1 200 OK\nX-Cgi: 1\nContent-Length: 2\n\nok"))
        )
        got = await raw_exchange(self, port, request())
        top, _, body = got.partition(b"\r\n\r\n")
        self.assertTrue(top.startswith(b"HTTP/1.1 200 OK\r\n"), got)
        self.assertIn(b"\r\nX-Cgi: 1\r\n", top + b"\r\n")
        self.assertNotIn(b"\n", top.replace(b"\r\n", b""))
        self.assertEqual(body, b"ok")

    async def test_upstream_dying_mid_body_aborts_the_client(self) -> None:
        """Content-Length 100, 5 bytes, close: the client's connection is cut, never finished
        (whatever of the answer was already on its way stays short of 100 bytes)."""
        port = await self.start(
            _Upstream(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", close=True))
        )
        client = await connect_raw(self, port)
        assert client.transport is not None
        client.transport.write(request(close=False))
        got = await client.closed.addTimeout(5, reactor)
        self.assertLess(len(got.partition(b"\r\n\r\n")[2]), 100)
