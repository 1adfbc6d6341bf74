"""Strict HTTP/1.1 framing at the gateway, on the wire, against the real daemon.

Issue 10, defects 6 and 7 (and 5 for the admin listener): limits answer with the right
status instead of silence, and ambiguous requests never reach the upstream (RFC
9110/9112).  Every test writes raw bytes to a real ``twistd
oauthproxy`` and reads the raw answer; the upstream is a bare TCP server that records
every byte it gets, so "nothing was forwarded" is checked, not assumed.  The rules
live in :mod:`oauthproxy.serving.framing`; these tests stay valid whatever parser
applies them.
"""

from __future__ import annotations

import json

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from tests.support.backends import Backend, RawUpstream, start_backend, start_raw_upstream
from tests.support.daemon import DaemonProcess, free_port, start_daemon
from tests.support.wire import exchange

HOST = "app.test"
RAW = "raw.test"


class Gateway:
    """One daemon; ``app.test`` goes to an echo backend, ``raw.test`` to a byte recorder."""

    daemon: DaemonProcess
    port: int
    backend: Backend
    raw: RawUpstream

    async def start(self, test: TestCase, **env: str) -> Gateway:
        """Start the daemon and both upstreams, create the two proxies."""
        self.port = free_port()
        self.daemon = await start_daemon(
            test, args=["--http", f"tcp:{self.port}:interface=127.0.0.1"], env=env
        )
        await self.daemon.wait_for(lambda body: "http" in body.get("listeners", {}))
        self.backend = await start_backend(test, reactor)
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        self.raw = await start_raw_upstream(test, reactor, RawUpstream(answer=answer))
        for host, url in ((HOST, self.backend.url), (RAW, self.raw.url)):
            code, body = await self.daemon.post(
                "/proxy/targets/",
                {"hostname": host, "target_url": url, "enable_https": False},
                token=self.daemon.admin_token,
            )
            test.assertEqual(code, 201, body)
        return self

    async def send(self, test: TestCase, data: bytes, timeout: float = 5.0) -> bytes:
        """Send ``data``; the whole answer (the gateway must close after it)."""
        return await exchange(test, self.port, data, timeout=timeout)

    async def nothing_forwarded(self) -> bool:
        """Whether the byte recorder got no byte (after a moment for stragglers)."""
        await task.deferLater(reactor, 0.2, lambda: None)
        return self.raw.received == 0

    def echoed_headers(self) -> dict[str, str]:
        """The headers the echo backend saw on its last request (names lower case)."""
        return {name.lower(): value for name, value in self.backend.state.requests[-1]["headers"]}


def status_of(answer: bytes) -> int:
    """The status code of a raw answer."""
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    return int(answer[9:12])


class LimitTests(TestCase):
    """Defect 6: limits answer 414/431/501 as documented, never with silence."""

    timeout = 120

    async def test_long_header_line_within_the_head_limit_is_served(self) -> None:
        """A 20 KiB header line fits the documented 64 KiB head: forwarded (was dropped)."""
        gw = await Gateway().start(self)
        value = "v" * 20_000
        head = f"GET / HTTP/1.1\r\nHost: {RAW}\r\nX-Big: {value}\r\nConnection: close\r\n\r\n"
        answer = await gw.send(self, head.encode())
        self.assertEqual(status_of(answer), 200)
        self.assertIn(f"X-Big: {value}\r\n".encode(), bytes(gw.raw.data))

    async def test_head_over_the_limit_is_431(self) -> None:
        """Headers adding up to more than 64 KiB: 431, nothing forwarded."""
        gw = await Gateway().start(self)
        headers = "".join(f"X-Big-{n}: {'v' * 20_000}\r\n" for n in range(4))
        answer = await gw.send(self, f"GET / HTTP/1.1\r\nHost: {RAW}\r\n{headers}\r\n".encode())
        self.assertEqual(status_of(answer), 431)
        self.assertTrue(await gw.nothing_forwarded())

    async def test_too_many_headers_is_431(self) -> None:
        """More headers than ``OAUTHPROXY_MAX_HEADER_COUNT``: 431 (was a bare 400)."""
        gw = await Gateway().start(self)
        headers = "".join(f"X-H{n}: 1\r\n" for n in range(150))
        answer = await gw.send(self, f"GET / HTTP/1.1\r\nHost: {RAW}\r\n{headers}\r\n".encode())
        self.assertEqual(status_of(answer), 431)
        self.assertTrue(await gw.nothing_forwarded())

    async def test_request_line_over_the_limit_is_414(self) -> None:
        """A request line longer than the head limit: 414 (was a silent close)."""
        gw = await Gateway().start(self)
        answer = await gw.send(
            self, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: raw.test\r\n\r\n"
        )
        self.assertEqual(status_of(answer), 414)
        self.assertTrue(await gw.nothing_forwarded())

    async def test_ten_kilobyte_method_is_refused(self) -> None:
        """A valid but absurd method name is not forwarded."""
        gw = await Gateway().start(self)
        answer = await gw.send(self, b"A" * 10_000 + b" / HTTP/1.1\r\nHost: raw.test\r\n\r\n")
        self.assertIn(status_of(answer), (400, 501))
        self.assertTrue(await gw.nothing_forwarded())


