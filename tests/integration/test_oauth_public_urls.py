# treq and twisted.web are untyped; mypy strict would flag every call into them
# mypy: disable-error-code="no-untyped-call"
"""Public URLs of protected proxies come from the listener that serves them (ATK-8, MCP-3).

A proxy's resource URI (its tokens' audience, its metadata URL, the URL in its 401
challenges) is ``https://<host>`` plus the HTTPS listener's port when that is not 443,
or ``http://<host>:<port>`` for an HTTP-only proxy; ``OAUTHPROXY_PUBLIC_HTTPS_PORT`` and
``OAUTHPROXY_PUBLIC_HTTP_PORT`` name the ports clients use when a balancer or port
forward sits in front, and a proxy's own ``resource`` setting overrides it per proxy.
Before, every URL was ``https://<host>``, so a daemon not on 443 (every local trial)
sent clients to a port where nothing listened (MCP-3: clients reject a mismatch).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlencode, urlsplit

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from oauthproxy.oauth.pkce import s256_challenge
from tests.integration.test_oauth_guard import (
    REDIRECT,
    VERIFIER,
    start_auth_gateway,
    wait_until,
)
from tests.support.backends import start_backend
from tests.support.daemon import free_port


def authorize_url(issuer: str, client_id: str, resource: str) -> str:
    """An /authorize URL asking for a token for ``resource`` (RFC 8707)."""
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "code_challenge": s256_challenge(VERIFIER),
        "code_challenge_method": "S256",
        "resource": resource,
    }
    return f"{issuer}/authorize?{urlencode(query)}"


class PublicUrlTests(TestCase):
    """MCP-3, ATK-8: what clients are told is where the daemon listens."""

    timeout = 120

    async def test_http_only_proxy_is_described_at_its_listener(self) -> None:
        """MCP-2, MCP-3: a local trial's challenge and metadata name http://host:port."""
        gateway = await start_auth_gateway(self)
        backend = await start_backend(self, reactor)
        await gateway.protect("a.test", backend)
        resource = f"http://a.test:{gateway.port}"
        refused = await gateway.call("a.test", "/mcp")
        [challenge] = refused.headers.getRawHeaders(b"www-authenticate")
        expected = f'resource_metadata="{resource}/.well-known/oauth-protected-resource"'
        self.assertIn(expected.encode(), challenge)
        metadata = await gateway.call("a.test", "/.well-known/oauth-protected-resource")
        self.assertEqual(json.loads(metadata.body)["resource"], resource)
        _, token = await gateway.login(resource)
        self.assertEqual((await gateway.call("a.test", "/mcp", token)).code, 200)

    async def test_https_proxy_resource_names_the_https_port(self) -> None:
        """MCP-3: with HTTPS on a port other than 443, the resource carries that port."""
        https = free_port()
        gateway = await start_auth_gateway(
            self, args=["--https", f"tcp:{https}:interface=127.0.0.1"]
        )
        await gateway.daemon.wait_for(lambda body: "https" in body.get("listeners", {}))
        backend = await start_backend(self, reactor)
        code, body = await gateway.api(
            "POST", "/proxy/targets/", {"hostname": "b.test", "target_url": backend.url}
        )
        self.assertEqual(code, 201, body)
        await gateway.set_auth("b.test")
        client_id = await gateway.register()

        async def consent_status(resource: str) -> int:
            url = authorize_url(gateway.issuer, client_id, resource)
            response, _ = await gateway.fetch("GET", url)
            return int(response.code)

        async def known() -> bool:  # once the mirror has the proxy's auth settings
            return await consent_status(f"https://b.test:{https}") == 200

        await wait_until(known, 5.0)
        self.assertEqual(await consent_status("https://b.test"), 400)

    async def test_public_port_setting_wins_over_the_listener(self) -> None:
        """MCP-3: behind a port forward, OAUTHPROXY_PUBLIC_HTTP_PORT is what clients use."""
        gateway = await start_auth_gateway(self, OAUTHPROXY_PUBLIC_HTTP_PORT="8080")
        backend = await start_backend(self, reactor)
        await gateway.protect("a.test", backend)
        metadata = await gateway.call("a.test", "/.well-known/oauth-protected-resource")
        self.assertEqual(json.loads(metadata.body)["resource"], "http://a.test:8080")
        client_id = await gateway.register()
        location = await gateway.browse(
            authorize_url(gateway.issuer, client_id, "http://a.test:8080")
        )
        self.assertIn("code", parse_qs(urlsplit(location).query))
