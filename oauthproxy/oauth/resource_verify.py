"""Verification endpoints of the authorization server, mixed into ``OAuthServer``.

``/jwks`` publishes the public keys every daemon signs with (from the mirrored
``oauth_signing_key`` records).  ``/verify`` is a forward-auth check for a reverse proxy
in front of us: the ``X-Forwarded-Host`` names the protected proxy whose resource must be
in the token's audience (ATK-21); the answer is 200 with identity headers, 401 with
``WWW-Authenticate: Bearer resource_metadata=…`` and the needed scopes (MCP-2), or 403
``insufficient_scope`` (MCP-18).
"""

from __future__ import annotations

import json

from twisted.web.server import Request

from oauthproxy.interfaces import ISnapshotSource
from oauthproxy.oauth.challenges import bearer_token, insufficient_scope, unauthorized
from oauthproxy.oauth.errors import InvalidToken
from oauthproxy.oauth.keys import JWKS_MAX_AGE
from oauthproxy.oauth.metadata import protected_resource_metadata_urls
from oauthproxy.oauth.proxies import resource_of
from oauthproxy.oauth.resource_http import OAuthSettings, set_header
from oauthproxy.oauth.resource_tokens import oauth_app
from oauthproxy.oauth.tokens import jwks
from oauthproxy.oauth.verifier import SnapshotVerifier


class VerifyEndpoints:
    """``/jwks`` and ``/verify``; ``OAuthServer`` provides the attributes."""

    settings: OAuthSettings
    snapshots: ISnapshotSource
    verifier: SnapshotVerifier

    @oauth_app.route("/jwks", methods=["GET"])
    def jwks_document(self, request: Request) -> bytes:
        """The public keys every daemon signs with."""
        set_header(request, "Content-Type", "application/json")
        set_header(request, "Cache-Control", f"public, max-age={JWKS_MAX_AGE}")
        return json.dumps(jwks(self.verifier.public_keys())).encode("utf-8")

    @oauth_app.route("/verify", methods=["GET", "POST", "HEAD"])
    def verify(self, request: Request) -> bytes:
        """Forward-auth check for ``X-Forwarded-Host``: identity headers, or a challenge."""
        host = (request.getHeader("x-forwarded-host") or "").split(",")[0].strip().lower()
        proxy = self.snapshots.current.proxies.get(host) if host else None
        audience = (
            resource_of(proxy, self.settings.public_ports)
            if proxy is not None
            else self.settings.base
        )
        auth = proxy.auth if proxy is not None else None
        metadata_url = protected_resource_metadata_urls(audience)[0]
        required = auth.required_scopes if auth is not None else ()
        token = bearer_token(request.getHeader("authorization"))
        try:
            if token is None:
                raise InvalidToken("no bearer token")
            claims = self.verifier.check(token, audience)
        except InvalidToken as error:
            answer = unauthorized(
                metadata_url,
                scopes=required,
                token_presented=token is not None,
                description=error.description,
            )
        else:
            missing = [s for s in required if s not in claims.scopes]
            users = auth.required_users if auth is not None else ()
            if missing or (users and claims.username.lower() not in {u.lower() for u in users}):
                answer = insufficient_scope(metadata_url, required=required)
            else:
                set_header(request, "X-Auth-Request-User", claims.username)
                set_header(request, "X-Auth-Request-Subject", claims.subject)
                set_header(request, "X-Auth-Request-Scopes", " ".join(claims.scopes))
                set_header(request, "X-Auth-Request-Client-Id", claims.client_id)
                set_header(request, "Cache-Control", "no-store")
                return b""
        request.setResponseCode(answer.status)
        for name, value in answer.headers:
            set_header(request, name, value)
        return json.dumps(answer.body).encode("utf-8")
