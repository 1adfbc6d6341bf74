"""Tests for a proxy's OAuth settings: ``…/resource``, ``…/oauth-server``, ``…/github-oauth``.

Also the at-rest sealing of the per-proxy GitHub client secret (the Redis store's
hooks, exercised without Redis) and the declaration rule that path parameters are
short (Twisted drops request lines over 16 KiB).
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

from attrs import define
from klein import Klein
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.admin.endpoint import ApiContext, Call, endpoint
from oauthproxy.admin.schema import string
from oauthproxy.model import AuthServerOverrides, Event, Proxy, ResourceSettings, json_fields
from oauthproxy.storage.codec import decode, encode
from oauthproxy.storage.connection import RedisConnection
from oauthproxy.storage.crypto import DecryptionError, SecretBox
from oauthproxy.storage.keys import Keys
from oauthproxy.storage.records import RedisProxyStore
from oauthproxy.storage.redis import RedisEventLog
from tests.admin.harness import Harness

HOST = "svc.example.com"
RESOURCE = f"/proxy/targets/{HOST}/resource"
SERVER = f"/proxy/targets/{HOST}/oauth-server"
GITHUB = f"/proxy/targets/{HOST}/github-oauth"

#: the seed's ``proxy-oauth-server-set`` example as a body
SEED_SERVER = {
    "issuer": "https://auth.example.com",
    "scopes_supported": ["read", "write", "admin"],
    "grant_types_supported": ["authorization_code", "refresh_token"],
    "response_types_supported": ["code"],
    "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
    "claims_supported": ["sub", "name", "email", "preferred_username"],
    "pkce_required": True,
    "custom_metadata": {"custom_field": "value"},
    "override_defaults": True,
}


def add_proxy(h: Harness, hostname: str, owner: str = "admin") -> None:
    """Store a proxy owned by ``owner``."""
    proxy = Proxy(hostname, "http://127.0.0.1:9", owner=owner)
    h.test.successResultOf(h.storage.proxies.create(proxy))


def stored(h: Harness, hostname: str = HOST) -> Proxy:
    """The proxy as the store has it now."""
    proxy = h.test.successResultOf(h.storage.proxies.get(hostname))
    assert proxy is not None
    return proxy


class _Base(SynchronousTestCase):
    """An admin API with the admin's proxy and one of alice's."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")
        add_proxy(self.h, HOST)
        add_proxy(self.h, "alice.example.com", owner="alice")

    def post(self, path: str, body: object, token: str | None = None) -> Any:
        """POST ``body`` with the admin token (or ``token``)."""
        return self.h.call("POST", path, token=token or self.h.admin_token, body=body)


