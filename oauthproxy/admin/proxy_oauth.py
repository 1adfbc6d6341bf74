"""A proxy's OAuth settings: ``/proxy/targets/{hostname}/`` resource, oauth-server, github-oauth.

Three small documents stored on the :class:`~oauthproxy.model.Proxy` record, next to
its ``auth`` (:mod:`oauthproxy.admin.auth_config`):

- ``resource`` (``Proxy.oauth_resource``): the RFC 9728 protected-resource settings
  the gateway serves for the proxy (resource URI on the proxy's own host, scopes,
  authorization servers, documentation, extra fields);
- ``oauth-server`` (``Proxy.oauth_server``): overrides of the RFC 8414 metadata served
  for the proxy (issuer, scopes, grant and response types, auth methods, claims, extra
  fields); what the server does not implement is never advertised;
- ``github-oauth`` (``Proxy.github_client_id``/``github_client_secret``): a GitHub
  OAuth app used instead of the global one when a login asks for this proxy's
  resource.  The secret is write-only: answers say ``has_secret`` and nothing more,
  and the store seals it at rest.

The documents may only name this daemon's own authorization server (its issuer) as
``issuer`` or in ``authorization_servers``: the gateway verifies our tokens only, so
sending clients to another server could never work (422 naming the issuer).

``POST`` changes only the fields given (on top of the current settings or the
defaults), ``DELETE`` returns to the defaults.  Ownership works as for the proxy: a
non-admin token reaches only its own proxies (others' are 404).  Every write goes
to the store with its event, so every daemon's gateway and OAuth server see it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from attrs import define, evolve
from klein import Klein
from twisted.internet.interfaces import IReactorTime

from oauthproxy.admin.auth_rules import SCOPE
from oauthproxy.admin.endpoint import ApiContext, Call, Reply, endpoint
from oauthproxy.admin.proxies import HOSTNAME_PARAM, visible_proxy
from oauthproxy.admin.records import record_json
from oauthproxy.admin.schema import Schema, array, boolean, nullable, obj, string
from oauthproxy.admin.validation import http_url
from oauthproxy.errors import ConfigError, InvalidInput
from oauthproxy.interfaces import IStorage
from oauthproxy.model import AuthServerOverrides, Proxy, ResourceSettings, json_fields
from oauthproxy.oauth.metadata import AUTH_METHODS, GRANT_TYPES, RESPONSE_TYPES, validate_issuer
from oauthproxy.oauth.status import OAuthStatus

TAGS = ("proxies",)
#: largest custom_metadata object, as compact JSON
MAX_CUSTOM_BYTES = 8192

_URL = string(min_length=1, max_length=2048, description="an absolute URL")
_SCOPES = array(SCOPE, max_items=64, unique=True)
_CUSTOM: Schema = {
    "type": "object",
    "additionalProperties": True,
    "maxProperties": 32,
    "propertyNames": {"minLength": 1, "maxLength": 64, "pattern": r"^[A-Za-z0-9_.:-]+$"},
    "description": "extra top-level fields of the document; standard fields cannot be set",
}
_CLAIM = string(
    min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$", error="a claim name such as email"
)

_RESOURCE_FIELDS: dict[str, Schema] = {
    "resource": nullable(
        string(
            min_length=1,
            max_length=2048,
            description="the resource URI, on the proxy's own host; null = https://<hostname>",
        )
    ),
    "authorization_servers": array(_URL, max_items=8, unique=True),
    "scopes_supported": _SCOPES,
    "bearer_methods_supported": array(
        string(enum=("header",)),
        max_items=1,
        unique=True,
        description="only the Authorization header carries tokens (MCP-16)",
    ),
    "resource_name": nullable(string(min_length=1, max_length=200)),
    "resource_documentation": nullable(_URL),
    "custom_metadata": _CUSTOM,
}
RESOURCE_BODY = obj(_RESOURCE_FIELDS, description="the fields to change; the others stay")
RESOURCE_VIEW = obj(
    {
        "hostname": string(max_length=253),
        "resource": nullable(obj(_RESOURCE_FIELDS, required=tuple(_RESOURCE_FIELDS))),
    },
    required=("hostname", "resource"),
)


def _choice(values: tuple[str, ...], what: str) -> Schema:
    """A nullable list of some of ``values`` (null = the server's own list)."""
    return nullable(
        array(string(enum=values), max_items=len(values), unique=True, description=what)
    )


_SERVER_FIELDS: dict[str, Schema] = {
    "issuer": nullable(
        string(
            min_length=1,
            max_length=2048,
            description="https URL (http only on loopback); null = the daemon's issuer",
        )
    ),
    "scopes_supported": nullable(_SCOPES),
    "grant_types_supported": _choice(GRANT_TYPES, "grant types to advertise"),
    "response_types_supported": _choice(RESPONSE_TYPES, "response types to advertise"),
    "token_endpoint_auth_methods_supported": _choice(AUTH_METHODS, "client auth methods"),
    "claims_supported": nullable(array(_CLAIM, max_items=64, unique=True)),
    "pkce_required": boolean(description="always true: OAuth 2.1 requires PKCE S256"),
    "custom_metadata": _CUSTOM,
    "override_defaults": boolean(
        description="true: the lists replace the server's; false: scopes and claims add to them"
    ),
}
SERVER_BODY = obj(_SERVER_FIELDS, description="the fields to change; the others stay")
SERVER_VIEW = obj(
    {
        "hostname": string(max_length=253),
        "oauth_server": nullable(obj(_SERVER_FIELDS, required=tuple(_SERVER_FIELDS))),
    },
    required=("hostname", "oauth_server"),
)

_GITHUB_FIELDS: dict[str, Schema] = {
    "client_id": string(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9._-]+$",
        error="a GitHub OAuth app client id (letters, digits, '.', '_' and '-')",
    ),
    "client_secret": string(
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="write-only: never shown again",
        error="printable ASCII without spaces",
    ),
}
GITHUB_BODY = obj(_GITHUB_FIELDS, required=("client_id",))
GITHUB_VIEW = obj(
    {
        "hostname": string(max_length=253),
        "client_id": nullable(string(max_length=100)),
        "has_secret": boolean(),
    },
    required=("hostname", "client_id", "has_secret"),
)

