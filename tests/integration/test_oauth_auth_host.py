# treq and twisted.web are untyped; mypy strict would flag every call into them
# mypy: disable-error-code="no-untyped-call"
"""``proxy auth-enable HOST AUTH_HOST``: AUTH_HOST is where the proxy's clients are sent.

In the seed, ``oauth-routes-setup`` and ``proxy-auth-enable HOST AUTH_HOST`` meant that a
protected proxy's clients log in at the authorization server on the auth proxy's host.
This daemon serves one authorization server, at its issuer's host (the gateway answers
that host itself), so AUTH_HOST names that host: it is checked against the issuer and
filled in when left out, and what the proxy tells clients (its protected-resource
metadata, the authorization server metadata at the auth host) is that server.  Before,
``auth_proxy`` was stored and never read: any value was accepted and nothing followed it.
"""

from __future__ import annotations

import json

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests.cli.test_proxy_route_service import Ctl
from tests.integration.test_oauth_guard import AuthGateway, start_auth_gateway, wait_until
from tests.support.backends import start_backend


class AuthHostTests(TestCase):
    """AUTH_HOST through the API, the CLI and what clients see."""

    timeout = 120

    async def setUp(self) -> None:
        """A daemon (issuer http://127.0.0.1:<port>) and an unprotected proxy."""
        self.gateway = await start_auth_gateway(self)
        backend = await start_backend(self, reactor)
        code, body = await self.gateway.api(
            "POST",
            "/proxy/targets/",
            {"hostname": "a.test", "target_url": backend.url, "enable_https": False},
        )
        assert code == 201, body

    async def test_another_auth_host_is_refused_naming_the_issuer(self) -> None:
        """An AUTH_HOST that serves no authorization server here is refused; nothing stored."""
        code, body = await self.gateway.api(
            "POST", "/proxy/targets/a.test/auth", {"auth_type": "oauth", "auth_proxy": "auth.test"}
        )
        self.assertEqual(code, 422, body)
        self.assertEqual(body["field"], "/auth_proxy")
        self.assertIn(self.gateway.issuer, body["detail"])
        code, shown = await self.gateway.api("GET", "/proxy/targets/a.test/auth")
        self.assertEqual((code, shown["auth"]), (200, None))

    async def test_clients_are_sent_to_the_auth_host(self) -> None:
        """The stored AUTH_HOST is the host whose server the proxy's metadata names."""
        code, body = await self.gateway.api(
            "POST", "/proxy/targets/a.test/auth", {"auth_type": "oauth"}
        )
        self.assertEqual(code, 200, body)
        self.assertEqual(body["auth"]["auth_proxy"], "127.0.0.1")
        await _until_protected(self.gateway)
        metadata = await self.gateway.call("a.test", "/.well-known/oauth-protected-resource")
        [server] = json.loads(metadata.body)["authorization_servers"]
        self.assertEqual(server, self.gateway.issuer)
        at_auth_host = await self.gateway.call(
            "127.0.0.1", "/.well-known/oauth-authorization-server"
        )
        self.assertEqual(json.loads(at_auth_host.body)["issuer"], server)

    async def test_cli_with_the_wrong_auth_host_fails_with_one_line(self) -> None:
        """``oauthproxyctl proxy auth-enable HOST AUTH_HOST`` names the right host."""
        ctl = Ctl(self, self.gateway.daemon.api_url, self.gateway.admin)
        line = await ctl.fails("proxy", "auth-enable", "a.test", "auth.test", "forward")
        self.assertIn("127.0.0.1", line)
        shown = await ctl.json("proxy", "auth-enable", "a.test", "127.0.0.1", "forward")
        self.assertEqual(shown["auth"]["auth_proxy"], "127.0.0.1")

    async def test_issuer_override_must_be_this_server(self) -> None:
        """A proxy's metadata cannot name an issuer whose tokens nobody here verifies."""
        code, body = await self.gateway.api(
            "POST", "/proxy/targets/a.test/oauth-server", {"issuer": "https://other.test"}
        )
        self.assertEqual(code, 422, body)
        self.assertEqual(body["field"], "/issuer")
        code, body = await self.gateway.api(
            "POST",
            "/proxy/targets/a.test/resource",
            {"authorization_servers": ["https://other.test"]},
        )
        self.assertEqual(code, 422, body)
        self.assertEqual(body["field"], "/authorization_servers/0")
        code, body = await self.gateway.api(
            "POST", "/proxy/targets/a.test/oauth-server", {"issuer": self.gateway.issuer}
        )
        self.assertEqual(code, 200, body)


async def _until_protected(gateway: AuthGateway) -> None:
    """Wait until the gateway's snapshot has the proxy's auth (it answers 401)."""
    await wait_until(lambda: gateway._protected("a.test"), 2.0)
