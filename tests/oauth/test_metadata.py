"""Tests for :mod:`oauthproxy.oauth.metadata`: discovery documents and URLs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.errors import ConfigError
from oauthproxy.model import json_fields
from oauthproxy.oauth.errors import InvalidTarget
from oauthproxy.oauth.metadata import (
    authorization_server_metadata,
    authorization_server_metadata_urls,
    canonical_resource,
    protected_resource_metadata,
    protected_resource_metadata_urls,
    validate_issuer,
)
from oauthproxy.oauth.records import AuthServerOverrides, ResourceSettings
from tests.oauth.samples import ISSUER, RESOURCE_A, SCOPES


class CanonicalResourceTests(SynchronousTestCase):
    """MCP-3: the canonical form of resource URIs."""

    def test_case_default_port_and_trailing_slash(self) -> None:
        """MCP-3: lower-case scheme and host, no default port, no trailing slash."""
        self.assertEqual(
            canonical_resource("HTTPS://MCP.Example.TEST:443/Api/"), "https://mcp.example.test/Api"
        )
        self.assertEqual(
            canonical_resource("https://mcp.example.test/"), "https://mcp.example.test"
        )

    def test_other_port_is_kept(self) -> None:
        """MCP-3: a non-default port is part of the resource."""
        self.assertEqual(canonical_resource("https://h.test:8443"), "https://h.test:8443")

    def test_fragment_and_relative_are_invalid_target(self) -> None:
        """RFC 8707 §2: resource is absolute without a fragment."""
        for uri in (
            "https://h.test/#f",
            "/path",
            "urn:x",
            "https://u@h.test/",
            "https://h.test:x/",
        ):
            with self.assertRaises(InvalidTarget, msg=uri):
                canonical_resource(uri)


class UrlTests(SynchronousTestCase):
    """Well-known URLs (MCP-2, MCP-4)."""

    def test_as_metadata_urls_for_issuer_with_path(self) -> None:
        """MCP-4: the three discovery URLs clients try for issuer path /t, in order."""
        self.assertEqual(
            authorization_server_metadata_urls("https://as.test/t"),
            (
                "https://as.test/.well-known/oauth-authorization-server/t",
                "https://as.test/.well-known/openid-configuration/t",
                "https://as.test/t/.well-known/openid-configuration",
            ),
        )

    def test_as_metadata_urls_for_bare_issuer(self) -> None:
        """MCP-4: a path-less issuer has the two root documents."""
        self.assertEqual(
            authorization_server_metadata_urls(ISSUER),
            (
                ISSUER + "/.well-known/oauth-authorization-server",
                ISSUER + "/.well-known/openid-configuration",
            ),
        )

    def test_prm_urls_path_inserted_then_root(self) -> None:
        """MCP-2: PRM is served path-inserted and at the root."""
        self.assertEqual(
            protected_resource_metadata_urls("https://mcp.test/mcp"),
            (
                "https://mcp.test/.well-known/oauth-protected-resource/mcp",
                "https://mcp.test/.well-known/oauth-protected-resource",
            ),
        )
        self.assertEqual(
            protected_resource_metadata_urls("https://mcp.test"),
            ("https://mcp.test/.well-known/oauth-protected-resource",),
        )


class ServerMetadataTests(SynchronousTestCase):
    """RFC 8414 document (MCP-4, MCP-5, MCP-6, MCP-12)."""

    def setUp(self) -> None:
        """The default document."""
        self.doc = authorization_server_metadata(ISSUER, scopes_supported=SCOPES)

    def test_issuer_and_endpoints_come_from_configuration(self) -> None:
        """MCP-4, ATK-8: issuer equals the configured issuer; endpoints hang off it."""
        self.assertEqual(self.doc["issuer"], ISSUER)
        self.assertEqual(self.doc["authorization_endpoint"], ISSUER + "/authorize")
        self.assertEqual(self.doc["token_endpoint"], ISSUER + "/token")
        self.assertEqual(self.doc["jwks_uri"], ISSUER + "/jwks")

    def test_pkce_s256_is_advertised(self) -> None:
        """MCP-5, BCP-2: code_challenge_methods_supported is [S256]."""
        self.assertEqual(self.doc["code_challenge_methods_supported"], ["S256"])

    def test_iss_parameter_support_is_advertised(self) -> None:
        """MCP-12, O21-15: authorization_response_iss_parameter_supported is true."""
        self.assertIs(self.doc["authorization_response_iss_parameter_supported"], True)

    def test_registration_and_cimd_are_advertised(self) -> None:
        """MCP-6: registration_endpoint and client_id_metadata_document_supported."""
        self.assertEqual(self.doc["registration_endpoint"], ISSUER + "/register")
        self.assertIs(self.doc["client_id_metadata_document_supported"], True)

    def test_only_code_grant_is_advertised(self) -> None:
        """O21-7, BCP-8: no implicit or password grant."""
        self.assertEqual(self.doc["response_types_supported"], ["code"])
        self.assertEqual(self.doc["grant_types_supported"], ["authorization_code", "refresh_token"])

    def test_overrides_change_issuer_and_scopes(self) -> None:
        """Per-proxy overrides set issuer, scopes and custom fields."""
        doc = authorization_server_metadata(
            ISSUER,
            scopes_supported=SCOPES,
            overrides=AuthServerOverrides(
                issuer="https://auth2.example.test/",
                scopes_supported=("read",),
                custom_metadata=json_fields({"x_custom": 1, "issuer": "https://evil.test"}),
            ),
        )
        self.assertEqual(doc["issuer"], "https://auth2.example.test")
        self.assertEqual(doc["token_endpoint"], "https://auth2.example.test/token")
        self.assertEqual(doc["scopes_supported"], ["read"])
        self.assertEqual(doc["x_custom"], 1)

    def test_overrides_cannot_advertise_unimplemented_grants_or_drop_pkce(self) -> None:
        """MCP-5, O21-7: overrides never add implicit or remove S256."""
        doc = authorization_server_metadata(
            ISSUER,
            scopes_supported=SCOPES,
            overrides=AuthServerOverrides(
                grant_types_supported=("implicit", "authorization_code"),
                pkce_required=False,
            ),
        )
        self.assertEqual(doc["grant_types_supported"], ["authorization_code"])
        self.assertEqual(doc["code_challenge_methods_supported"], ["S256"])


class ResourceMetadataTests(SynchronousTestCase):
    """RFC 9728 document (MCP-1, MCP-3, MCP-14)."""

    def test_document_lists_resource_and_servers(self) -> None:
        """MCP-1, MCP-3: resource is canonical; authorization_servers has an entry."""
        doc = protected_resource_metadata(
            "HTTPS://MCP-A.example.test/", authorization_servers=(ISSUER,), scopes_supported=SCOPES
        )
        self.assertEqual(doc["resource"], RESOURCE_A)
        self.assertEqual(doc["authorization_servers"], [ISSUER])
        self.assertEqual(doc["bearer_methods_supported"], ["header"])

    def test_offline_access_is_not_advertised(self) -> None:
        """MCP-14: PRM scopes_supported never lists offline_access."""
        doc = protected_resource_metadata(
            RESOURCE_A, authorization_servers=(ISSUER,), scopes_supported=SCOPES
        )
        self.assertNotIn("offline_access", doc["scopes_supported"])

    def test_without_authorization_server_is_an_error(self) -> None:
        """MCP-1: a PRM without an authorization server is not served."""
        with self.assertRaises(ConfigError):
            protected_resource_metadata(RESOURCE_A, authorization_servers=())

    def test_settings_override_defaults(self) -> None:
        """Per-proxy /resource settings replace the defaults."""
        doc = protected_resource_metadata(
            RESOURCE_A,
            authorization_servers=(ISSUER,),
            settings=ResourceSettings(
                resource="https://mcp-a.example.test/mcp",
                authorization_servers=("https://other-as.test",),
                resource_name="Tools",
            ),
        )
        self.assertEqual(doc["resource"], "https://mcp-a.example.test/mcp")
        self.assertEqual(doc["authorization_servers"], ["https://other-as.test"])
        self.assertEqual(doc["resource_name"], "Tools")


class IssuerTests(SynchronousTestCase):
    """The configured issuer (MCP-9, MCP-15)."""

    def test_https_issuer_is_accepted_without_trailing_slash(self) -> None:
        """MCP-15: an https issuer is used as configured, minus a trailing slash."""
        self.assertEqual(validate_issuer(ISSUER + "/"), ISSUER)

    def test_plain_http_is_only_for_loopback(self) -> None:
        """MCP-15: http issuers are refused except on loopback (tests)."""
        self.assertEqual(validate_issuer("http://127.0.0.1:8080"), "http://127.0.0.1:8080")
        with self.assertRaises(ConfigError):
            validate_issuer("http://auth.example.test")

    def test_query_or_fragment_is_refused(self) -> None:
        """RFC 8414 §2: the issuer has no query or fragment."""
        for issuer in (ISSUER + "?a=1", ISSUER + "#x", "auth.example.test"):
            with self.assertRaises(ConfigError):
                validate_issuer(issuer)


class CanonicalPropertyTests(SynchronousTestCase):
    """Properties of :func:`canonical_resource` (MCP-3)."""

    @given(
        st.sampled_from(["https", "HTTPS", "Http"]),
        st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,10}(\.[A-Za-z]{2,5}){1,2}", fullmatch=True),
        st.sampled_from(["", "/", "/mcp", "/mcp/", "/A/b"]),
    )
    def test_canonical_form_is_stable_and_case_insensitive(
        self, scheme: str, host: str, path: str
    ) -> None:
        """MCP-3: canonicalising twice changes nothing; scheme/host case does not matter."""
        once = canonical_resource(f"{scheme}://{host}{path}")
        self.assertEqual(canonical_resource(once), once)
        self.assertEqual(once, canonical_resource(f"{scheme.lower()}://{host.lower()}{path}"))
        self.assertFalse(once.endswith("/"))