#: fields of the documents themselves: custom_metadata may not name them
_RESOURCE_STANDARD = frozenset(
    {"resource", "authorization_servers", "jwks_uri", "resource_signing_alg_values_supported"}
    | set(_RESOURCE_FIELDS)
)
_SERVER_STANDARD = frozenset(
    {
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "registration_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "response_modes_supported",
        "code_challenge_methods_supported",
        "authorization_response_iss_parameter_supported",
        "client_id_metadata_document_supported",
        "revocation_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
    }
    | set(_SERVER_FIELDS)
)


def custom_fields(value: Mapping[str, Any], standard: frozenset[str]) -> dict[str, Any]:
    """``value`` if it is small and names no standard field (which would never change)."""
    for name in value:
        if name in standard:
            raise InvalidInput(f"{name!r} is a standard field", field=f"/custom_metadata/{name}")
    if len(json.dumps(value, separators=(",", ":"))) > MAX_CUSTOM_BYTES:
        raise InvalidInput(
            f"custom_metadata is over {MAX_CUSTOM_BYTES} bytes", field="/custom_metadata"
        )
    return dict(value)


def issuer_url(value: str, field: str, ours: str | None = None) -> str:
    """An issuer: https (http on loopback only), no query or fragment; no trailing slash.

    With ``ours`` (this daemon's issuer), it must be that one.
    """
    try:
        issuer = validate_issuer(http_url(value, field))
    except ConfigError as error:
        raise InvalidInput(error.detail, field=field) from None
    if ours is not None and issuer != ours.rstrip("/"):
        raise InvalidInput(
            f"this daemon's authorization server is {ours}; a proxy can only name that one",
            field=field,
        )
    return issuer


def resource_url(value: str, hostname: str) -> str:
    """A resource URI on the proxy's own host: tokens for it are accepted there only."""
    parts = urlsplit(http_url(value, "/resource"))
    if (parts.hostname or "").lower() != hostname:
        raise InvalidInput(f"the resource must be on {hostname}", field="/resource")
    if parts.query:
        raise InvalidInput("the resource must not have a query", field="/resource")
    return value


