"""Sample records shared by the OAuth tests: clients, users, requests, a signing key."""

from __future__ import annotations

from functools import cache

from joserfc.jwk import RSAKey

from oauthproxy.oauth import pkce
from oauthproxy.oauth.records import AuthorizationRequest, OAuthClient, UserIdentity, token_hash
from oauthproxy.oauth.tokens import generate_signing_key

ISSUER = "https://auth.example.test"
RESOURCE_A = "https://mcp-a.example.test"
RESOURCE_B = "https://mcp-b.example.test"
SCOPES = ("mcp:read", "mcp:write", "offline_access")
VERIFIER = "v" * 43 + "-._~0123456789"
CHALLENGE = pkce.s256_challenge(VERIFIER)
CLIENT_SECRET = "s3cret-value"

ALICE = UserIdentity(subject="1001", username="Alice", orgs=("acme",), teams=("acme/ops",))
BOB = UserIdentity(subject="1002", username="bob")


def public_client(source: str = "dcr", client_id: str = "client-pub") -> OAuthClient:
    """A public (PKCE-only) client with an https and a loopback redirect URI."""
    return OAuthClient(
        client_id=client_id,
        redirect_uris=("https://app.example.test/cb", "http://127.0.0.1/callback"),
        client_name="Public App",
        token_endpoint_auth_method="none",
        application_type="native",
        source=source,  # type: ignore[arg-type]
    )


def confidential_client(client_id: str = "client-conf") -> OAuthClient:
    """A pre-registered confidential client whose secret is :data:`CLIENT_SECRET`."""
    return OAuthClient(
        client_id=client_id,
        redirect_uris=("https://conf.example.test/cb",),
        client_name="Confidential App",
        client_secret_hash=token_hash(CLIENT_SECRET),
        token_endpoint_auth_method="client_secret_basic",
        source="static",
    )


def authorization_request(
    client: OAuthClient | None = None, resources: tuple[str, ...] = (RESOURCE_A,)
) -> AuthorizationRequest:
    """A validated authorization request of ``client`` (default: the public client)."""
    c = client or public_client()
    return AuthorizationRequest(
        client_id=c.client_id,
        redirect_uri=c.redirect_uris[0],
        redirect_uri_given=True,
        code_challenge=CHALLENGE,
        code_challenge_method=pkce.S256,
        scopes=("mcp:read",),
        resources=resources,
        state="client-state",
    )


@cache
def signing_key() -> RSAKey:
    """One RSA key for the whole test run (generation is slow)."""
    return generate_signing_key()


@cache
def other_signing_key() -> RSAKey:
    """A second, unrelated key."""
    return generate_signing_key()