class ResourceTests(_Base):
    """``/proxy/targets/{hostname}/resource`` (RFC 9728 settings)."""

    def test_nothing_configured_shows_null(self) -> None:
        """Before any POST the settings are null (the defaults apply)."""
        answer = self.h.call("GET", RESOURCE, token=self.h.admin_token)
        self.assertEqual(answer.json(), {"hostname": HOST, "resource": None})

    def test_settings_are_stored_on_the_proxy(self) -> None:
        """MCP-2, MCP-3: the POSTed settings become ``Proxy.oauth_resource``."""
        answer = self.post(
            RESOURCE,
            {
                "resource": f"https://{HOST}/mcp",
                "scopes_supported": ["tools:read"],
                "resource_documentation": "https://docs.example.com/svc",
                "custom_metadata": {"x_tier": {"level": 2}},
            },
        )
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(answer.json()["resource"]["custom_metadata"], {"x_tier": {"level": 2}})
        self.assertEqual(
            stored(self.h).oauth_resource,
            ResourceSettings(
                resource=f"https://{HOST}/mcp",
                scopes_supported=("tools:read",),
                resource_documentation="https://docs.example.com/svc",
                custom_metadata=json_fields({"x_tier": {"level": 2}}),
            ),
        )

    def test_second_post_keeps_other_fields(self) -> None:
        """Only the fields given change."""
        self.post(RESOURCE, {"scopes_supported": ["a"]})
        self.post(RESOURCE, {"resource_name": "Tools"})
        settings = stored(self.h).oauth_resource
        assert settings is not None
        self.assertEqual((settings.scopes_supported, settings.resource_name), (("a",), "Tools"))

    def test_resource_on_another_host_is_refused(self) -> None:
        """ATK-20: a proxy cannot claim another host's resource (its tokens would pass)."""
        answer = self.post(RESOURCE, {"resource": "https://alice.example.com/"})
        self.h.assert_error(answer, 422, "invalid_input", "/resource")
        self.assertIsNone(stored(self.h).oauth_resource)

    def test_bad_values_are_named(self) -> None:
        """Relative URLs, queries, plain-http servers, other bearer methods: 422 naming it."""
        for body, where in (
            ({"resource": "/mcp"}, "/resource"),
            ({"resource": f"https://{HOST}/mcp?x=1"}, "/resource"),
            ({"authorization_servers": ["http://as.example.com"]}, "/authorization_servers/0"),
            ({"resource_documentation": "docs"}, "/resource_documentation"),
            ({"bearer_methods_supported": ["query"]}, "/bearer_methods_supported/0"),
            ({"scopes_supported": ["two words"]}, "/scopes_supported/0"),
            ({"custom_metadata": {"resource": "https://evil.test"}}, "/custom_metadata/resource"),
        ):
            answer = self.post(RESOURCE, body)
            self.h.assert_error(answer, 422, "invalid_input", where)

    def test_oversized_custom_metadata_is_refused(self) -> None:
        """Custom fields are bounded as a whole."""
        answer = self.post(RESOURCE, {"custom_metadata": {"x_big": "y" * 9000}})
        self.h.assert_error(answer, 422, "invalid_input", "/custom_metadata")

    def test_clear_returns_to_defaults(self) -> None:
        """DELETE sets the settings back to null."""
        self.post(RESOURCE, {"resource_name": "Tools"})
        self.assertEqual(self.h.call("DELETE", RESOURCE, token=self.h.admin_token).status, 204)
        self.assertIsNone(stored(self.h).oauth_resource)

    def test_other_owners_proxy_is_404(self) -> None:
        """A non-admin token reaches only its own proxies."""
        self.h.assert_error(self.h.call("GET", RESOURCE, token=self.alice), 404, "not_found")
        answer = self.post(RESOURCE, {"resource_name": "x"}, token=self.alice)
        self.h.assert_error(answer, 404, "not_found")
        own = self.post(
            "/proxy/targets/alice.example.com/resource", {"resource_name": "x"}, token=self.alice
        )
        self.assertEqual(own.status, 200, own.body)

    def test_unknown_proxy_is_404(self) -> None:
        """No such proxy: 404."""
        answer = self.h.call(
            "GET", "/proxy/targets/nope.example.com/resource", token=self.h.admin_token
        )
        self.h.assert_error(answer, 404, "not_found")


class AllowlistTests(_Base):
    """``/proxy/targets/{hostname}/auth`` takes every allowlist entry the server understands."""

    def test_org_and_team_entries_are_accepted(self) -> None:
        """Per-proxy allowlists name users, organisations and teams (oauth.access)."""
        users = ["alice", "org:acme", "team:acme/ops-team", "*"]
        answer = self.post(f"/proxy/targets/{HOST}/auth", {"auth_required_users": users})
        self.assertEqual(answer.status, 200, answer.body)
        auth = stored(self.h).auth
        assert auth is not None
        self.assertEqual(auth.required_users, tuple(users))

    def test_malformed_entries_are_named(self) -> None:
        """An entry that is none of those is 422 naming its index."""
        for entry in ("org:", "team:acme", "a b"):
            answer = self.post(f"/proxy/targets/{HOST}/auth", {"required_users": ["ok", entry]})
            self.h.assert_error(answer, 422, "invalid_input", "/required_users/1")

    def test_equivalent_servers_are_listed_once(self) -> None:
        """Issuer URLs differing only by a trailing slash are one server."""
        answer = self.post(
            RESOURCE,
            {"authorization_servers": ["https://as.example.com", "https://as.example.com/"]},
        )
        self.assertEqual(
            answer.json()["resource"]["authorization_servers"], ["https://as.example.com"]
        )


