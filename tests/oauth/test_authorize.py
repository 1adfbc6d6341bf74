"""Tests for :mod:`oauthproxy.oauth.authorize`: the /authorize decision and its answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs, urlsplit

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.oauth.authorize import (
    REDIRECT_STATUS,
    AuthorizationOutcome,
    ErrorPage,
    ErrorRedirect,
    check_authorization_request,
    error_response,
    success_redirect,
)
from oauthproxy.oauth.errors import AccessDenied, InvalidScope
from oauthproxy.oauth.records import AuthorizationRequest, OAuthClient
from tests.oauth.samples import (
    CHALLENGE,
    ISSUER,
    RESOURCE_A,
    SCOPES,
    authorization_request,
    confidential_client,
    public_client,
)


def params(client: OAuthClient, **overrides: str | list[str] | None) -> dict[str, list[str]]:
    """A valid authorization request's query for ``client``, with overrides (None drops)."""
    base: dict[str, str | list[str] | None] = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uris[0],
        "state": "xyz",
        "scope": "mcp:read",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        "resource": RESOURCE_A,
    }
    base.update(overrides)
    return {k: (v if isinstance(v, list) else [v]) for k, v in base.items() if v is not None}


def check(
    query: Mapping[str, Sequence[str]], client: OAuthClient | None, approved: bool = False
) -> AuthorizationOutcome:
    """Run the check with the sample server settings."""
    return check_authorization_request(
        query,
        client,
        issuer=ISSUER,
        scopes_supported=SCOPES,
        known_resources={RESOURCE_A},
        approved=approved,
    )


def query_of(location: str) -> dict[str, list[str]]:
    """The parsed query of a redirect location."""
    return parse_qs(urlsplit(location).query)


class ValidRequestTests(SynchronousTestCase):
    """A well-formed request becomes an AuthorizationRequest."""

    def test_valid_request_is_accepted(self) -> None:
        """MCP-10, MCP-11: code + S256 + resource yields the validated request."""
        client = public_client()
        result = check(params(client), client)
        self.assertEqual(
            result,
            AuthorizationRequest(
                client_id=client.client_id,
                redirect_uri=client.redirect_uris[0],
                redirect_uri_given=True,
                code_challenge=CHALLENGE,
                code_challenge_method="S256",
                scopes=("mcp:read",),
                resources=(RESOURCE_A,),
                state="xyz",
            ),
        )

    def test_loopback_redirect_with_any_port_is_accepted(self) -> None:
        """O21-4: a native client's loopback callback may use any port."""
        client = public_client()
        result = check(params(client, redirect_uri="http://127.0.0.1:43123/callback"), client)
        assert isinstance(result, AuthorizationRequest)
        self.assertEqual(result.redirect_uri, "http://127.0.0.1:43123/callback")

    def test_several_resources_are_accepted(self) -> None:
        """RFC 8707: resource may repeat."""
        client = public_client()
        result = check_authorization_request(
            params(client, resource=[RESOURCE_A, "https://b.example.test"]),
            client,
            issuer=ISSUER,
            scopes_supported=SCOPES,
        )
        assert isinstance(result, AuthorizationRequest)
        self.assertEqual(result.resources, (RESOURCE_A, "https://b.example.test"))


class NoRedirectTests(SynchronousTestCase):
    """Errors before the redirect URI is verified are shown, never redirected (O21-5)."""

    def test_unknown_client_gets_error_page(self) -> None:
        """O21-5: an invalid client_id is shown to the user."""
        client = public_client()
        self.assertIsInstance(check(params(client), None), ErrorPage)

    def test_missing_client_id_gets_error_page(self) -> None:
        """O21-5: a missing client_id is shown to the user."""
        client = public_client()
        self.assertIsInstance(check(params(client, client_id=None), client), ErrorPage)

    def test_unregistered_redirect_uri_gets_error_page(self) -> None:
        """O21-5, ATK-2: a mismatched redirect URI is never redirected to."""
        client = public_client()
        for uri in ("https://evil.test/cb", "https://app.example.test/cb/", None):
            result = check(params(client, redirect_uri=uri), client)
            self.assertIsInstance(result, ErrorPage, uri)

    def test_repeated_redirect_uri_gets_error_page(self) -> None:
        """RFC 6749 §3.1: a repeated redirect_uri is not trusted."""
        client = public_client()
        result = check(
            params(client, redirect_uri=[client.redirect_uris[0], "https://evil.test/"]), client
        )
        self.assertIsInstance(result, ErrorPage)


