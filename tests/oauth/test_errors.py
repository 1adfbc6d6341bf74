"""Tests for :mod:`oauthproxy.oauth.errors`: RFC 6749/6750 error objects."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.errors import OAuthProxyError
from oauthproxy.oauth.errors import (
    InvalidClient,
    InvalidGrant,
    InvalidTarget,
    InvalidToken,
    safe_description,
)


class ErrorTests(SynchronousTestCase):
    """Error codes, statuses, bodies and headers."""

    def test_json_body(self) -> None:
        """RFC 6749 §5.2: error and error_description."""
        self.assertEqual(
            InvalidGrant("code expired").json(),
            {"error": "invalid_grant", "error_description": "code expired"},
        )

    def test_errors_are_oauthproxy_errors_with_field(self) -> None:
        """Errors join the project hierarchy and name the offending field."""
        error = InvalidTarget("bad resource", "resource")
        self.assertIsInstance(error, OAuthProxyError)
        self.assertEqual(
            (error.error, error.status, error.field), ("invalid_target", 400, "resource")
        )

    def test_token_errors_are_not_cached(self) -> None:
        """O21-8: error responses carry Cache-Control: no-store."""
        self.assertIn(("Cache-Control", "no-store"), InvalidGrant().headers())

    def test_invalid_client_is_401_with_challenge(self) -> None:
        """RFC 6749 §5.2: invalid_client is 401 with WWW-Authenticate."""
        error = InvalidClient()
        self.assertEqual(error.status, 401)
        self.assertIn("WWW-Authenticate", dict(error.headers()))

    def test_invalid_token_is_401(self) -> None:
        """RFC 6750 §3.1: invalid_token is 401."""
        self.assertEqual(InvalidToken().status, 401)

    def test_description_uses_restricted_charset(self) -> None:
        """O21-8: error_description drops quotes, backslashes and non-ASCII."""
        self.assertEqual(safe_description('a"b\\c\u00e9\n'), "a?b?c??")
        self.assertEqual(InvalidGrant('say "hi"').description, "say ?hi?")

    def test_default_description_is_the_docstring(self) -> None:
        """An error raised without detail still explains itself."""
        self.assertTrue(InvalidGrant().json()["error_description"])
