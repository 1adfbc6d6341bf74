"""API token values and their stored form (pure).

A token value is ``acm_`` followed by 43 url-safe characters (256 random bits);
only its SHA-256 hex digest is stored.  Because the value is high-entropy a plain
hash is enough, and looking the digest up means the secret itself is never
compared byte by byte; :func:`same_hash` compares digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_PREFIX = "acm_"


def new_token_value() -> str:
    """A fresh random API token value."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(value: str) -> str:
    """The stored form of a token value: its SHA-256 hex digest."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def same_hash(a: str, b: str) -> bool:
    """Compare two digests in constant time."""
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))
