"""Tests for :mod:`oauthproxy.oauth.registration`: RFC 7591/7592 metadata rules."""

from __future__ import annotations

from typing import Any

from attrs import evolve
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.oauth.errors import InvalidClientMetadata, InvalidRedirectUri, InvalidToken
from oauthproxy.oauth.records import OAuthClient, token_hash
from oauthproxy.oauth.registration import (
    check_registration_token,
    client_expired,
    new_client,
    registration_response,
    updated_client,
    validate_client_metadata,
)

NOW = 1_700_000_000.0


def body(**overrides: Any) -> dict[str, Any]:
    """A typical MCP client's registration body (public, loopback callback)."""
    base: dict[str, Any] = {
        "client_name": "Claude Code",
        "redirect_uris": ["http://localhost:3118/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


class MetadataTests(SynchronousTestCase):
    """Validation of a registration request."""

    def test_typical_mcp_client_registers(self) -> None:
        """MCP-8: a public native client with a loopback callback is accepted."""
        meta = validate_client_metadata(body())
        self.assertEqual(meta.application_type, "native")
        self.assertTrue(meta.is_public)
        self.assertEqual(meta.redirect_uris, ("http://localhost:3118/callback",))

    def test_scope_spacing_is_normalised(self) -> None:
        """RFC 7591: a padded scope list (the MCP SDK sends " offline_access") is accepted."""
        meta = validate_client_metadata(body(scope=" offline_access  read "))
        self.assertEqual(meta.scope, "offline_access read")

    def test_unknown_metadata_is_ignored(self) -> None:
        """RFC 7591 §2: unknown fields are ignored, not rejected."""
        meta = validate_client_metadata(body(frobnicate=True, software_statement_x="y"))
        self.assertEqual(meta, validate_client_metadata(body()))

    def test_web_client_with_loopback_is_rejected(self) -> None:
        """MCP-8: application_type web requires https redirect URIs."""
        with self.assertRaises(InvalidRedirectUri):
            validate_client_metadata(body(application_type="web"))

    def test_unknown_application_type_is_rejected(self) -> None:
        """MCP-8: application_type is native or web."""
        with self.assertRaises(InvalidClientMetadata):
            validate_client_metadata(body(application_type="desktop"))

    def test_missing_redirect_uris_is_invalid_redirect_uri(self) -> None:
        """RFC 7591 §3.2.2: redirect_uris are required for the code grant."""
        uris: object
        for uris in (None, [], "https://a.test/cb"):
            with self.assertRaises(InvalidRedirectUri):
                validate_client_metadata(body(redirect_uris=uris))

    def test_implicit_and_password_grants_are_refused(self) -> None:
        """O21-7, BCP-8: implicit and ROPC grants cannot be registered."""
        for grants in (["implicit"], ["authorization_code", "password"], ["client_credentials"]):
            with self.assertRaises(InvalidClientMetadata):
                validate_client_metadata(body(grant_types=grants))

    def test_token_response_type_is_refused(self) -> None:
        """O21-7: response_types must be code only."""
        with self.assertRaises(InvalidClientMetadata):
            validate_client_metadata(body(response_types=["code", "token"]))

    def test_unsupported_auth_method_is_refused(self) -> None:
        """RFC 7591: an auth method we cannot honour is invalid_client_metadata."""
        with self.assertRaises(InvalidClientMetadata):
            validate_client_metadata(body(token_endpoint_auth_method="private_key_jwt"))

    def test_client_chosen_id_or_secret_is_refused(self) -> None:
        """RFC 7591: identifiers and secrets are issued by the server."""
        for extra in ({"client_id": "mine"}, {"client_secret": "mine"}):
            with self.assertRaises(InvalidClientMetadata):
                validate_client_metadata(body(**extra))

    def test_default_auth_method_is_client_secret_basic(self) -> None:
        """RFC 7591 §2: without token_endpoint_auth_method the client is confidential."""
        meta = validate_client_metadata(
            body(token_endpoint_auth_method=None, redirect_uris=["https://a.test/cb"])
        )
        self.assertEqual(meta.token_endpoint_auth_method, "client_secret_basic")

    def test_non_https_client_uri_is_refused(self) -> None:
        """Links shown on the consent page must be https."""
        with self.assertRaises(InvalidClientMetadata):
            validate_client_metadata(body(client_uri="javascript:alert(1)"))

    def test_body_must_be_an_object(self) -> None:
        """RFC 7591: the body is a JSON object."""
        with self.assertRaises(InvalidClientMetadata):
            validate_client_metadata(["redirect_uris"])


def dcr_client() -> OAuthClient:
    """A public client as dynamic registration stores it, registered at NOW."""
    return new_client(
        validate_client_metadata(body()),
        client_id="c",
        now=NOW,
        client_secret=None,
        registration_token=None,
    )


class IdempotencyTests(SynchronousTestCase):
    """Bounded registration (ATK-28)."""

    def test_identical_metadata_has_the_same_key(self) -> None:
        """ATK-28: identical registrations share one idempotency key."""
        a = validate_client_metadata(body())
        b = validate_client_metadata(body(unknown="ignored"))
        self.assertEqual(a.key, b.key)

    def test_different_metadata_has_different_keys(self) -> None:
        """ATK-28: a different redirect URI is a different client."""
        a = validate_client_metadata(body())
        b = validate_client_metadata(body(redirect_uris=["http://localhost:9/other"]))
        self.assertNotEqual(a.key, b.key)

    def test_confidential_clients_are_never_deduplicated(self) -> None:
        """A confidential client's record carries no idempotency key (secrets are unique)."""
        meta = validate_client_metadata(
            body(
                token_endpoint_auth_method="client_secret_post", redirect_uris=["https://a.test/cb"]
            )
        )
        client = new_client(meta, client_id="c", now=NOW, client_secret="s", registration_token="r")
        self.assertEqual(client.metadata_key, "")
        self.assertEqual(client.client_secret_hash, token_hash("s"))

    def test_clients_that_never_authorized_expire_after_hours(self) -> None:
        """ATK-37, ATK-28: a client that completed no authorization goes soon."""
        client = dcr_client()
        self.assertIsNone(client.last_used_at)
        self.assertFalse(client_expired(client, now=NOW + 99, lifetime=10**6, unused_lifetime=100))
        self.assertTrue(client_expired(client, now=NOW + 100, lifetime=10**6, unused_lifetime=100))

    def test_used_clients_expire_after_the_lifetime(self) -> None:
        """ATK-28: a client that was used goes after the lifetime without use."""
        client = evolve(dcr_client(), last_used_at=NOW + 50)
        self.assertFalse(client_expired(client, now=NOW + 149, lifetime=100, unused_lifetime=1))
        self.assertTrue(client_expired(client, now=NOW + 150, lifetime=100, unused_lifetime=1))

    def test_only_dynamic_clients_expire(self) -> None:
        """ATK-28: pre-registered clients stay; a lifetime of 0 keeps clients too."""
        client = dcr_client()
        static = evolve(client, source="static")
        self.assertFalse(client_expired(static, now=NOW + 10**9, lifetime=1, unused_lifetime=1))
        self.assertFalse(client_expired(client, now=NOW + 10**9, lifetime=0, unused_lifetime=0))


class ResponseTests(SynchronousTestCase):
    """The registration response and RFC 7592 updates."""

    def test_public_client_response_has_no_secret(self) -> None:
        """RFC 7591 §3.2.1: client_id and issued_at; no secret for public clients."""
        client = new_client(
            validate_client_metadata(body()),
            client_id="cid",
            now=NOW,
            client_secret=None,
            registration_token="rat",
        )
        response = registration_response(
            client, registration_token="rat", registration_client_uri="https://as/register/cid"
        )
        self.assertEqual(response["client_id"], "cid")
        self.assertEqual(response["client_id_issued_at"], int(NOW))
        self.assertNotIn("client_secret", response)
        self.assertEqual(response["registration_access_token"], "rat")

    def test_confidential_response_has_secret_and_expiry(self) -> None:
        """RFC 7591 §3.2.1: client_secret_expires_at accompanies a secret (0 = never)."""
        meta = validate_client_metadata(
            body(
                token_endpoint_auth_method="client_secret_basic",
                redirect_uris=["https://a.test/cb"],
            )
        )
        client = new_client(
            meta, client_id="c", now=NOW, client_secret="s", registration_token=None
        )
        response = registration_response(client, client_secret="s")
        self.assertEqual(
            (response["client_secret"], response["client_secret_expires_at"]), ("s", 0)
        )

    def test_update_keeps_identity_and_secret(self) -> None:
        """RFC 7592: an update replaces metadata but not client_id or secret."""
        client = new_client(
            validate_client_metadata(body()),
            client_id="c",
            now=NOW,
            client_secret=None,
            registration_token="r",
        )
        updated = updated_client(client, validate_client_metadata(body(client_name="Renamed")))
        self.assertEqual(
            (updated.client_id, updated.client_name, updated.registration_token_hash),
            ("c", "Renamed", client.registration_token_hash),
        )

    def test_update_cannot_turn_public_into_confidential(self) -> None:
        """RFC 7592: switching to a secret-based method would need a new secret."""
        client = new_client(
            validate_client_metadata(body()),
            client_id="c",
            now=NOW,
            client_secret=None,
            registration_token="r",
        )
        with self.assertRaises(InvalidClientMetadata):
            updated_client(
                client,
                validate_client_metadata(body(token_endpoint_auth_method="client_secret_basic")),
            )


class RegistrationTokenTests(SynchronousTestCase):
    """RFC 7592 access to a registration."""

    def setUp(self) -> None:
        """A client registered with registration access token ``rat``."""
        self.client = new_client(
            validate_client_metadata(body()),
            client_id="c",
            now=NOW,
            client_secret=None,
            registration_token="rat",
        )

    def test_right_token_gives_the_client(self) -> None:
        """RFC 7592 §3: the registration access token authorizes management."""
        self.assertEqual(check_registration_token(self.client, "rat"), self.client)

    def test_wrong_token_or_unknown_client_look_the_same(self) -> None:
        """RFC 7592 §3: wrong token and unknown client are both 401 invalid_token."""
        for client, token in ((self.client, "wrong"), (self.client, None), (None, "rat")):
            with self.assertRaises(InvalidToken):
                check_registration_token(client, token)
