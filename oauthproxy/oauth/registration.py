"""Dynamic client registration (RFC 7591) and management (RFC 7592) rules.

:func:`validate_client_metadata` turns a registration body into normalised
:class:`ClientMetadata` or raises ``invalid_redirect_uri`` / ``invalid_client_metadata``;
unknown metadata is ignored, not rejected (RFC 7591 §2).  Redirect URIs follow the
rules of the client's ``application_type`` (MCP-8).  Only the code grant (with refresh)
exists: implicit and password grants are refused (O21-7, BCP-8).

Registrations are bounded (ATK-28, ATK-37): identical metadata from a public client
maps to the same client (:attr:`ClientMetadata.key`), the number of clients is capped
(a full registry evicts its oldest never-used client, in the store), and clients are
reaped (:func:`client_expired`): one that never completed an authorization after a few
hours, one that did after the configured lifetime without use.  Confidential clients are
never de-duplicated: that would hand one party's secret to another.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from attrs import asdict, evolve, frozen

from oauthproxy.oauth.access import parse_scope
from oauthproxy.oauth.errors import (
    InvalidClientMetadata,
    InvalidRedirectUri,
    InvalidScope,
    InvalidToken,
)
from oauthproxy.oauth.records import ApplicationType, ClientSource, OAuthClient, token_hash
from oauthproxy.oauth.redirects import infer_application_type, validate_registered_redirect_uri

GRANT_TYPES = frozenset({"authorization_code", "refresh_token"})
AUTH_METHODS = frozenset({"none", "client_secret_basic", "client_secret_post"})
MAX_REDIRECT_URIS = 20
MAX_TEXT = 500


@frozen
class ClientMetadata:
    """Validated, normalised client metadata (the fields we keep)."""

    redirect_uris: tuple[str, ...]
    token_endpoint_auth_method: str
    grant_types: tuple[str, ...]
    response_types: tuple[str, ...]
    application_type: ApplicationType
    client_name: str = ""
    scope: str | None = None
    client_uri: str | None = None
    logo_uri: str | None = None
    contacts: tuple[str, ...] = ()
    software_id: str | None = None
    software_version: str | None = None

    @property
    def key(self) -> str:
        """SHA-256 of the canonical metadata: the idempotency key of a registration."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @property
    def is_public(self) -> bool:
        """Whether the client authenticates with nothing (and so gets no secret)."""
        return self.token_endpoint_auth_method == "none"