class AmbiguityTests(TestCase):
    """Defect 7: what an upstream could read differently never reaches it (400)."""

    timeout = 120

    async def refused(self, gw: Gateway, data: bytes) -> None:
        """``data`` gets 400 and the byte recorder gets nothing."""
        answer = await gw.send(self, data)
        self.assertEqual(status_of(answer), 400, data[:80])
        self.assertTrue(await gw.nothing_forwarded(), data[:80])

    async def test_host_with_userinfo_or_bad_port_is_400(self) -> None:
        """``Host`` must be host[:port]: userinfo, a non-numeric or empty port, spaces refused."""
        gw = await Gateway().start(self)
        for host in (b"user@raw.test", b"raw.test:abc", b"raw.test:", b"raw.test:99999",
                     b"raw test", b"raw.test:80:80"):  # fmt: skip
            await self.refused(gw, b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")

    async def test_absolute_form_with_userinfo_is_400(self) -> None:
        """An absolute-form target may not carry userinfo either."""
        gw = await Gateway().start(self)
        await self.refused(gw, b"GET http://u:p@raw.test/ HTTP/1.1\r\nHost: raw.test\r\n\r\n")

    async def test_malformed_chunk_sizes_are_400_before_anything_is_forwarded(self) -> None:
        """Non-hex, signed, prefixed, overlong and overflowing chunk sizes: 400, and the
        upstream sees not even the request head."""
        gw = await Gateway().start(self)
        for size in (b"zz", b"+5", b"-5", b"0x5", b" 5", b"5 ", b"1" * 17, b"f" * 40):
            head = b"POST / HTTP/1.1\r\nHost: raw.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            await self.refused(gw, head + size + b"\r\nhello\r\n0\r\n\r\n")

    async def test_bare_lf_is_400_at_once(self) -> None:
        """LF without CR ends no line in HTTP/1.1: 400 at once (the client waited 30 s)."""
        gw = await Gateway().start(self)
        for data in (
            b"GET / HTTP/1.1\nHost: raw.test\n\n",
            b"GET / HTTP/1.1\r\nHost: raw.test\nX: y\r\n\r\n",
        ):
            await self.refused(gw, data)

    async def test_invalid_method_tokens_are_400(self) -> None:
        """A method must be a token (RFC 9110 §9.1)."""
        gw = await Gateway().start(self)
        for method in (b"G(ET", b"GE\x01T", b"G\xc3\xa9T", b"GET,"):
            await self.refused(gw, method + b" / HTTP/1.1\r\nHost: raw.test\r\n\r\n")

    async def test_valid_chunked_body_is_forwarded(self) -> None:
        """The strict rules leave a well-formed chunked request alone."""
        gw = await Gateway().start(self)
        head = b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n"
        body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\n"
        answer = await gw.send(self, head + b"Connection: close\r\n\r\n" + body)
        self.assertEqual(status_of(answer), 200)
        self.assertEqual(json.loads(answer.partition(b"\r\n\r\n")[2])["body_length"], 15)


class AdminListenerTests(TestCase):
    """Defect 5: the admin API's listener applies the same rules."""

    timeout = 60

    async def test_admin_listener_answers_414_for_a_long_request_line(self) -> None:
        """A request line over the limit gets 414, not a dropped connection."""
        daemon = await start_daemon(self)
        target = b"/tokens/" + b"a" * 70_000
        answer = await exchange(self, daemon.api_port, b"GET " + target + b" HTTP/1.1\r\n\r\n")
        self.assertEqual(status_of(answer), 414)

    async def test_admin_listener_refuses_bare_lf_at_once(self) -> None:
        """The admin API does not wait out its head deadline for a bare-LF request."""
        daemon = await start_daemon(self)
        answer = await exchange(self, daemon.api_port, b"GET /health HTTP/1.1\nHost: a\n\n")
        self.assertEqual(status_of(answer), 400)