def resource_changes(
    body: Mapping[str, Any], hostname: str, ours: str | None = None
) -> dict[str, Any]:
    """The validated ``/resource`` body as model values (issuers: ``ours`` only, if given)."""
    changes: dict[str, Any] = {}
    for name, value in body.items():
        if name == "resource" and value is not None:
            value = resource_url(value, hostname)
        elif name == "authorization_servers":
            # "https://as" and "https://as/" are one server: list it once
            value = tuple(
                dict.fromkeys(
                    issuer_url(url, f"/authorization_servers/{index}", ours)
                    for index, url in enumerate(value)
                )
            )
        elif name == "resource_documentation" and value is not None:
            value = http_url(value, "/resource_documentation")
        elif name == "custom_metadata":
            value = json_fields(custom_fields(value, _RESOURCE_STANDARD))
        elif isinstance(value, list):
            value = tuple(value)
        changes[name] = value
    return changes


def server_changes(body: Mapping[str, Any], ours: str | None = None) -> dict[str, Any]:
    """The validated ``/oauth-server`` body as model values (issuer: ``ours`` only, if given)."""
    changes: dict[str, Any] = {}
    for name, value in body.items():
        if name == "issuer" and value is not None:
            value = issuer_url(value, "/issuer", ours)
        elif name == "pkce_required" and value is not True:
            raise InvalidInput("PKCE (S256) is always required", field="/pkce_required")
        elif name == "custom_metadata":
            value = json_fields(custom_fields(value, _SERVER_STANDARD))
        elif isinstance(value, list):
            value = tuple(value)
        changes[name] = value
    return changes


def _settings_json(settings: ResourceSettings | AuthServerOverrides | None) -> object:
    """Stored settings as the API shows them (custom fields as one object)."""
    if settings is None:
        return None
    shown = record_json(settings)
    shown["custom_metadata"] = settings.custom_fields
    return shown


def resource_view(proxy: Proxy) -> dict[str, Any]:
    """A proxy's RFC 9728 settings as JSON."""
    return {"hostname": proxy.hostname, "resource": _settings_json(proxy.oauth_resource)}


def server_view(proxy: Proxy) -> dict[str, Any]:
    """A proxy's authorization-server overrides as JSON."""
    return {"hostname": proxy.hostname, "oauth_server": _settings_json(proxy.oauth_server)}


def github_view(proxy: Proxy) -> dict[str, Any]:
    """A proxy's GitHub app, without its secret."""
    return {
        "hostname": proxy.hostname,
        "client_id": proxy.github_client_id,
        "has_secret": proxy.github_client_secret is not None,
    }


