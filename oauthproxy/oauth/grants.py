"""Token-endpoint decisions: client authentication, code redemption, refresh rotation.

Pure functions over records and the current time; they return the records to store
(and the new secrets to hand out) or raise an :class:`~oauthproxy.oauth.errors.OAuth2Error`.
When a failure proves a token family is compromised (a second redemption of a code,
O21-6; any reuse of a rotated refresh token, BCP-4), the error's ``revoke_family``
names the family the caller must revoke.

Codes live at most ten minutes and are bound to the client, the redirect URI, the
PKCE challenge, the scopes and the audience (O21-6).  Refresh tokens are bound to the
client, one-time use with rotation (O21-9, MCP-14).  A rotated-out token is never
exchanged again (OAuth 2.1 §4.3.1, RFC 9700 §4.14, ATK-34): its reuse revokes the
family.  The one exception is an optional retry window (``OAUTH_REFRESH_RETRY_WINDOW``,
off by default) for a client whose response got lost: inside it, the retry is answered
with the very pair the rotation issued (:class:`Replay`), never with a new one.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Collection, Sequence
from urllib.parse import unquote_plus

from attrs import evolve, frozen

from oauthproxy.oauth import pkce
from oauthproxy.oauth.access import canonical_resources, narrower_scopes
from oauthproxy.oauth.errors import InvalidClient, InvalidGrant, InvalidTarget
from oauthproxy.oauth.records import (
    MAX_CODE_LIFETIME,
    AuthorizationCode,
    AuthorizationRequest,
    OAuthClient,
    RefreshTokenRecord,
    TokenFamily,
    UserIdentity,
    token_hash,
)


def new_secret() -> str:
    """A random opaque secret: codes, refresh tokens, client secrets (256 bits)."""
    return secrets.token_urlsafe(32)


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    """``(client_id, client_secret)`` from an ``Authorization: Basic`` header, or None.

    Both parts are form-urlencoded before base64 (RFC 6749 §2.3.1).
    """
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = raw.partition(":")
    if not sep:
        return None
    return unquote_plus(client_id), unquote_plus(secret)


def authenticate_client(
    client: OAuthClient | None, *, secret: str | None, now: float
) -> OAuthClient:
    """Check the client's credentials at the token, revocation or introspection endpoint.

    Confidential clients may send their secret by Basic or in the body (O21-11); public
    clients must send none.  Secrets are compared as SHA-256 digests in constant time.
    """
    if client is None:
        raise InvalidClient("unknown client")
    if client.is_public:
        if secret:
            raise InvalidClient("this client is public and has no secret")
        return client
    if not secret or client.client_secret_hash is None:
        raise InvalidClient("client authentication is required")
    if not hmac.compare_digest(token_hash(secret), client.client_secret_hash):
        raise InvalidClient("client authentication failed")
    if client.client_secret_expires_at and now >= client.client_secret_expires_at:
        raise InvalidClient("the client secret has expired")
    return client


def issue_code(
    request: AuthorizationRequest,
    user: UserIdentity,
    *,
    audience: tuple[str, ...],
    now: float,
    lifetime: float = MAX_CODE_LIFETIME,
) -> tuple[str, AuthorizationCode]:
    """A new authorization code for a completed login: ``(code, record)``."""
    code = new_secret()
    record = AuthorizationCode(
        code_hash=token_hash(code),
        client_id=request.client_id,
        redirect_uri=request.redirect_uri,
        redirect_uri_given=request.redirect_uri_given,
        code_challenge=request.code_challenge,
        code_challenge_method=request.code_challenge_method,
        scopes=request.scopes,
        audience=audience,
        user=user,
        issued_at=now,
        expires_at=now + min(lifetime, MAX_CODE_LIFETIME),
        family_id=new_secret(),
    )
    return code, record


@frozen
class CodeRedemption:
    """A successful code redemption: the used code and the new token family."""

    used_code: AuthorizationCode
    family: TokenFamily
    #: the access token's audience (the code's, or the subset the request names)
    audience: tuple[str, ...]


def _narrowed_audience(requested: Sequence[str], granted: tuple[str, ...]) -> tuple[str, ...]:
    # RFC 8707 §2.2: the token request may name a subset of the authorized resources
    if not requested:
        return granted
    audience = canonical_resources(requested, granted)
    return audience


def redeem_code(
    record: AuthorizationCode | None,
    *,
    client: OAuthClient,
    code_verifier: str | None,
    redirect_uri: str | None,
    resources: Sequence[str] = (),
    now: float,
) -> CodeRedemption:
    """Exchange an authorization code (already looked up by hash) for a token family.

    Refuses: an unknown code; a code issued to another client; a second redemption
    (and asks to revoke what the first one issued, O21-6); an expired code; a changed
    redirect URI (O21-7, ATK-2); a missing, downgraded or wrong PKCE verifier (ATK-20);
    a resource outside the code's audience (``invalid_target``).
    """
    if record is None:
        raise InvalidGrant("unknown authorization code", "code")
    if record.client_id != client.client_id:
        raise InvalidGrant("the authorization code was issued to another client", "code")
    if record.used_at is not None:
        raise InvalidGrant(
            "the authorization code was already used", "code", revoke_family=record.family_id
        )
    if now >= record.expires_at:
        raise InvalidGrant("the authorization code has expired", "code")
    if (record.redirect_uri_given or redirect_uri is not None) and (
        redirect_uri != record.redirect_uri
    ):
        raise InvalidGrant("redirect_uri does not match the authorization request", "redirect_uri")
    pkce.verify(record.code_challenge, record.code_challenge_method, code_verifier)
    audience = _narrowed_audience(resources, record.audience)
    family = TokenFamily(
        family_id=record.family_id,
        client_id=record.client_id,
        user=record.user,
        scopes=record.scopes,
        audience=record.audience,
        created_at=now,
    )
    return CodeRedemption(evolve(record, used_at=now), family, audience)


def new_refresh_token(
    family: TokenFamily, *, scopes: tuple[str, ...], now: float, lifetime: float
) -> tuple[str, RefreshTokenRecord]:
    """A fresh refresh token of ``family``: ``(token, record)``."""
    value = new_secret()
    record = RefreshTokenRecord(
        token_hash=token_hash(value),
        family_id=family.family_id,
        client_id=family.client_id,
        scopes=scopes,
        issued_at=now,
        expires_at=now + lifetime,
    )
    return value, record


@frozen
class Rotation:
    """A successful refresh: the old token marked rotated, its successor, the grant."""

    rotated: RefreshTokenRecord
    new_token: str
    new_record: RefreshTokenRecord
    family: TokenFamily
    #: the access token's scopes and audience
    scopes: tuple[str, ...]
    audience: tuple[str, ...]


@frozen
class Replay:
    """A retry inside the retry window: answer with the pair the rotation already issued."""

    #: the rotated record, carrying the sealed response of its rotation
    rotated: RefreshTokenRecord


def rotate_refresh_token(
    record: RefreshTokenRecord | None,
    family: TokenFamily | None,
    *,
    client: OAuthClient,
    requested_scopes: tuple[str, ...] = (),
    resources: Sequence[str] = (),
    allowed: Collection[str] | None = None,
    now: float,
    lifetime: float,
    retry_window: float = 0.0,
) -> Rotation | Replay:
    """Exchange a refresh token (looked up by hash) for a new one and a new grant.

    Refuses another client's token (ATK-22), a revoked family, an expired token, wider
    scopes (ATK-22), and resources outside the family (``invalid_target``).  A token
    that was already rotated is reuse: refused, and the whole family must be revoked
    (BCP-4, ATK-22, ATK-34), unless the use comes within ``retry_window`` seconds of
    the rotation and the rotation's response was kept: then :class:`Replay`.
    ``allowed`` re-applies the user's current allowlists: resources the user lost are
    dropped from the new token.
    """
    if record is None or family is None or record.family_id != family.family_id:
        raise InvalidGrant("unknown refresh token", "refresh_token")
    if record.client_id != client.client_id:
        raise InvalidGrant("the refresh token was issued to another client", "refresh_token")
    if family.revoked_at is not None:
        raise InvalidGrant("the refresh token was revoked", "refresh_token")
    if now >= record.expires_at:
        raise InvalidGrant("the refresh token has expired", "refresh_token")
    if record.rotated_at is not None:
        if retry_allowed(record, now=now, window=retry_window):
            return Replay(record)
        raise InvalidGrant(
            "the refresh token was already used",
            "refresh_token",
            revoke_family=family.family_id,
        )
    scopes = narrower_scopes(requested_scopes, record.scopes)
    audience = _narrowed_audience(resources, family.audience)
    if allowed is not None:
        audience = tuple(resource for resource in audience if resource in allowed)
        if not audience:
            raise InvalidTarget("the user may no longer use these resources", "resource")
    # the successor keeps the original scope (RFC 6749 §6, O21-9) and never outlives it
    value, successor = new_refresh_token(
        family, scopes=record.scopes, now=now, lifetime=min(lifetime, record.expires_at - now)
    )
    rotated = evolve(record, rotated_at=now, replaced_by=successor.token_hash)
    return Rotation(rotated, value, successor, family, scopes, audience)


def retry_allowed(record: RefreshTokenRecord, *, now: float, window: float) -> bool:
    """Whether a use of the rotated ``record`` is a retry to answer with the same pair."""
    return (
        window > 0
        and record.rotated_at is not None
        and record.sealed_response is not None
        and now - record.rotated_at <= window
    )


def token_response(
    access_token: str,
    *,
    expires_in: int,
    scopes: tuple[str, ...],
    refresh_token: str | None,
) -> dict[str, object]:
    """The token endpoint's JSON body (sent with ``Cache-Control: no-store``, O21-8)."""
    body: dict[str, object] = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": " ".join(scopes),
    }
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    return body


TOKEN_RESPONSE_HEADERS = (
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
)
