"""PKCE (RFC 7636) as OAuth 2.1 and RFC 9700 require it: S256 only, for every client.

The authorization request must carry an S256 ``code_challenge`` (O21-1, O21-2, BCP-2);
the token request must carry the matching ``code_verifier``, and a verifier sent for a
code issued without a challenge is refused, which stops the PKCE downgrade (O21-3).
The same helpers build the challenge we send upstream to GitHub (ATK-33).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from oauthproxy.oauth.errors import InvalidGrant, InvalidRequest

S256 = "S256"
SUPPORTED_METHODS = (S256,)

# RFC 7636 §4.1: 43..128 characters of the unreserved set
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
# base64url of a SHA-256 digest without padding is always 43 characters
_S256_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")


def is_valid_verifier(verifier: str) -> bool:
    """Whether ``verifier`` has the length and alphabet RFC 7636 §4.1 requires."""
    return _VERIFIER.fullmatch(verifier) is not None


def s256_challenge(verifier: str) -> str:
    """The S256 code challenge of ``verifier``: BASE64URL(SHA256(ascii(verifier)))."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_verifier() -> str:
    """A fresh random code verifier (64 characters, 384 bits)."""
    return secrets.token_urlsafe(48)


def check_challenge(challenge: str | None, method: str | None) -> str:
    """Validate the PKCE part of an authorization request; return the challenge.

    Every client must send an S256 challenge, public or confidential (O21-1, BCP-2).  A
    missing method means ``plain`` (RFC 7636 §4.3), which we do not support (O21-2).
    """
    if not challenge:
        raise InvalidRequest("code_challenge is required (PKCE S256)", "code_challenge")
    if method is None or method == "":
        raise InvalidRequest(
            "code_challenge_method is required and must be S256", "code_challenge_method"
        )
    if method not in SUPPORTED_METHODS:
        raise InvalidRequest(
            f"unsupported code_challenge_method {method[:20]}; use S256",
            "code_challenge_method",
        )
    if _S256_CHALLENGE.fullmatch(challenge) is None:
        raise InvalidRequest("code_challenge is not a base64url SHA-256 value", "code_challenge")
    return challenge


def verify(challenge: str | None, method: str | None, verifier: str | None) -> None:
    """Check a token request's ``code_verifier`` against the code's stored challenge.

    Raises :class:`InvalidGrant` when a verifier is sent for a code without a challenge
    (downgrade, O21-3), when it is missing or malformed, or when it does not match.
    """
    if challenge is None:
        if verifier is not None:
            raise InvalidGrant(
                "code_verifier sent but the authorization request had no code_challenge",
                "code_verifier",
            )
        raise InvalidGrant("the authorization code was issued without PKCE", "code_verifier")
    if verifier is None:
        raise InvalidGrant("code_verifier is required", "code_verifier")
    if method != S256:
        raise InvalidGrant("unsupported code_challenge_method on the code", "code_verifier")
    if not is_valid_verifier(verifier):
        raise InvalidGrant("code_verifier is malformed", "code_verifier")
    if not hmac.compare_digest(s256_challenge(verifier), challenge):
        raise InvalidGrant("code_verifier does not match the code_challenge", "code_verifier")