@define
class ProxyOAuthResource:
    """``/proxy/targets/{hostname}/resource``, ``…/oauth-server`` and ``…/github-oauth``."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    storage: IStorage
    clock: IReactorTime
    #: the daemon's authorization-server state; None = not known, issuers not checked
    oauth_status: Callable[[], OAuthStatus] | None = None

    async def _proxy(self, call: Call) -> Proxy:
        """The proxy of the path, if the caller owns it (or is admin); else 404."""
        return await visible_proxy(self.storage, call.principal, call.params["hostname"])

    def _issuer(self) -> str | None:
        """This daemon's issuer, when known: the only one the documents may name."""
        return None if self.oauth_status is None else self.oauth_status().issuer

    async def _save(self, proxy: Proxy, **changes: Any) -> Proxy:
        """Store ``proxy`` with ``changes`` (and its event)."""
        updated = evolve(proxy, **changes, updated_at=self.clock.seconds())
        await self.storage.proxies.update(updated)
        return updated

    @endpoint(app, "GET", "/proxy/targets/{hostname}/resource",
              summary="Show a proxy's protected-resource (RFC 9728) settings", tags=TAGS,
              params=HOSTNAME_PARAM, returns={200: RESOURCE_VIEW},
              operation_id="proxy_resource_show")  # fmt: skip
    async def show_resource(self, call: Call) -> object:
        """The settings (null: the defaults apply)."""
        return resource_view(await self._proxy(call))

    @endpoint(app, "POST", "/proxy/targets/{hostname}/resource",
              summary="Configure a proxy's protected-resource metadata (fields given change)",
              tags=TAGS, params=HOSTNAME_PARAM, body=RESOURCE_BODY,
              returns={200: RESOURCE_VIEW}, operation_id="proxy_resource_set")  # fmt: skip
    async def set_resource(self, call: Call) -> object:
        """Merge the body into the proxy's RFC 9728 settings."""
        proxy = await self._proxy(call)
        changes = resource_changes(call.body, proxy.hostname, self._issuer())
        settings = evolve(proxy.oauth_resource or ResourceSettings(), **changes)
        return resource_view(await self._save(proxy, oauth_resource=settings))

    @endpoint(app, "DELETE", "/proxy/targets/{hostname}/resource",
              summary="Remove a proxy's protected-resource settings (defaults apply)",
              tags=TAGS, params=HOSTNAME_PARAM, returns={204: None},
              operation_id="proxy_resource_clear")  # fmt: skip
    async def clear_resource(self, call: Call) -> object:
        """Back to the defaults."""
        await self._save(await self._proxy(call), oauth_resource=None)
        return Reply(204)

    @endpoint(app, "GET", "/proxy/targets/{hostname}/oauth-server",
              summary="Show a proxy's authorization-server metadata overrides", tags=TAGS,
              params=HOSTNAME_PARAM, returns={200: SERVER_VIEW},
              operation_id="proxy_oauth_server_show")  # fmt: skip
    async def show_server(self, call: Call) -> object:
        """The overrides (null: the server's own metadata)."""
        return server_view(await self._proxy(call))

    @endpoint(app, "POST", "/proxy/targets/{hostname}/oauth-server",
              summary="Configure a proxy's authorization-server metadata (fields given change)",
              tags=TAGS, params=HOSTNAME_PARAM, body=SERVER_BODY,
              returns={200: SERVER_VIEW}, operation_id="proxy_oauth_server_set")  # fmt: skip
    async def set_server(self, call: Call) -> object:
        """Merge the body into the proxy's metadata overrides."""
        proxy = await self._proxy(call)
        changes = server_changes(call.body, self._issuer())
        overrides = evolve(proxy.oauth_server or AuthServerOverrides(), **changes)
        return server_view(await self._save(proxy, oauth_server=overrides))

    @endpoint(app, "DELETE", "/proxy/targets/{hostname}/oauth-server",
              summary="Remove a proxy's metadata overrides (the server's own apply)",
              tags=TAGS, params=HOSTNAME_PARAM, returns={204: None},
              operation_id="proxy_oauth_server_clear")  # fmt: skip
    async def clear_server(self, call: Call) -> object:
        """Back to the server's own metadata."""
        await self._save(await self._proxy(call), oauth_server=None)
        return Reply(204)

    @endpoint(app, "GET", "/proxy/targets/{hostname}/github-oauth",
              summary="Show a proxy's GitHub OAuth app (never its secret)", tags=TAGS,
              params=HOSTNAME_PARAM, returns={200: GITHUB_VIEW},
              operation_id="proxy_github_oauth_show")  # fmt: skip
    async def show_github(self, call: Call) -> object:
        """The client id and whether a secret is stored."""
        return github_view(await self._proxy(call))

    @endpoint(app, "POST", "/proxy/targets/{hostname}/github-oauth",
              summary="Use a GitHub OAuth app of its own for logins to this proxy",
              tags=TAGS, params=HOSTNAME_PARAM, body=GITHUB_BODY,
              returns={200: GITHUB_VIEW}, operation_id="proxy_github_oauth_set")  # fmt: skip
    async def set_github(self, call: Call) -> object:
        """Store the client id and secret; without a secret the stored one stays."""
        proxy = await self._proxy(call)
        secret = call.body.get("client_secret", proxy.github_client_secret)
        if secret is None:
            raise InvalidInput("a client_secret is needed", field="/client_secret")
        updated = await self._save(
            proxy, github_client_id=call.body["client_id"], github_client_secret=secret
        )
        return github_view(updated)

    @endpoint(app, "DELETE", "/proxy/targets/{hostname}/github-oauth",
              summary="Forget a proxy's GitHub OAuth app (the global one applies)",
              tags=TAGS, params=HOSTNAME_PARAM, returns={204: None},
              operation_id="proxy_github_oauth_clear")  # fmt: skip
    async def clear_github(self, call: Call) -> object:
        """Remove the client id and secret."""
        proxy = await self._proxy(call)
        await self._save(proxy, github_client_id=None, github_client_secret=None)
        return Reply(204)