class OAuthServerTests(_Base):
    """``/proxy/targets/{hostname}/oauth-server`` (RFC 8414 overrides)."""

    def test_seed_example_is_stored(self) -> None:
        """The seed's proxy-oauth-server-set settings become ``Proxy.oauth_server``."""
        answer = self.post(SERVER, SEED_SERVER)
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(answer.json()["oauth_server"], SEED_SERVER)
        self.assertEqual(
            stored(self.h).oauth_server,
            AuthServerOverrides(
                issuer="https://auth.example.com",
                scopes_supported=("read", "write", "admin"),
                grant_types_supported=("authorization_code", "refresh_token"),
                response_types_supported=("code",),
                token_endpoint_auth_methods_supported=(
                    "client_secret_post",
                    "client_secret_basic",
                ),
                claims_supported=("sub", "name", "email", "preferred_username"),
                custom_metadata=json_fields({"custom_field": "value"}),
            ),
        )

    def test_loopback_http_issuer_is_accepted(self) -> None:
        """MCP-15: plain http only on loopback (tests, local development)."""
        answer = self.post(SERVER, {"issuer": "http://127.0.0.1:9000/"})
        self.assertEqual(answer.json()["oauth_server"]["issuer"], "http://127.0.0.1:9000")

    def test_bad_values_are_named(self) -> None:
        """MCP-15, O21-7, BCP-2: bad issuers, unimplemented grants, no PKCE: 422 naming it."""
        for body, where in (
            ({"issuer": "http://auth.example.com"}, "/issuer"),
            ({"issuer": "https://auth.example.com/?q=1"}, "/issuer"),
            ({"issuer": "auth.example.com"}, "/issuer"),
            ({"grant_types_supported": ["implicit"]}, "/grant_types_supported/0"),
            ({"response_types_supported": ["token"]}, "/response_types_supported/0"),
            ({"pkce_required": False}, "/pkce_required"),
            ({"claims_supported": ["a b"]}, "/claims_supported/0"),
            (
                {"custom_metadata": {"token_endpoint": "https://x"}},
                "/custom_metadata/token_endpoint",
            ),
        ):
            answer = self.post(SERVER, body)
            self.h.assert_error(answer, 422, "invalid_input", where)
        self.assertIsNone(stored(self.h).oauth_server)

    def test_null_list_returns_to_the_servers(self) -> None:
        """A list set to null means the server's own list again."""
        self.post(SERVER, {"scopes_supported": ["read"]})
        self.post(SERVER, {"scopes_supported": None, "override_defaults": False})
        overrides = stored(self.h).oauth_server
        assert overrides is not None
        self.assertEqual((overrides.scopes_supported, overrides.override_defaults), (None, False))

    def test_show_and_clear(self) -> None:
        """GET shows the overrides; DELETE removes them."""
        self.post(SERVER, {"issuer": "https://auth.example.com"})
        shown = self.h.call("GET", SERVER, token=self.h.admin_token).json()
        self.assertEqual(shown["oauth_server"]["issuer"], "https://auth.example.com")
        self.assertEqual(self.h.call("DELETE", SERVER, token=self.h.admin_token).status, 204)
        self.assertIsNone(stored(self.h).oauth_server)

    def test_other_owners_proxy_is_404(self) -> None:
        """A non-admin token cannot read or change the admin's overrides."""
        self.h.assert_error(self.h.call("GET", SERVER, token=self.alice), 404, "not_found")
        self.h.assert_error(self.h.call("DELETE", SERVER, token=self.alice), 404, "not_found")


