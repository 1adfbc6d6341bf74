"""A daemon whose OAuth server cannot work says so, and refuses OAuth protection (issue 11).

Without ``BASE_DOMAIN``/``OAUTHPROXY_OAUTH_ISSUER`` there is no authorization server;
before, ``proxy auth-enable`` still succeeded, the proxy's metadata said
``"authorization_servers": [""]`` and nothing warned.  Now the daemon logs it at start,
enabling OAuth on a proxy or a route is refused with a message saying what to set, and a
proxy already protected (from an earlier configuration) says it has no server.
"""

from __future__ import annotations

import json

import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from oauthproxy.bootstrap import open_storage
from oauthproxy.config import Config
from oauthproxy.model import Proxy, ProxyAuth
from tests.cli.test_auth_token import Daemon, eventually
from tests.integration.test_oauth_guard import LOOPBACK_ACME
from tests.support.backends import start_backend
from tests.support.daemon import OAUTH_ON, free_port, start_daemon


class OAuthOffTests(TestCase):
    """No issuer configured."""

    timeout = 120

    async def setUp(self) -> None:
        """A daemon without any OAuth setting, its gateway on a loopback port."""
        self.port = free_port()
        daemon = await start_daemon(
            self, args=["--http", f"tcp:{self.port}:interface=127.0.0.1"], env=LOOPBACK_ACME
        )
        self.daemon = Daemon(self, daemon)
        code, body = await daemon.post(
            "/proxy/targets/",
            {"hostname": "a.test", "target_url": "http://127.0.0.1:9", "enable_https": False},
            self.daemon.admin,
        )
        assert code == 201, body

    async def test_start_says_oauth_is_off_and_what_to_set(self) -> None:
        """The log names the settings that turn the authorization server on."""
        lines = [
            line for line in self.daemon.daemon.output if "OAuth authorization server off" in line
        ]
        self.assertEqual(len(lines), 1, self.daemon.daemon.output[-20:])
        self.assertIn("OAUTHPROXY_OAUTH_ISSUER", lines[0])
        self.assertIn("BASE_DOMAIN", lines[0])

    async def test_health_shows_oauth_off(self) -> None:
        """/health says the authorization server is off and what to set."""
        _, health = await self.daemon.daemon.health()
        self.assertEqual(health["oauth"]["state"], "off")
        self.assertIsNone(health["oauth"]["issuer"])
        self.assertIn("OAUTHPROXY_OAUTH_ISSUER", health["oauth"]["problem"])

    async def test_oauth_health_view_says_off(self) -> None:
        """``oauthproxyctl oauth health`` (the seed's oauth-health) says off and why."""
        health = await self.daemon.json("oauth", "health")
        self.assertEqual((health["state"], health["issuer"]), ("off", None))
        self.assertIn("BASE_DOMAIN", health["problem"])

    async def test_enabling_oauth_is_refused_naming_the_settings(self) -> None:
        """The API answers 409 naming what to set; nothing is stored."""
        code, body = await self.daemon.daemon.post(
            "/proxy/targets/a.test/auth", {"auth_type": "oauth"}, self.daemon.admin
        )
        self.assertEqual(code, 409, body)
        self.assertEqual(body["field"], "/auth_type")
        self.assertIn("OAUTHPROXY_OAUTH_ISSUER", body["detail"])
        code, shown = await self.daemon.daemon.get("/proxy/targets/a.test/auth", self.daemon.admin)
        self.assertEqual((code, shown["auth"]), (200, None))

    async def test_cli_auth_enable_fails_with_one_line(self) -> None:
        """``oauthproxyctl proxy auth-enable`` exits non-zero with the message."""
        out, err, code = await self.daemon.run("proxy", "auth-enable", "a.test", "auth.test")
        self.assertNotEqual(code, 0, out)
        self.assertIn("OAUTHPROXY_OAUTH_ISSUER", err)

    async def test_route_oauth_is_refused_too(self) -> None:
        """A route cannot require OAuth tokens nobody can issue either."""
        code, body = await self.daemon.daemon.post(
            "/routes/",
            {"route_id": "r1", "path_pattern": "/x", "target_type": "url",
             "target_value": "http://127.0.0.1:9"},
            self.daemon.admin,
        )  # fmt: skip
        self.assertEqual(code, 201, body)
        refused = await _put(self.daemon, "/routes/r1/auth", {"auth_type": "oauth"})
        self.assertEqual(refused[0], 409, refused[1])

    async def test_protected_proxy_from_before_names_no_empty_server(self) -> None:
        """A proxy protected under an earlier configuration: its metadata is 503, not [""]."""
        backend = await start_backend(self, reactor)
        storage = open_storage(Config(data_dir=self.daemon.daemon.data_dir), reactor)
        self.addCleanup(storage.close)
        await storage.proxies.create(
            Proxy("b.test", backend.url, enable_https=False, auth=ProxyAuth(auth_type="oauth"))
        )

        async def served() -> bool:
            status, _ = await _gateway_get(
                self.port, "b.test", "/.well-known/oauth-protected-resource"
            )
            return status != 404

        self.assertTrue(await eventually(served))
        status, body = await _gateway_get(
            self.port, "b.test", "/.well-known/oauth-protected-resource"
        )
        self.assertEqual(status, 503, body)
        self.assertNotIn('""', body)
        self.assertEqual(json.loads(body)["error"], "temporarily_unavailable")


async def _put(daemon: Daemon, path: str, body: object) -> tuple[int, object]:
    """``PUT`` JSON on the admin API as the admin."""
    response = await treq.put(
        daemon.daemon.api_url + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": [f"Bearer {daemon.admin}"], "Content-Type": ["application/json"]},
        pool=daemon.daemon.pool,
        timeout=10,
    )
    return response.code, json.loads(await treq.content(response))


async def _gateway_get(port: int, host: str, path: str) -> tuple[int, str]:
    """``GET`` on the gateway for ``host``: (status, body text)."""
    pool = HTTPConnectionPool(reactor, persistent=False)
    try:
        response = await treq.get(
            f"http://127.0.0.1:{port}{path}", headers={"Host": [host]}, pool=pool, timeout=10
        )
        return response.code, (await treq.content(response)).decode()
    finally:
        await pool.closeCachedConnections()


class OAuthOnTests(TestCase):
    """A configured authorization server."""

    timeout = 60

    async def test_health_shows_the_ready_server(self) -> None:
        """/health names the issuer once the server is ready; no problem to report."""
        daemon = await start_daemon(self, env={**LOOPBACK_ACME, **OAUTH_ON})
        body = await daemon.wait_for(lambda b: b.get("oauth", {}).get("state") == "ready")
        self.assertEqual(
            body["oauth"],
            {
                "state": "ready",
                "issuer": "https://auth.example.com",
                "github_app": True,
                "problem": None,
            },
        )
