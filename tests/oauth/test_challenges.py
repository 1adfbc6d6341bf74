"""Tests for :mod:`oauthproxy.oauth.challenges`: 401 and 403 answers of protected proxies."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.oauth.challenges import (
    bearer_challenge,
    bearer_token,
    insufficient_scope,
    missing_scopes,
    unauthorized,
)

PRM = "https://mcp.example.test/.well-known/oauth-protected-resource"


class ChallengeTests(SynchronousTestCase):
    """WWW-Authenticate values (MCP-2, MCP-18, RFC 6750 §3)."""

    def test_401_without_token_has_resource_metadata_and_scope(self) -> None:
        """MCP-2, MCP-18: the challenge names the PRM URL and the needed scopes."""
        challenge = unauthorized(PRM, scopes=("mcp:read",))
        self.assertEqual(challenge.status, 401)
        self.assertEqual(
            dict(challenge.headers)["WWW-Authenticate"],
            f'Bearer resource_metadata="{PRM}", scope="mcp:read"',
        )

    def test_401_with_bad_token_says_invalid_token(self) -> None:
        """MCP-17, RFC 6750 §3.1: a presented but invalid token gets error=invalid_token."""
        challenge = unauthorized(PRM, token_presented=True, description="expired")
        header = dict(challenge.headers)["WWW-Authenticate"]
        self.assertIn('error="invalid_token"', header)
        self.assertIn('error_description="expired"', header)
        self.assertEqual(challenge.body["error"], "invalid_token")

    def test_403_lists_every_needed_scope_once(self) -> None:
        """MCP-18: insufficient_scope names all scopes of the operation in one challenge."""
        challenge = insufficient_scope(PRM, required=("a", "b", "a"))
        self.assertEqual(challenge.status, 403)
        header = dict(challenge.headers)["WWW-Authenticate"]
        self.assertIn('error="insufficient_scope"', header)
        self.assertIn('scope="a b"', header)
        self.assertEqual(header.count(" scope="), 1)

    def test_offline_access_never_in_challenge(self) -> None:
        """MCP-14: offline_access is not put in challenges."""
        self.assertNotIn("offline_access", bearer_challenge(PRM, scopes=("offline_access", "x")))

    def test_header_cannot_be_broken_by_quotes(self) -> None:
        """RFC 6750 §3: quotes and backslashes in values cannot end the quoted string."""
        header = bearer_challenge(PRM, description='bad" , error="x\\')
        self.assertEqual(header.count('"'), 4)

    def test_missing_scopes(self) -> None:
        """MCP-18: the scopes a token lacks, in order."""
        self.assertEqual(missing_scopes(("a",), ("a", "b", "c")), ("b", "c"))


class BearerTokenTests(SynchronousTestCase):
    """Reading the token from the request (MCP-16, O21-10)."""

    def test_bearer_header_yields_token(self) -> None:
        """MCP-16: the token comes from Authorization: Bearer (scheme case-insensitive)."""
        self.assertEqual(bearer_token("Bearer abc.def-ghi"), "abc.def-ghi")
        self.assertEqual(bearer_token("bearer abc=="), "abc==")

    def test_other_schemes_and_garbage_yield_nothing(self) -> None:
        """MCP-16, O21-10: Basic, empty, multi-part or odd tokens are not bearer tokens."""
        for header in (None, "", "Basic YTpi", "Bearer", "Bearer a b", 'Bearer "x"', "Bearerabc"):
            self.assertIsNone(bearer_token(header), header)
