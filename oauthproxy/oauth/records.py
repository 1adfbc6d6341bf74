"""The authorization server's records, as immutable values.

The pure modules of :mod:`oauthproxy.oauth` take these and the current time and return
decisions or new records; the Klein resource loads and stores them.  Secrets never
appear in them: client secrets, authorization codes, refresh tokens and registration
access tokens are kept as SHA-256 hex digests (:func:`token_hash`).  Times are POSIX
seconds from an injected clock; collections are tuples.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from attrs import field, frozen

# per-proxy settings are stored on the Proxy record, so they live in the model
from oauthproxy.model import AuthServerOverrides as AuthServerOverrides
from oauthproxy.model import ResourceSettings as ResourceSettings

ApplicationType = Literal["native", "web"]
ClientSource = Literal["static", "dcr", "cimd"]

#: authorization codes live at most this long (O21-6 recommends 10 minutes)
MAX_CODE_LIFETIME = 600.0
#: how long a token family revoked before it was stored stays revoked: a replayed code
#: can revoke the family its first redemption is still storing (ATK-35)
FAMILY_TOMBSTONE_LIFETIME = 2 * MAX_CODE_LIFETIME


def token_hash(value: str) -> str:
    """The SHA-256 hex digest under which a secret value is stored and looked up."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@frozen
class OAuthClient:
    """A registered client: pre-registered (static), dynamically registered, or CIMD."""

    client_id: str
    redirect_uris: tuple[str, ...]
    client_name: str = ""
    #: None for public clients (token_endpoint_auth_method "none")
    client_secret_hash: str | None = field(default=None, repr=False)
    token_endpoint_auth_method: str = "none"
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token")
    response_types: tuple[str, ...] = ("code",)
    application_type: ApplicationType = "web"
    #: space-separated scopes the client registered for; None = any supported scope
    scope: str | None = None
    client_uri: str | None = None
    logo_uri: str | None = None
    contacts: tuple[str, ...] = ()
    software_id: str | None = None
    software_version: str | None = None
    source: ClientSource = "dcr"
    #: SHA-256 of the canonical metadata: identical DCR registrations map to one client
    metadata_key: str = ""
    #: RFC 7592 registration access token, hashed
    registration_token_hash: str | None = field(default=None, repr=False)
    client_id_issued_at: float = 0.0
    #: 0 = the secret never expires (RFC 7591)
    client_secret_expires_at: float = 0.0
    last_used_at: float | None = None
    #: CIMD clients: until when the fetched document may be used (0 = not cached)
    cache_expires_at: float = 0.0

    @property
    def is_public(self) -> bool:
        """Whether the client has no secret (and must therefore use PKCE and rotation)."""
        return self.token_endpoint_auth_method == "none"


@frozen
class InitialAccessToken:
    """An operator's token that lets a client register (RFC 7591 §3, ATK-37); stored hashed."""

    #: the operator's name for it (unique)
    name: str
    token_hash: str = field(repr=False)
    created_at: float
    #: 0 = never expires
    expires_at: float = 0.0
    #: how many registrations it allows; 0 = any number
    max_uses: int = 0
    #: registrations made with it so far
    uses: int = 0

    def usable(self, now: float) -> bool:
        """Whether one more registration may use it at ``now``."""
        fresh = self.expires_at <= 0 or now < self.expires_at
        return fresh and (self.max_uses <= 0 or self.uses < self.max_uses)


@frozen
class UserIdentity:
    """Who logged in at GitHub, with the memberships allowlists may name."""

    #: the GitHub numeric user id, as a string (stable across renames)
    subject: str
    username: str
    #: lower-case organisation logins
    orgs: tuple[str, ...] = ()
    #: lower-case ``org/team-slug`` pairs
    teams: tuple[str, ...] = ()


@frozen
class AuthorizationRequest:
    """A validated ``/authorize`` request, kept while the user logs in."""

    client_id: str
    redirect_uri: str
    #: whether the request carried redirect_uri (then the token request must repeat it)
    redirect_uri_given: bool
    code_challenge: str
    code_challenge_method: str
    scopes: tuple[str, ...]
    #: canonical RFC 8707 resources requested
    resources: tuple[str, ...]
    state: str | None = None


@frozen
class LoginSession:
    """A pending login at GitHub: created only after consent (MCP-20), single-use."""

    #: the ``state`` sent to GitHub; matched exactly at /callback
    state: str
    request: AuthorizationRequest
    #: our PKCE verifier for the GitHub leg (ATK-33)
    upstream_verifier: str = field(repr=False)
    created_at: float
    expires_at: float


@frozen
class AuthorizationCode:
    """An issued authorization code (stored under its hash), bound to everything it needs."""

    code_hash: str = field(repr=False)
    client_id: str
    redirect_uri: str
    redirect_uri_given: bool
    code_challenge: str | None
    code_challenge_method: str | None
    scopes: tuple[str, ...]
    #: the token audience: canonical resources allowed for this user
    audience: tuple[str, ...]
    user: UserIdentity
    issued_at: float
    expires_at: float
    #: the token family created at redemption (so that a replay can revoke it, O21-6)
    family_id: str
    used_at: float | None = None


@frozen
class TokenFamily:
    """Every token descending from one authorization code: revoked as a whole (BCP-4)."""

    family_id: str
    client_id: str
    user: UserIdentity
    scopes: tuple[str, ...]
    audience: tuple[str, ...]
    created_at: float
    revoked_at: float | None = None


@frozen
class RefreshTokenRecord:
    """One refresh token of a family; rotation marks it used and links its successor."""

    token_hash: str = field(repr=False)
    family_id: str
    client_id: str
    scopes: tuple[str, ...]
    issued_at: float
    expires_at: float
    #: set when the token was exchanged; a later use is reuse (BCP-4, ATK-22)
    rotated_at: float | None = None
    replaced_by: str | None = field(default=None, repr=False)
    #: the token response of the rotation, sealed with the storage SecretBox; only kept
    #: when a retry window is configured, so that a retry gets the very same pair
    sealed_response: str | None = field(default=None, repr=False)


@frozen
class AccessTokenClaims:
    """The verified claims of one of our JWT access tokens."""

    issuer: str
    subject: str
    username: str
    audience: tuple[str, ...]
    scopes: tuple[str, ...]
    client_id: str
    jti: str
    issued_at: int
    expires_at: int
