"""The authorization server with per-proxy settings: GitHub apps, metadata, resources.

A proxy's ``github_client_id``/``github_client_secret`` pick the GitHub app of a login
asking for its resource; its ``oauth_server`` overrides shape the RFC 8414 document
served for its host; its ``oauth_resource.resource`` is the audience of its tokens.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from attrs import evolve
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from oauthproxy.model import AuthServerOverrides, Proxy, ProxyAuth, ResourceSettings, json_fields
from oauthproxy.oauth.errors import InvalidTarget
from oauthproxy.oauth.github import GitHubApp
from oauthproxy.oauth.proxies import (
    PublicPorts,
    github_app_for,
    protected_resources,
    proxy_resource_metadata,
    resource_of,
)
from tests.oauth.server_harness import ISSUER, OAuthHarness

OWN = "https://own.example.test"
SHARED = "https://shared.example.test"
OTHER = "https://other.example.test"
DEFAULT_APP = GitHubApp("gh-id", "gh-secret", base_url="https://github.test")


def protected(hostname: str, **fields: Any) -> Proxy:
    """An OAuth-protected proxy for ``hostname`` with ``fields`` set."""
    proxy = Proxy(hostname, "http://127.0.0.1:1", auth=ProxyAuth(auth_type="oauth"))
    return evolve(proxy, **fields)


def store(h: OAuthHarness, proxy: Proxy) -> None:
    """Put ``proxy`` in the store (the mirror brings it to the snapshot)."""
    h.test.successResultOf(h.storage.proxies.create(proxy))


def github_location_client(location: str | None) -> str:
    """The ``client_id`` of a redirect to GitHub's authorize page."""
    assert location is not None and location.startswith("https://github.test/"), location
    return parse_qs(urlsplit(location).query)["client_id"][0]


class GitHubAppChoiceTests(SynchronousTestCase):
    """Which GitHub app a login uses (pure)."""

    def setUp(self) -> None:
        self.own = protected(
            "own.example.test", github_client_id="own-id", github_client_secret="own-secret"
        )
        self.other = protected(
            "other.example.test", github_client_id="other-id", github_client_secret="x"
        )
        self.shared = protected("shared.example.test")

    def test_requested_proxy_with_an_app_uses_it(self) -> None:
        """The proxy's own credentials, on the configured GitHub."""
        app = github_app_for([self.own, self.shared], [OWN], DEFAULT_APP)
        self.assertEqual(app, GitHubApp("own-id", "own-secret", base_url="https://github.test"))

    def test_without_such_a_resource_the_global_app_is_used(self) -> None:
        """A login for a proxy without an app (or none at all) uses the global app."""
        for resources in ([SHARED], [], [ISSUER]):
            self.assertEqual(
                github_app_for([self.own, self.shared], resources, DEFAULT_APP), DEFAULT_APP
            )

    def test_proxies_with_different_apps_cannot_share_a_login(self) -> None:
        """RFC 8707: resources needing two GitHub apps are invalid_target."""
        with self.assertRaises(InvalidTarget):
            github_app_for([self.own, self.other], [OWN, OTHER], DEFAULT_APP)

    def test_an_id_without_a_secret_is_ignored(self) -> None:
        """Half-configured credentials never replace the global app."""
        half = protected("own.example.test", github_client_id="own-id")
        self.assertEqual(github_app_for([half], [OWN], DEFAULT_APP), DEFAULT_APP)


class ResourceUriTests(SynchronousTestCase):
    """A proxy's resource URI (the audience of its tokens) and its documents (pure)."""

    def test_default_is_the_https_origin(self) -> None:
        """MCP-3: ``https://<hostname>``, canonical."""
        self.assertEqual(resource_of(protected("Own.Example.Test")), OWN)

    def test_default_carries_the_public_https_port(self) -> None:
        """MCP-3: HTTPS on another port than 443 is part of the resource URI."""
        ports = PublicPorts(https=8443, http=8080)
        self.assertEqual(resource_of(protected("own.example.test"), ports), OWN + ":8443")

    def test_http_only_proxy_is_an_http_resource(self) -> None:
        """MCP-3: an HTTP-only proxy is reached, and described, over HTTP at its port."""
        proxy = evolve(protected("own.example.test"), enable_https=False)
        self.assertEqual(resource_of(proxy), "http://own.example.test")
        self.assertEqual(resource_of(proxy, PublicPorts(http=8080)), "http://own.example.test:8080")

    def test_configured_resource_is_used(self) -> None:
        """``oauth_resource.resource`` replaces the default (canonical, no trailing slash)."""
        proxy = protected(
            "own.example.test", oauth_resource=ResourceSettings(resource=OWN + "/mcp/")
        )
        self.assertEqual(resource_of(proxy), OWN + "/mcp")
        self.assertEqual(protected_resources([proxy]), {OWN + "/mcp": ()})

    def test_open_proxies_are_not_resources(self) -> None:
        """Only proxies with auth_type oauth take our tokens."""
        open_proxy = Proxy("open.example.test", "http://127.0.0.1:1")
        self.assertEqual(protected_resources([open_proxy]), {})

    def test_resource_document_names_the_issuer_override(self) -> None:
        """MCP-1: the PRM lists the proxy's authorization server and required scopes."""
        proxy = protected(
            "own.example.test",
            auth=ProxyAuth(auth_type="oauth", required_scopes=("tools",)),
            oauth_server=AuthServerOverrides(issuer="https://as.example.test"),
            oauth_resource=ResourceSettings(custom_metadata=json_fields({"x_team": "ops"})),
        )
        document = proxy_resource_metadata(proxy, ISSUER)
        self.assertEqual(document["resource"], OWN)
        self.assertEqual(document["authorization_servers"], ["https://as.example.test"])
        self.assertEqual(document["scopes_supported"], ["tools"])
        self.assertEqual(document["x_team"], "ops")


