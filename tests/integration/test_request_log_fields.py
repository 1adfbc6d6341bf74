"""The request log says which upstream served a request and why an exchange failed.

Issue 10, defect 9: ``upstream`` and ``error`` were always null.  Through the real
daemon, each failure kind is provoked once (connection refused, read timeout, an
upstream cutting its response short, a TLS error, the body limit) and the record's
fields are read back from ``/logs/host/{hostname}``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor, task
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from tests.support.backends import RawUpstream, start_backend, start_raw_upstream
from tests.support.daemon import DaemonProcess, free_port, start_daemon
from tests.support.wire import ConnectionDropped, WireClient


class _CutShort(Protocol):
    """Answers with a head promising 100 bytes, sends 10, then dies (0.2 s later)."""

    def dataReceived(self, data: bytes) -> None:
        """Answer the first request badly."""
        transport: Any = self.transport
        transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        reactor.callLater(0.2, transport.abortConnection)


class _NotTLS(Protocol):
    """A plain-HTTP server that answers a TLS ClientHello with plain text and hangs up."""

    def dataReceived(self, data: bytes) -> None:
        """Not TLS."""
        transport: Any = self.transport
        transport.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
        transport.loseConnection()


class RequestLogFieldTests(TestCase):
    """``upstream`` and ``error`` of the request log, per failure kind."""

    timeout = 120

    async def start(self) -> None:
        """A daemon with a small body limit and one proxy per failure kind."""
        self.port = free_port()
        self.daemon: DaemonProcess = await start_daemon(
            self,
            args=["--http", f"tcp:{self.port}:interface=127.0.0.1"],
            env={"OAUTHPROXY_MAX_REQUEST_BODY": "1000"},
        )
        await self.daemon.wait_for(lambda body: "http" in body.get("listeners", {}))
        backend = await start_backend(self, reactor)
        self.backend_url = backend.url
        silent = await start_raw_upstream(self, reactor, RawUpstream(stall=True))
        cut, plain = [
            await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
                Factory.forProtocol(kind)
            )
            for kind in (_CutShort, _NotTLS)
        ]
        self.addCleanup(cut.stopListening)
        self.addCleanup(plain.stopListening)
        self.closed_port = free_port()
        targets = {
            "ok.test": (backend.url, {}),
            "refused.test": (f"http://127.0.0.1:{self.closed_port}", {}),
            "slow.test": (silent.url, {"read_timeout": 1}),
            "cut.test": (f"http://127.0.0.1:{cut.getHost().port}", {}),
            "tls.test": (f"https://127.0.0.1:{plain.getHost().port}", {}),
        }
        for host, (url, extra) in targets.items():
            code, body = await self.daemon.post(
                "/proxy/targets/",
                {"hostname": host, "target_url": url, "enable_https": False, **extra},
                token=self.daemon.admin_token,
            )
            self.assertEqual(code, 201, body)

    async def request(self, host: str, data: bytes = b"") -> int:
        """One request for ``host`` (``data``: a POST body); the status, or -1 if cut."""
        method = b"POST" if data else b"GET"
        head = b"%s / HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n" % (
            method,
            host.encode(),
            len(data),
        )
        wire = await WireClient.connect(self, self.port)
        try:
            return (await wire.request(head + data)).status
        except ConnectionDropped:
            return -1

    async def record(self, host: str) -> dict[str, Any]:
        """The newest request-log record of ``host`` (the writer flushes every second)."""
        for _ in range(50):
            code, body = await self.daemon.get(f"/logs/host/{host}", token=self.daemon.admin_token)
            self.assertEqual(code, 200, body)
            if body["items"]:
                item: dict[str, Any] = body["items"][0]
                return item
            await task.deferLater(reactor, 0.1, lambda: None)
        raise AssertionError(f"no request-log record for {host}")

    async def test_each_failure_kind_is_named_with_the_upstream_used(self) -> None:
        """Refused, read timeout, cut short, TLS, body limit; and a success has no error."""
        await self.start()
        self.assertEqual(await self.request("ok.test"), 200)
        self.assertEqual(await self.request("refused.test"), 502)
        self.assertEqual(await self.request("slow.test"), 504)
        self.assertEqual(await self.request("cut.test"), -1)
        self.assertEqual(await self.request("tls.test"), 502)
        self.assertEqual(await self.request("ok.test", b"x" * 5000), 413)
        ok = await self.record("ok.test")
        self.assertEqual(ok["upstream"], self.backend_url)
        expected = {
            "refused.test": "upstream refused the connection",
            "slow.test": "upstream read timed out (1 s)",
            "cut.test": "upstream cut the response short",
            "tls.test": "upstream TLS error",
        }
        seen = {}
        for host in expected:
            record = await self.record(host)
            self.assertIsNotNone(record["upstream"], record)
            seen[host] = record["error"] or ""
        for host, text in expected.items():
            self.assertTrue(seen[host].startswith(text), (host, seen[host]))
        self.assertEqual(
            (await self.record("refused.test"))["upstream"], f"http://127.0.0.1:{self.closed_port}"
        )
        # the 413 is the newest record of ok.test
        self.assertEqual(
            (await self.record("ok.test"))["error"], "request body over the limit (1000 bytes)"
        )
        code, errors = await self.daemon.get("/logs/errors", token=self.daemon.admin_token)
        self.assertEqual(code, 200)
        self.assertGreaterEqual(len(errors["items"]), 5)
