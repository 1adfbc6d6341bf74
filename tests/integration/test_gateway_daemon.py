"""The gateway inside the real daemon: ``twistd -n oauthproxy`` serving user traffic.

Each test starts one daemon (embedded redis-server, HTTP and HTTPS listeners on
free loopback ports) and real backends, then changes records through the admin
API (or, for certificates, straight in the daemon's store) and checks that the
next request or handshake sees the change, with no restart.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import treq
from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from oauthproxy.bootstrap import open_storage
from oauthproxy.config import Config
from tests.support.backends import Backend, start_backend
from tests.support.daemon import DaemonProcess, free_port, start_daemon
from tests.support.tls import TestAuthority, probe_tls

#: how long a change may take to reach the data plane (issue 3: "within one second")
LIVE_WITHIN = 1.0
#: the daemon's ACME issuing service runs too: keep it on loopback, whatever it finds due
LOOPBACK_ACME = {
    "ACME_DIRECTORY_URL": "https://127.0.0.1:1/directory",
    "ACME_STAGING_URL": "https://127.0.0.1:1/directory",
}


class Gateway:
    """A daemon with HTTP and HTTPS listeners, and an HTTP client for its gateway."""

    def __init__(self, test: TestCase, daemon: DaemonProcess, http: int, https: int) -> None:
        self.daemon = daemon
        self.http_port = http
        self.https_port = https
        token = daemon.admin_token
        assert token is not None, "\n".join(daemon.output[-10:])
        self.token = token
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        test.addCleanup(self.pool.closeCachedConnections)

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call the admin API as the admin: ``(status, decoded JSON or None)``."""
        headers = {"Authorization": [f"Bearer {self.token}"]}
        data = None
        if body is not None:
            headers["Content-Type"] = ["application/json"]
            data = json.dumps(body).encode()
        response = await treq.request(
            method,
            self.daemon.api_url + path,
            data=data,
            headers=headers,
            pool=self.pool,
            timeout=10,
        )
        content = await treq.content(response)
        return response.code, json.loads(content) if content else None

    async def get(self, host: str, path: str = "/") -> int:
        """``GET path`` on the HTTP listener with ``Host: host``; the status."""
        url = f"http://127.0.0.1:{self.http_port}{path}"
        response = await treq.get(url, headers={"Host": [host]}, pool=self.pool, timeout=10)
        await treq.content(response)
        code: int = response.code
        return code

    async def wait_for_status(self, host: str, status: int, path: str = "/") -> float:
        """Seconds until ``GET`` for ``host`` answers ``status`` (fails after LIVE_WITHIN)."""
        started = reactor.seconds()
        code = None
        while reactor.seconds() - started <= LIVE_WITHIN:
            code = await self.get(host, path)
            if code == status:
                return reactor.seconds() - started
            await task.deferLater(reactor, 0.02, lambda: None)
        raise AssertionError(f"{host}{path} still answers {code}, not {status}, after 1 s")


async def start_gateway(test: TestCase, extra: Sequence[str] = ()) -> Gateway:
    """One daemon with the gateway on free HTTP and HTTPS ports (``extra`` arguments too)."""
    http, https = free_port(), free_port()
    args = [
        "--http",
        f"tcp:{http}:interface=127.0.0.1",
        "--https",
        f"tcp:{https}:interface=127.0.0.1",
        *extra,
    ]
    daemon = await start_daemon(test, args=args, env=LOOPBACK_ACME)
    await daemon.wait_for(lambda body: set(body.get("listeners", {})) >= {"api", "http", "https"})
    return Gateway(test, daemon, http, https)