class PerProxyLoginTests(SynchronousTestCase):
    """Logins through the server with a proxy that has its own GitHub app."""

    def setUp(self) -> None:
        self.h = OAuthHarness(self)
        store(
            self.h,
            protected(
                "own.example.test",
                github_client_id="proxy-app",
                github_client_secret="proxy-secret",
            ),
        )
        store(self.h, protected("shared.example.test"))
        self.client_id = self.h.register()["client_id"]

    def test_login_for_the_proxy_uses_its_app(self) -> None:
        """The whole login goes through the proxy's app: authorize and code exchange."""
        self.h.fake.client_id, self.h.fake.client_secret = "proxy-app", "proxy-secret"
        tokens = self.h.tokens(self.client_id, resource=OWN)
        claims = self.h.server.verifier.check(tokens["access_token"], OWN)
        self.assertEqual(claims.audience, (OWN,))
        exchanges = [r for r in self.h.fake.requests if r.path.endswith("/access_token")]
        self.assertEqual(len(exchanges), 1)

    def test_login_for_another_proxy_uses_the_global_app(self) -> None:
        """A proxy without an app of its own logs in with the configured app."""
        page = self.h.call("GET", self.h.authorize_query(self.client_id, resource=SHARED))
        self.assertEqual(github_location_client(self.h.consent(page).header("location")), "gh-id")

    def test_authorize_for_the_proxy_sends_its_client_id(self) -> None:
        """GitHub's authorize page is asked with the proxy's client id."""
        page = self.h.call("GET", self.h.authorize_query(self.client_id, resource=OWN))
        location = self.h.consent(page).header("location")
        self.assertEqual(github_location_client(location), "proxy-app")

    def test_proxies_with_different_apps_are_refused_before_login(self) -> None:
        """RFC 8707: one login cannot serve two GitHub apps; nothing goes to GitHub."""
        store(
            self.h,
            protected("other.example.test", github_client_id="b", github_client_secret="c"),
        )
        page = self.h.call(
            "GET", self.h.authorize_query(self.client_id, resource=OWN) + f"&resource={OTHER}"
        )
        self.assertIsNone(page.header("location"))
        self.assertIn(b"invalid_target", page.body)
        self.assertEqual(self.h.fake.requests, [])


class PerProxyMetadataTests(SynchronousTestCase):
    """The RFC 8414 document served for a proxy's host, and scopes it advertises."""

    def setUp(self) -> None:
        self.h = OAuthHarness(self)
        overrides = AuthServerOverrides(
            issuer="https://auth.example.test",
            scopes_supported=("read", "write", "admin"),
            custom_metadata=json_fields({"custom_field": "value"}),
        )
        store(self.h, protected("own.example.test", oauth_server=overrides))
        store(self.h, protected("shared.example.test"))

    def document(self, hostname: str) -> tuple[int, Any]:
        """Render the proxy metadata for ``hostname``: (status, JSON)."""
        request = DummyRequest([b""])
        body = self.h.server.proxy_metadata(request, hostname)
        return request.responseCode or 200, json.loads(body)

    def test_overrides_shape_the_proxys_document(self) -> None:
        """MCP-4, MCP-5: issuer, scopes and custom fields; S256 stays advertised."""
        status, document = self.document("OWN.example.test")
        self.assertEqual(status, 200)
        self.assertEqual(document["issuer"], "https://auth.example.test")
        self.assertEqual(document["scopes_supported"], ["read", "write", "admin"])
        self.assertEqual(document["custom_field"], "value")
        self.assertEqual(document["code_challenge_methods_supported"], ["S256"])

    def test_proxy_without_overrides_gets_the_servers_document(self) -> None:
        """No overrides: the same document as the server's own well-known URL."""
        _, document = self.document("shared.example.test")
        own = self.h.call("GET", "/.well-known/oauth-authorization-server").json()
        self.assertEqual(document, own)

    def test_unknown_host_is_404(self) -> None:
        """No proxy, no document."""
        status, document = self.document("nope.example.test")
        self.assertEqual((status, document), (404, {"error": "not_found"}))

    def test_advertised_scopes_can_be_requested(self) -> None:
        """A scope only a proxy's overrides advertise is accepted at /authorize."""
        client_id = self.h.register()["client_id"]
        page = self.h.call("GET", self.h.authorize_query(client_id, resource=OWN, scope="admin"))
        self.assertEqual(page.status, 200, page.body)

    def test_overridden_resource_is_the_token_audience(self) -> None:
        """MCP-3, MCP-11: a proxy's configured resource URI is what its tokens carry."""
        settings = ResourceSettings(resource=OTHER + "/mcp")
        store(self.h, protected("other.example.test", oauth_resource=settings))
        client_id = self.h.register()["client_id"]
        tokens = self.h.tokens(client_id, resource=OTHER + "/mcp")
        claims = self.h.server.verifier.check(tokens["access_token"], OTHER + "/mcp")
        self.assertEqual(claims.audience, (OTHER + "/mcp",))

    def test_verify_checks_the_overridden_resource(self) -> None:
        """MCP-2: /verify challenges with the configured resource's metadata URL."""
        settings = ResourceSettings(resource=OTHER + "/mcp")
        store(self.h, protected("other.example.test", oauth_resource=settings))
        answer = self.h.call("GET", "/verify", headers={"X-Forwarded-Host": "other.example.test"})
        self.assertEqual(answer.status, 401)
        self.assertIn(
            f'resource_metadata="{OTHER}/.well-known/oauth-protected-resource/mcp"',
            answer.header("www-authenticate") or "",
        )