def _text(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise InvalidClientMetadata(f"{name} must be a string of at most {MAX_TEXT}", name)
    return value


def _https_url(body: Mapping[str, Any], name: str) -> str | None:
    value = _text(body, name)
    if value is not None and not value.startswith("https://"):
        raise InvalidClientMetadata(f"{name} must be an https URL", name)
    return value


def _strings(body: Mapping[str, Any], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidClientMetadata(f"{name} must be a list of strings", name)
    return tuple(dict.fromkeys(value))


def validate_client_metadata(body: object) -> ClientMetadata:
    """Validate an RFC 7591 registration request body (already JSON-decoded)."""
    if not isinstance(body, Mapping):
        raise InvalidClientMetadata("the registration body must be a JSON object")
    if any(k.startswith("client_secret") or k == "client_id" for k in body):
        # the server issues identifiers and secrets; a client cannot choose them
        raise InvalidClientMetadata(
            "client_id and client_secret are issued by the server", "client_id"
        )
    uris = body.get("redirect_uris")
    if not isinstance(uris, list) or not uris:
        raise InvalidRedirectUri("redirect_uris must be a non-empty list", "redirect_uris")
    if len(uris) > MAX_REDIRECT_URIS:
        raise InvalidRedirectUri("too many redirect_uris", "redirect_uris")
    app_type = body.get("application_type")
    if app_type is None:
        app_type = infer_application_type(u for u in uris if isinstance(u, str))
    if app_type not in ("native", "web"):
        raise InvalidClientMetadata("application_type must be native or web", "application_type")
    application_type: ApplicationType = "native" if app_type == "native" else "web"
    redirect_uris = tuple(
        dict.fromkeys(validate_registered_redirect_uri(u, application_type) for u in uris)
    )
    method = body.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in AUTH_METHODS:
        raise InvalidClientMetadata(
            "token_endpoint_auth_method must be none, client_secret_basic or client_secret_post",
            "token_endpoint_auth_method",
        )
    grant_types = _strings(body, "grant_types", ("authorization_code",))
    unsupported = [g for g in grant_types if g not in GRANT_TYPES]
    if unsupported or "authorization_code" not in grant_types:
        raise InvalidClientMetadata(
            "grant_types must include authorization_code and may add refresh_token only",
            "grant_types",
        )
    response_types = _strings(body, "response_types", ("code",))
    if response_types != ("code",):
        raise InvalidClientMetadata('response_types must be ["code"]', "response_types")
    scope = _text(body, "scope")
    if scope is not None:
        # clients pad or double-space the list (the MCP SDK sends " offline_access"):
        # registration metadata is advisory, so normalise the spacing instead of refusing
        scope = " ".join(scope.split())
        try:
            parse_scope(scope)
        except InvalidScope as e:
            raise InvalidClientMetadata("scope is malformed", "scope") from e
    contacts = _strings(body, "contacts", ())
    return ClientMetadata(
        redirect_uris=redirect_uris,
        token_endpoint_auth_method=method,
        grant_types=grant_types,
        response_types=response_types,
        application_type=application_type,
        client_name=_text(body, "client_name") or "",
        scope=scope or None,
        client_uri=_https_url(body, "client_uri"),
        logo_uri=_https_url(body, "logo_uri"),
        contacts=contacts[:10],
        software_id=_text(body, "software_id"),
        software_version=_text(body, "software_version"),
    )


def new_client(
    metadata: ClientMetadata,
    *,
    client_id: str,
    now: float,
    client_secret: str | None,
    registration_token: str | None,
    source: ClientSource = "dcr",
) -> OAuthClient:
    """The client record for a new registration (secrets stored hashed)."""
    if metadata.is_public != (client_secret is None):
        raise InvalidClientMetadata(
            "a secret is issued exactly to confidential clients", "token_endpoint_auth_method"
        )
    return OAuthClient(
        client_id=client_id,
        redirect_uris=metadata.redirect_uris,
        client_name=metadata.client_name,
        client_secret_hash=None if client_secret is None else token_hash(client_secret),
        token_endpoint_auth_method=metadata.token_endpoint_auth_method,
        grant_types=metadata.grant_types,
        response_types=metadata.response_types,
        application_type=metadata.application_type,
        scope=metadata.scope,
        client_uri=metadata.client_uri,
        logo_uri=metadata.logo_uri,
        contacts=metadata.contacts,
        software_id=metadata.software_id,
        software_version=metadata.software_version,
        source=source,
        metadata_key=metadata.key if metadata.is_public else "",
        registration_token_hash=(
            None if registration_token is None else token_hash(registration_token)
        ),
        client_id_issued_at=now,
    )


def updated_client(client: OAuthClient, metadata: ClientMetadata) -> OAuthClient:
    """RFC 7592 update: the new metadata replaces the old; identity and secret stay."""
    if metadata.is_public != client.is_public:
        raise InvalidClientMetadata(
            "token_endpoint_auth_method cannot switch between public and confidential",
            "token_endpoint_auth_method",
        )
    return evolve(
        client,
        redirect_uris=metadata.redirect_uris,
        client_name=metadata.client_name,
        token_endpoint_auth_method=metadata.token_endpoint_auth_method,
        grant_types=metadata.grant_types,
        response_types=metadata.response_types,
        application_type=metadata.application_type,
        scope=metadata.scope,
        client_uri=metadata.client_uri,
        logo_uri=metadata.logo_uri,
        contacts=metadata.contacts,
        software_id=metadata.software_id,
        software_version=metadata.software_version,
        metadata_key=metadata.key if metadata.is_public else "",
    )


def registration_response(
    client: OAuthClient,
    *,
    client_secret: str | None = None,
    registration_token: str | None = None,
    registration_client_uri: str | None = None,
) -> dict[str, Any]:
    """The RFC 7591 §3.2.1 / RFC 7592 response body for ``client``."""
    body: dict[str, Any] = {
        "client_id": client.client_id,
        "client_id_issued_at": int(client.client_id_issued_at),
        "redirect_uris": list(client.redirect_uris),
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "grant_types": list(client.grant_types),
        "response_types": list(client.response_types),
        "application_type": client.application_type,
    }
    if client.client_name:
        body["client_name"] = client.client_name
    for name in ("scope", "client_uri", "logo_uri", "software_id", "software_version"):
        value = getattr(client, name)
        if value is not None:
            body[name] = value
    if client.contacts:
        body["contacts"] = list(client.contacts)
    if client_secret is not None:
        body["client_secret"] = client_secret
        body["client_secret_expires_at"] = int(client.client_secret_expires_at)
    if registration_token is not None:
        body["registration_access_token"] = registration_token
    if registration_client_uri is not None:
        body["registration_client_uri"] = registration_client_uri
    return body


def check_registration_token(client: OAuthClient | None, token: str | None) -> OAuthClient:
    """The client an RFC 7592 request may manage, given its registration access token.

    An unknown client and a wrong token are indistinguishable (both ``invalid_token``,
    401, RFC 7592 §3), so client ids cannot be probed.
    """
    if (
        client is None
        or client.registration_token_hash is None
        or not token
        or not hmac.compare_digest(token_hash(token), client.registration_token_hash)
    ):
        raise InvalidToken("invalid registration access token")
    return client


def client_expired(
    client: OAuthClient, *, now: float, lifetime: float, unused_lifetime: float
) -> bool:
    """Whether the reaper drops a dynamically registered client (ATK-28, ATK-37).

    A client that never completed an authorization (``last_used_at`` None) goes
    ``unused_lifetime`` seconds after its registration; one that did, ``lifetime``
    seconds after its last use.  A lifetime of 0 keeps clients forever.
    """
    if client.source != "dcr":
        return False
    if client.last_used_at is None:
        return unused_lifetime > 0 and now - client.client_id_issued_at >= unused_lifetime
    return lifetime > 0 and now - client.last_used_at >= lifetime