class GitHubOAuthTests(_Base):
    """``/proxy/targets/{hostname}/github-oauth``: the secret is write-only."""

    def test_secret_is_stored_but_never_shown(self) -> None:
        """The answer, GET and the proxy record say has_secret, never the secret."""
        answer = self.post(GITHUB, {"client_id": "Iv1.abc", "client_secret": "s3cret-value"})
        self.assertEqual(
            answer.json(), {"hostname": HOST, "client_id": "Iv1.abc", "has_secret": True}
        )
        self.assertEqual(
            (stored(self.h).github_client_id, stored(self.h).github_client_secret),
            ("Iv1.abc", "s3cret-value"),
        )
        for path in (GITHUB, f"/proxy/targets/{HOST}", "/proxy/targets/"):
            shown = self.h.call("GET", path, token=self.h.admin_token)
            self.assertEqual(shown.status, 200)
            self.assertNotIn(b"s3cret-value", shown.body)
        self.assertNotIn("s3cret-value", repr(stored(self.h)))

    def test_client_id_alone_keeps_the_stored_secret(self) -> None:
        """A new client id without a secret keeps the secret already stored."""
        self.post(GITHUB, {"client_id": "one", "client_secret": "s1"})
        self.post(GITHUB, {"client_id": "two"})
        self.assertEqual(
            (stored(self.h).github_client_id, stored(self.h).github_client_secret), ("two", "s1")
        )

    def test_first_post_needs_a_secret(self) -> None:
        """Without a stored secret, one must be given: 422 naming it."""
        answer = self.post(GITHUB, {"client_id": "one"})
        self.h.assert_error(answer, 422, "invalid_input", "/client_secret")
        self.assertIsNone(stored(self.h).github_client_id)

    def test_clear_forgets_both(self) -> None:
        """DELETE removes id and secret; GET then shows no app."""
        self.post(GITHUB, {"client_id": "one", "client_secret": "s1"})
        self.assertEqual(self.h.call("DELETE", GITHUB, token=self.h.admin_token).status, 204)
        self.assertEqual(
            self.h.call("GET", GITHUB, token=self.h.admin_token).json(),
            {"hostname": HOST, "client_id": None, "has_secret": False},
        )
        self.assertIsNone(stored(self.h).github_client_secret)

    def test_other_owners_proxy_is_404(self) -> None:
        """A non-admin token cannot set another token's GitHub app."""
        answer = self.post(GITHUB, {"client_id": "x", "client_secret": "y"}, token=self.alice)
        self.h.assert_error(answer, 404, "not_found")
        self.assertIsNone(stored(self.h).github_client_id)


class SecretAtRestTests(SynchronousTestCase):
    """The Redis proxy store seals ``github_client_secret``; events carry it sealed."""

    def setUp(self) -> None:
        self.box = SecretBox.generate()
        self.store = RedisProxyStore(
            cast(RedisConnection, None), Keys(), "proxy", Proxy, box=self.box
        )
        self.proxy = Proxy(
            HOST, "http://127.0.0.1:9", github_client_id="id", github_client_secret="s"
        )

    def test_secret_is_sealed_and_opens_again(self) -> None:
        """What reaches Redis holds no plaintext; reading it back gives the secret."""
        at_rest = self.store._to_stored(self.proxy)
        self.assertNotIn('"s"', encode(at_rest))
        self.assertEqual(self.store._from_stored(decode(Proxy, encode(at_rest))), self.proxy)

    def test_sealed_secret_does_not_open_on_another_proxy(self) -> None:
        """The hostname is bound as associated data: a copied secret does not open."""
        at_rest = self.store._to_stored(self.proxy)
        moved = Proxy(
            "other.example.com",
            "http://127.0.0.1:9",
            github_client_secret=at_rest.github_client_secret,
        )
        self.assertRaises(DecryptionError, self.store._from_stored, moved)

    def test_events_are_opened_for_the_mirror(self) -> None:
        """A proxy event read from the stream carries the plaintext to the snapshot."""
        events = RedisEventLog(cast(RedisConnection, None), Keys(), self.box)
        sealed = encode(self.store._to_stored(self.proxy))
        opened = events._open(Event("1-0", "proxy_updated", "proxy", HOST, sealed))
        assert opened.record is not None
        self.assertEqual(decode(Proxy, opened.record), self.proxy)


class PathParameterDeclarationTests(SynchronousTestCase):
    """Path parameters are bounded at declaration time (request lines are at most 16 KiB)."""

    def test_long_path_parameter_is_refused(self) -> None:
        """A path parameter allowing more than 255 characters fails when declared."""
        with self.assertRaises(ValueError):

            @define
            class Long:
                app: ClassVar[Klein] = Klein()
                api: ApiContext

                @endpoint(app, "GET", "/long/{name}", summary="x", returns={200: None},
                          params={"name": string(max_length=2000)})  # fmt: skip
                async def show(self, call: Call) -> object:
                    """Never called."""
                    return None

    def test_every_declared_path_parameter_is_short(self) -> None:
        """The whole API documents maxLength <= 255 for each path parameter."""
        h = Harness(self)
        document = h.call("GET", "/openapi.json").json()
        checked = 0
        for path, item in document["paths"].items():
            for operation in item.values():
                if not isinstance(operation, dict):
                    continue
                for parameter in operation.get("parameters", ()):
                    if parameter.get("in") == "path":
                        longest = parameter["schema"]["maxLength"]
                        self.assertLessEqual(longest, 255, f"{path} {parameter['name']}")
                        checked += 1
        self.assertGreater(checked, 40)
