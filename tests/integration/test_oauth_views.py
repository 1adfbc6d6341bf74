# treq and twisted.web are untyped; mypy strict would flag every call into them
# mypy: disable-error-code="no-untyped-call"
"""The seed's ``oauth-health`` and ``/resources`` as read-only views of the real daemon."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests.cli.test_proxy_route_service import Ctl, new_token
from tests.integration.test_oauth_guard import start_auth_gateway, wait_until
from tests.support.backends import start_backend


class OAuthViewTests(TestCase):
    """``/oauth/health``, ``/resources`` and their commands."""

    timeout = 120

    async def test_health_and_resources_show_what_exists(self) -> None:
        """MCP-1, MCP-3: the server's state and each protected proxy's resource, read-only."""
        gateway = await start_auth_gateway(self)
        backend = await start_backend(self, reactor)
        await gateway.protect("a.test", backend, required_scopes=["mcp:read"])
        ctl = Ctl(self, gateway.daemon.api_url, gateway.admin)

        async def ready() -> bool:
            health = await ctl.json("oauth", "health")
            return bool(health["state"] == "ready" and health["protected_resources"] == 1)

        await wait_until(ready, 5.0)
        health = await ctl.json("oauth", "health")
        self.assertEqual(health["issuer"], gateway.issuer)
        self.assertEqual(health["registration"], "open")
        self.assertEqual(
            health["metadata_url"], f"{gateway.issuer}/.well-known/oauth-authorization-server"
        )
        self.assertTrue(health["signing_key"])
        self.assertIsNone(health["problem"])
        [resource] = await ctl.json("oauth", "resources", "list")
        url = gateway.resource("a.test")
        self.assertEqual(
            resource,
            {
                "hostname": "a.test",
                "resource": url,
                "metadata_url": f"{url}/.well-known/oauth-protected-resource",
                "authorization_servers": [gateway.issuer],
                "auth_mode": "forward",
                "required_scopes": ["mcp:read"],
                "required_users": [],
                "excluded_paths": [],
            },
        )
        self.assertEqual(await ctl.json("oauth", "resources", "show", "a.test"), resource)
        line = await ctl.fails("oauth", "resources", "show", "nope.test")
        self.assertIn("404", line)

    async def test_resources_follow_ownership(self) -> None:
        """A token sees only the protected proxies it owns (others' do not exist for it)."""
        gateway = await start_auth_gateway(self)
        backend = await start_backend(self, reactor)
        await gateway.protect("a.test", backend)
        ctl = Ctl(self, gateway.daemon.api_url, gateway.admin)
        other = await new_token(gateway.daemon, ctl, "other")
        self.assertEqual(await ctl.json("oauth", "resources", "list", token=other), [])
        _, err, code = await ctl.run("oauth", "resources", "show", "a.test", token=other)
        self.assertEqual(code, 1, err)
        self.assertIn("404", err)
