"""Tests for :mod:`oauthproxy.oauth.pkce`: S256 only, for everyone, no downgrade."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.oauth import pkce
from oauthproxy.oauth.errors import InvalidGrant, InvalidRequest

verifiers = st.text(
    alphabet=string.ascii_letters + string.digits + "-._~", min_size=43, max_size=128
)


class ChallengeTests(SynchronousTestCase):
    """The authorization request's PKCE parameters."""

    def test_rfc7636_appendix_b_vector(self) -> None:
        """O21-1: S256 is implemented exactly as RFC 7636 Appendix B computes it."""
        self.assertEqual(
            pkce.s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        )

    def test_missing_challenge_is_rejected(self) -> None:
        """O21-1, BCP-2, ATK-20: a request without code_challenge is invalid_request."""
        with self.assertRaises(InvalidRequest) as cm:
            pkce.check_challenge(None, None)
        self.assertEqual(cm.exception.field, "code_challenge")

    def test_plain_method_is_rejected(self) -> None:
        """O21-2, ATK-20: code_challenge_method=plain is invalid_request."""
        with self.assertRaises(InvalidRequest):
            pkce.check_challenge(pkce.s256_challenge("a" * 43), "plain")

    def test_missing_method_means_plain_and_is_rejected(self) -> None:
        """O21-2: an absent method defaults to plain (RFC 7636 §4.3) and is refused."""
        with self.assertRaises(InvalidRequest):
            pkce.check_challenge(pkce.s256_challenge("a" * 43), None)

    def test_malformed_s256_challenge_is_rejected(self) -> None:
        """O21-2: an S256 challenge must be 43 base64url characters."""
        with self.assertRaises(InvalidRequest):
            pkce.check_challenge("short", "S256")

    @given(verifiers)
    def test_every_valid_verifier_yields_an_accepted_challenge(self, verifier: str) -> None:
        """MCP-10: the challenge of any valid verifier passes the request check."""
        challenge = pkce.s256_challenge(verifier)
        self.assertEqual(pkce.check_challenge(challenge, "S256"), challenge)


class VerifyTests(SynchronousTestCase):
    """The token request's ``code_verifier``."""

    @given(verifiers)
    def test_matching_verifier_is_accepted(self, verifier: str) -> None:
        """O21-1: the verifier whose S256 hash is the challenge redeems the code."""
        pkce.verify(pkce.s256_challenge(verifier), "S256", verifier)

    @given(verifiers, verifiers)
    def test_other_verifier_is_rejected(self, verifier: str, other: str) -> None:
        """ATK-20: a wrong verifier is invalid_grant."""
        if verifier == other:
            return
        with self.assertRaises(InvalidGrant):
            pkce.verify(pkce.s256_challenge(verifier), "S256", other)

    @given(st.text(max_size=200))
    def test_arbitrary_text_never_passes_unless_it_is_the_verifier(self, text: str) -> None:
        """ATK-20: no text other than the exact verifier passes the check."""
        verifier = "x" * 43
        if text == verifier:
            return
        with self.assertRaises(InvalidGrant):
            pkce.verify(pkce.s256_challenge(verifier), "S256", text)

    def test_verifier_without_challenge_is_a_downgrade(self) -> None:
        """O21-3, BCP-2, ATK-20: a verifier for a code without challenge is refused."""
        with self.assertRaises(InvalidGrant) as cm:
            pkce.verify(None, None, "a" * 43)
        self.assertIn("no code_challenge", cm.exception.detail)

    def test_missing_verifier_is_rejected(self) -> None:
        """O21-1: a code with a challenge needs the verifier."""
        with self.assertRaises(InvalidGrant):
            pkce.verify(pkce.s256_challenge("a" * 43), "S256", None)

    def test_short_verifier_is_rejected(self) -> None:
        """O21-1: verifiers shorter than 43 characters are malformed."""
        short = "a" * 42
        with self.assertRaises(InvalidGrant):
            pkce.verify(pkce.s256_challenge(short), "S256", short)

    def test_new_verifier_is_valid_and_random(self) -> None:
        """ATK-33: the verifiers we send upstream are valid and fresh each time."""
        a, b = pkce.new_verifier(), pkce.new_verifier()
        self.assertTrue(pkce.is_valid_verifier(a))
        self.assertNotEqual(a, b)