class UntrustedRedirectTests(SynchronousTestCase):
    """Errors for unapproved dynamic clients are shown, not redirected (ATK-3, BCP-7)."""

    def test_dcr_phishing_with_invalid_scope_gets_error_page(self) -> None:
        """ATK-3, BCP-7, O21-16: DCR client + provoked invalid_scope: no auto-redirect."""
        client = OAuthClient(
            client_id="phish", redirect_uris=("https://evil.test/landing",), source="dcr"
        )
        result = check(params(client, scope="no-such-scope"), client)
        assert isinstance(result, ErrorPage)
        self.assertIsInstance(result.error, InvalidScope)

    def test_cimd_client_error_gets_error_page(self) -> None:
        """O21-16: CIMD clients are untrusted until approved."""
        client = public_client(source="cimd")
        self.assertIsInstance(check(params(client, scope="nope"), client), ErrorPage)

    def test_approved_client_error_is_redirected(self) -> None:
        """O21-16: once the user approved the client its verified URI is trusted."""
        client = public_client()
        self.assertIsInstance(check(params(client, scope="nope"), client, True), ErrorRedirect)


class ErrorRedirectTests(SynchronousTestCase):
    """Errors after verification, for trusted clients, go back with error, state, iss."""

    def setUp(self) -> None:
        """A pre-registered (trusted) confidential client."""
        self.client = confidential_client()

    def redirected(self, **overrides: str | list[str] | None) -> dict[str, list[str]]:
        """The query of the error redirect for the overridden request."""
        result = check(params(self.client, **overrides), self.client)
        assert isinstance(result, ErrorRedirect), result
        self.assertTrue(result.location.startswith(self.client.redirect_uris[0] + "?"))
        return query_of(result.location)

    def test_missing_challenge_is_invalid_request(self) -> None:
        """O21-1, ATK-20: even confidential clients must send a PKCE challenge."""
        q = self.redirected(code_challenge=None)
        self.assertEqual(q["error"], ["invalid_request"])

    def test_plain_challenge_is_invalid_request(self) -> None:
        """O21-2, ATK-20: plain is refused with invalid_request."""
        self.assertEqual(
            self.redirected(code_challenge_method="plain")["error"], ["invalid_request"]
        )

    def test_implicit_grant_is_unsupported(self) -> None:
        """O21-7, BCP-8: response_type=token is unsupported_response_type."""
        q = self.redirected(response_type="token")
        self.assertEqual(q["error"], ["unsupported_response_type"])

    def test_unknown_resource_is_invalid_target(self) -> None:
        """MCP-11, RFC 8707: an unknown resource is invalid_target."""
        q = self.redirected(resource="https://elsewhere.test")
        self.assertEqual(q["error"], ["invalid_target"])

    def test_error_redirect_carries_iss_and_state(self) -> None:
        """ATK-24, MCP-12, O21-15, BCP-5: error responses carry iss (and the client's state)."""
        q = self.redirected(scope="nope")
        self.assertEqual(q["iss"], [ISSUER])
        self.assertEqual(q["state"], ["xyz"])
        self.assertEqual(q["error"], ["invalid_scope"])

    def test_repeated_scope_is_invalid_request(self) -> None:
        """RFC 6749 §3.1: parameters must not repeat."""
        self.assertEqual(self.redirected(scope=["a", "b"])["error"], ["invalid_request"])


class ResponseTests(SynchronousTestCase):
    """The shape of authorization responses."""

    def test_success_carries_code_state_and_iss(self) -> None:
        """ATK-24, MCP-12: the success redirect has code, state and iss."""
        request = authorization_request()
        q = query_of(success_redirect(request, "the-code", ISSUER))
        self.assertEqual(q, {"code": ["the-code"], "state": ["client-state"], "iss": [ISSUER]})

    def test_existing_query_of_redirect_uri_is_kept(self) -> None:
        """RFC 6749 §3.1.2: the redirect URI's own query is retained."""
        location = error_response(
            AccessDenied("no"),
            issuer=ISSUER,
            redirect_uri="https://a.test/cb?x=1",
            state=None,
            trusted=True,
        )
        assert isinstance(location, ErrorRedirect)
        self.assertEqual(query_of(location.location)["x"], ["1"])
        self.assertEqual(query_of(location.location)["iss"], [ISSUER])

    def test_user_denial_after_consent_is_redirected_with_iss(self) -> None:
        """ATK-24: access_denied after the user's choice returns to the client with iss."""
        result = error_response(
            AccessDenied("the user denied the request"),
            issuer=ISSUER,
            redirect_uri="https://app.example.test/cb",
            state="s",
            trusted=True,
        )
        assert isinstance(result, ErrorRedirect)
        self.assertEqual(query_of(result.location)["error"], ["access_denied"])
        self.assertEqual(query_of(result.location)["iss"], [ISSUER])

    def test_untrusted_error_response_is_a_page(self) -> None:
        """ATK-3: error_response never redirects for an untrusted client."""
        result = error_response(
            AccessDenied(),
            issuer=ISSUER,
            redirect_uri="https://evil.test",
            state=None,
            trusted=False,
        )
        self.assertIsInstance(result, ErrorPage)


class RedirectStatusTests(SynchronousTestCase):
    """How the authorization endpoint redirects."""

    def test_redirects_use_303(self) -> None:
        """O21-12: authorization redirects use 303, never 307."""
        self.assertEqual(REDIRECT_STATUS, 303)
