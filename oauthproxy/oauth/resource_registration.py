"""Dynamic client registration endpoints, mixed into ``OAuthServer`` (RFC 7591/7592).

``/register`` is idempotent for identical public metadata and capped (a full registry
evicts its oldest never-used client, in the store), rate-limited per source, and, as
the operator chooses with ``OAUTH_REGISTRATION``, open, open only to initial access
tokens (RFC 7591 §3), or closed (ATK-28, ATK-37).  ``/register/{client_id}`` lets a
client read, update or delete its own registration with its registration access token
(RFC 7592).  The validation rules are in :mod:`oauthproxy.oauth.registration`.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Request

from oauthproxy.interfaces import IOAuthStore
from oauthproxy.oauth import grants
from oauthproxy.oauth.challenges import bearer_token
from oauthproxy.oauth.errors import (
    AccessDenied,
    InitialTokenRequired,
    InvalidClientMetadata,
    OAuth2Error,
    RateLimited,
    TemporarilyUnavailable,
)
from oauthproxy.oauth.limits import SourceLimiter
from oauthproxy.oauth.records import OAuthClient, token_hash
from oauthproxy.oauth.registration import (
    check_registration_token,
    new_client,
    registration_response,
    updated_client,
    validate_client_metadata,
)
from oauthproxy.oauth.resource_http import (
    MAX_BODY,
    OAuthSettings,
    client_source,
    json_answer,
    render_oauth_error,
)
from oauthproxy.oauth.resource_tokens import oauth_app


class RegistrationEndpoints:
    """The endpoints of the module docstring; ``OAuthServer`` provides the attributes."""

    settings: OAuthSettings
    store: IOAuthStore
    clock: IReactorTime
    registrations: SourceLimiter

    @oauth_app.route("/register", methods=["POST"])
    async def register(self, request: Request) -> bytes:
        """RFC 7591 registration: identical public metadata maps to one client (ATK-28).

        Per source rate-limited; closed, or open only to an initial access token, as the
        operator chose (``OAUTH_REGISTRATION``, RFC 7591 §3, ATK-37).
        """
        try:
            if self.settings.registration == "closed":
                raise AccessDenied("dynamic client registration is closed on this server")
            wait = self.registrations.take(client_source(request))
            if wait is not None:
                raise RateLimited("too many registrations from this address", wait)
            metadata = validate_client_metadata(_json_body(request))
            now = self.clock.seconds()
            if self.settings.registration == "token":
                await self.initial_token(request, now)
            secret = None if metadata.is_public else grants.new_secret()
            registration_token = grants.new_secret()
            client = new_client(
                metadata,
                client_id=grants.new_secret(),
                now=now,
                client_secret=secret,
                registration_token=registration_token,
            )
            stored = await self.store.register_client(client, self.settings.max_clients)
            if stored is None:
                raise TemporarilyUnavailable("every registered client is in use; try later")
        except OAuth2Error as error:
            return render_oauth_error(request, error)
        if stored.client_id != client.client_id:
            # the same public client again: its id, no new credentials
            return json_answer(request, registration_response(stored), 201)
        uri = f"{self.settings.base}/register/{client.client_id}"
        body = registration_response(
            client,
            client_secret=secret,
            registration_token=registration_token,
            registration_client_uri=uri,
        )
        return json_answer(request, body, 201)

    async def initial_token(self, request: Request, now: float) -> None:
        """Spend one use of the request's initial access token, or refuse (RFC 7591 §3)."""
        value = bearer_token(request.getHeader("authorization"))
        used = await self.store.use_initial_token(token_hash(value), now) if value else None
        if used is None:
            raise InitialTokenRequired("registration needs a valid initial access token")

    async def _managed(self, request: Request, client_id: str) -> OAuthClient:
        """The client an RFC 7592 request may manage (its registration access token)."""
        client = await self.store.get_client(client_id)
        token = bearer_token(request.getHeader("authorization"))
        return check_registration_token(client, token)

    @oauth_app.route("/register/<client_id>", methods=["GET", "PUT", "DELETE"])
    async def manage(self, request: Request, client_id: str) -> bytes:
        """RFC 7592: read, update or delete one's own registration."""
        try:
            client = await self._managed(request, client_id)
            if request.method == b"DELETE":
                await self.store.delete_client(client.client_id)
                request.setResponseCode(204)
                return b""
            if request.method == b"PUT":
                client = updated_client(client, validate_client_metadata(_json_body(request)))
                await self.store.put_client(client)
        except OAuth2Error as error:
            return render_oauth_error(request, error)
        uri = f"{self.settings.base}/register/{client.client_id}"
        return json_answer(request, registration_response(client, registration_client_uri=uri))


def _json_body(request: Request) -> Any:
    """A JSON request body (RFC 7591 registration); malformed is invalid_client_metadata."""
    kind = (request.getHeader("content-type") or "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise InvalidClientMetadata("the body must be application/json")
    raw = request.content.read(MAX_BODY + 1) if request.content is not None else b""
    if len(raw) > MAX_BODY:
        raise InvalidClientMetadata("the body is too large")
    try:
        return json.loads(raw)
    except ValueError:
        raise InvalidClientMetadata("the body is not JSON") from None
