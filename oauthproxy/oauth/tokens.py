"""JWT access tokens (RFC 9068 profile) signed with RS256, and the JWKS that verifies them.

Tokens carry ``iss`` (from configuration, never from a request, ATK-8), ``aud`` (the list
of canonical resources the token is for, BCP-3), ``sub`` and ``username`` from GitHub,
``scope``, ``client_id``, a random ``jti`` and ``iat``/``exp`` from the injected clock.
The signing key's ``kid`` is its RFC 7638 thumbprint, so verifiers find it in a key set
after rotation.  Verification pins the algorithm, the token type, the issuer and the
audience, and consults a revocation set by ``jti``; anything wrong is
:class:`~oauthproxy.oauth.errors.InvalidToken` (401, MCP-17, ATK-21).

Key generation is CPU-bound (tens of milliseconds): callers do it once at start.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Container, Iterable
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeyParameters, KeySet, RSAKey

from oauthproxy.errors import ConfigError
from oauthproxy.oauth.errors import InvalidToken
from oauthproxy.oauth.records import AccessTokenClaims

ALGORITHM = "RS256"
TOKEN_TYPE = "at+jwt"
_KEY_PARAMETERS: KeyParameters = {"use": "sig", "alg": ALGORITHM}


def generate_signing_key(bits: int = 2048) -> RSAKey:
    """A new RSA signing key whose ``kid`` is its RFC 7638 thumbprint."""
    key = RSAKey.generate_key(bits, parameters=_KEY_PARAMETERS, private=True)
    key.ensure_kid()
    return key


def load_signing_key(pem_b64: str) -> RSAKey:
    """The private key from ``OAUTH_JWT_PRIVATE_KEY_B64`` (base64 of a PEM file)."""
    try:
        pem = base64.b64decode(pem_b64.strip(), validate=True)
        key = RSAKey.import_key(pem, parameters=_KEY_PARAMETERS)
    except (binascii.Error, ValueError, JoseError) as e:
        raise ConfigError(
            f"OAUTH_JWT_PRIVATE_KEY_B64 is not a base64-encoded RSA private key PEM ({e})",
            field="oauth_jwt_private_key_b64",
        ) from e
    if not key.is_private:
        raise ConfigError(
            "OAUTH_JWT_PRIVATE_KEY_B64 holds a public key; a private key is needed",
            field="oauth_jwt_private_key_b64",
        )
    key.ensure_kid()
    return key


def signing_key_from_config(pem_b64: str | None) -> RSAKey:
    """The configured key, or a freshly generated one when none is configured."""
    return load_signing_key(pem_b64) if pem_b64 else generate_signing_key()


def key_to_pem_b64(key: RSAKey) -> str:
    """The private key as base64 PEM, the format :func:`load_signing_key` reads."""
    return base64.b64encode(key.as_pem(private=True)).decode("ascii")


def public_key_from_jwk(jwk: dict[str, Any]) -> RSAKey:
    """A verification key from a JWK (private parameters, if any, are dropped)."""
    key = RSAKey.import_key(jwk, parameters=_KEY_PARAMETERS)
    public = RSAKey.import_key(key.as_dict(private=False), parameters=_KEY_PARAMETERS)
    public.ensure_kid()
    return public


def jwks(keys: Iterable[RSAKey]) -> dict[str, Any]:
    """The JWKS document for ``/jwks``: public parameters only."""
    return dict(KeySet(list(keys)).as_dict(private=False))


def new_jti() -> str:
    """A random token identifier (revocation is by ``jti``)."""
    return secrets.token_urlsafe(16)


def mint_access_token(
    key: RSAKey,
    *,
    issuer: str,
    subject: str,
    username: str,
    audience: Iterable[str],
    scopes: Iterable[str],
    client_id: str,
    now: float,
    lifetime: int,
    jti: str | None = None,
) -> tuple[str, AccessTokenClaims]:
    """Sign an access token; return it with the claims it carries."""
    issued = int(now)
    claims = AccessTokenClaims(
        issuer=issuer,
        subject=subject,
        username=username,
        audience=tuple(audience),
        scopes=tuple(scopes),
        client_id=client_id,
        jti=jti or new_jti(),
        issued_at=issued,
        expires_at=issued + lifetime,
    )
    payload = {
        "iss": claims.issuer,
        "sub": claims.subject,
        "username": claims.username,
        "aud": list(claims.audience),
        "scope": " ".join(claims.scopes),
        "client_id": claims.client_id,
        "jti": claims.jti,
        "iat": claims.issued_at,
        "exp": claims.expires_at,
    }
    header = {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": key.kid}
    return jwt.encode(header, payload, key, algorithms=[ALGORITHM]), claims


def verify_access_token(
    token: str,
    keys: KeySet,
    *,
    issuer: str,
    audience: str | None,
    now: float,
    revoked: Container[str] = frozenset(),
) -> AccessTokenClaims:
    """Verify one of our access tokens; raise :class:`InvalidToken` for anything wrong.

    ``audience`` is the canonical resource of the caller (a proxy); None skips the
    audience check (the introspection endpoint, which reports ``aud`` instead).
    """
    if not token or len(token) > 8192 or token.count(".") != 2:
        raise InvalidToken("the access token is not a JWT")
    try:
        decoded = jwt.decode(token, keys, algorithms=[ALGORITHM])
    except (JoseError, ValueError, KeyError, TypeError) as e:
        raise InvalidToken("the access token signature is invalid") from e
    if decoded.header.get("typ") != TOKEN_TYPE:
        raise InvalidToken("the token is not an access token")
    options: dict[str, Any] = {
        "iss": {"essential": True, "value": issuer},
        "exp": {"essential": True},
        "iat": {"essential": True},
        "sub": {"essential": True},
        "jti": {"essential": True},
    }
    if audience is not None:
        options["aud"] = {"essential": True, "value": audience}
    registry = jwt.JWTClaimsRegistry(now=lambda: int(now), **options)
    try:
        registry.validate(decoded.claims)
    except JoseError as e:
        raise InvalidToken(f"the access token is not valid here: {e.error}") from e
    claims = decoded.claims
    if claims["jti"] in revoked:
        raise InvalidToken("the access token was revoked")
    aud = claims.get("aud", [])
    return AccessTokenClaims(
        issuer=claims["iss"],
        subject=str(claims["sub"]),
        username=str(claims.get("username", "")),
        audience=tuple(aud) if isinstance(aud, list) else (str(aud),),
        scopes=tuple(str(claims.get("scope", "")).split()),
        client_id=str(claims.get("client_id", "")),
        jti=str(claims["jti"]),
        issued_at=int(claims["iat"]),
        expires_at=int(claims["exp"]),
    )


def introspection_response(claims: AccessTokenClaims | None) -> dict[str, Any]:
    """The RFC 7662 answer: the claims of an active token, ``{"active": false}`` otherwise.

    Whatever is wrong with a token (unknown, expired, revoked, foreign) is not revealed.
    """
    if claims is None:
        return {"active": False}
    return {
        "active": True,
        "iss": claims.issuer,
        "sub": claims.subject,
        "username": claims.username,
        "aud": list(claims.audience),
        "scope": " ".join(claims.scopes),
        "client_id": claims.client_id,
        "jti": claims.jti,
        "iat": claims.issued_at,
        "exp": claims.expires_at,
        "token_type": "Bearer",
    }