class GatewayDaemonTests(TestCase):
    """Records changed while the daemon runs are live on the next request."""

    timeout = 90

    async def test_proxy_created_through_the_api_serves_then_404_after_deletion(self) -> None:
        """A proxy created with ``POST /proxy/targets/`` serves within 1 s; deleted, 404."""
        gateway = await start_gateway(self)
        backend = await start_backend(self, reactor)
        self.assertEqual(await gateway.get("app.test"), 404)
        code, body = await gateway.api(
            "POST",
            "/proxy/targets/",
            {"hostname": "app.test", "target_url": backend.url, "enable_https": False},
        )
        self.assertEqual(code, 201, body)
        await gateway.wait_for_status("app.test", 200)
        self.assertEqual(backend.state.requests[-1]["uri"], "/")
        code, body = await gateway.api("DELETE", "/proxy/targets/app.test")
        self.assertIn(code, (200, 204), body)
        await gateway.wait_for_status("app.test", 404)

    async def test_proxied_requests_reach_the_request_log(self) -> None:
        """A request through the gateway is queryable at ``/logs/host/{hostname}`` soon after."""
        gateway = await start_gateway(self)
        backend = await start_backend(self, reactor)
        code, body = await gateway.api(
            "POST",
            "/proxy/targets/",
            {"hostname": "logged.test", "target_url": backend.url, "enable_https": False},
        )
        self.assertEqual(code, 201, body)
        await gateway.wait_for_status("logged.test", 200, "/some/path?secret=x")
        items: list[Any] = []
        for _ in range(50):  # the writer flushes every second
            code, body = await gateway.api("GET", "/logs/host/logged.test")
            self.assertEqual(code, 200, body)
            items = body["items"]
            if items:
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        self.assertTrue(items, "no request-log record after 5 s")
        self.assertEqual(
            (items[0]["host"], items[0]["path"], items[0]["status"]),
            ("logged.test", "/some/path", 200),
        )
        self.assertIsNotNone(items[0]["duration"], "the gateway notes when a request arrives")

    async def test_route_change_is_live_on_the_next_request(self) -> None:
        """A route added, then pointed at another backend, is followed by the next request."""
        gateway = await start_gateway(self)
        first, second = await start_backend(self, reactor), await start_backend(self, reactor)
        other = await start_backend(self, reactor)
        code, body = await gateway.api(
            "POST",
            "/proxy/targets/",
            {"hostname": "routed.test", "target_url": other.url, "enable_https": False},
        )
        self.assertEqual(code, 201, body)
        await gateway.wait_for_status("routed.test", 200, "/api/x")
        code, route = await gateway.api(
            "POST",
            "/routes/",
            {"path_pattern": "/api/", "target_type": "url", "target_value": first.url},
        )
        self.assertEqual(code, 201, route)
        await self.wait_until_served_by(gateway, first, "routed.test", "/api/x")
        code, body = await gateway.api(
            "PATCH", f"/routes/{route['route_id']}", {"target_value": second.url}
        )
        self.assertEqual(code, 200, body)
        await self.wait_until_served_by(gateway, second, "routed.test", "/api/x")

    async def wait_until_served_by(
        self, gateway: Gateway, backend: Backend, host: str, path: str
    ) -> None:
        """Within LIVE_WITHIN, a request for ``host`` + ``path`` reaches ``backend``."""
        started = reactor.seconds()
        while reactor.seconds() - started <= LIVE_WITHIN:
            seen = len(backend.state.requests)
            self.assertEqual(await gateway.get(host, path), 200)
            if len(backend.state.requests) > seen:
                return
            await task.deferLater(reactor, 0.02, lambda: None)
        self.fail(f"{host}{path} did not reach {backend.url} within 1 s")

    async def test_stored_certificate_is_presented_by_the_next_handshake(self) -> None:
        """A certificate written to the store is served for its name without restart."""
        gateway = await start_gateway(self)
        before = await probe_tls(reactor, gateway.https_port, "secure.test")
        self.assertIsNone(before.error)
        self.assertNotEqual(before.common_name, "secure.test")  # the fallback
        storage = open_storage(Config(data_dir=gateway.daemon.data_dir), reactor)
        self.addCleanup(storage.close)
        certificate = TestAuthority.create().issue("secure.test")
        await storage.certificates.create(certificate)
        started = reactor.seconds()
        outcome = before
        while reactor.seconds() - started <= LIVE_WITHIN:
            outcome = await probe_tls(reactor, gateway.https_port, "secure.test")
            if outcome.common_name == "secure.test":
                break
            await task.deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(outcome.common_name, "secure.test")
        self.assertEqual(outcome.alpn, b"h2")
