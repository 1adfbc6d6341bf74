"""``/proxy/targets/``: the virtual hosts of the gateway (create, list, show, update, delete).

A proxy sends requests for its ``hostname`` to its ``target_url`` (unless a route
takes them).  Every write goes to the store with its event, so every daemon's
routing table has the change on the next request.  Records belong to the token
that created them: a non-admin token sees and changes only its own (others' are
404, as if they did not exist), the admin token sees all.  ``PUT`` and ``PATCH``
both change only the fields given.  Custom headers are JSON objects name → value
here and ordered pairs in the model.  Per-proxy route filtering has its own
endpoints in :mod:`oauthproxy.admin.proxy_routes`; deleting is in
:mod:`oauthproxy.admin.proxy_removal` (with what goes along).  Creating a proxy unscopes other
(non-admin) tokens' routes left scoped to its hostname by an earlier owner.
"""

from __future__ import annotations

from typing import Any, ClassVar

from attrs import define, evolve
from klein import Klein
from twisted.internet.interfaces import IReactorTime

from oauthproxy.acme.autocert import covers
from oauthproxy.admin.access import Principal, may_access, require_access, visible
from oauthproxy.admin.endpoint import ApiContext, Call, Reply, endpoint
from oauthproxy.admin.listing import page_query, page_schema, paginate
from oauthproxy.admin.schema import Schema, array, boolean, nullable, number, obj, string
from oauthproxy.admin.validation import (
    HOSTNAME,
    HOSTNAME_WORDS,
    MAX_HEADER_VALUE,
    NAME_PATTERN,
    NAME_WORDS,
    URL,
    header_object,
    header_pairs,
    hostname,
    http_url,
    pem_certificates,
    unique,
)
from oauthproxy.errors import Conflict, InvalidInput, NotFound
from oauthproxy.interfaces import IStorage
from oauthproxy.model import ADMIN_TOKEN_NAME, Certificate, Proxy

TAGS = ("proxies",)
ROUTE_ID = string(
    min_length=1, max_length=64, pattern=NAME_PATTERN, example="api", error=NAME_WORDS
)
ROUTE_IDS = array(ROUTE_ID, max_items=200, description="route ids")
ROUTE_MODE = string(
    enum=("all", "selective", "none"),
    description="all: every route but disabled_routes; selective: only enabled_routes; "
    "none: no route, always target_url",
)


def _headers_schema(description: str) -> Schema:
    """A JSON object of header name → value (validated further by header_pairs)."""
    return {
        "type": "object",
        "additionalProperties": string(max_length=MAX_HEADER_VALUE),
        "maxProperties": 50,
        "description": description,
        "examples": [{"X-Team": "ops"}],
    }


def _timeout(maximum: float, description: str) -> Schema:
    """Seconds, more than 0 and at most ``maximum``."""
    return {"type": "number", "exclusiveMinimum": 0, "maximum": maximum, "description": description}


#: the settable fields, every one optional (PUT/PATCH take any subset)
_SETTABLE: dict[str, Schema] = {
    "target_url": URL,
    "enable_http": boolean(description="serve plain HTTP (redirects to HTTPS if enabled)"),
    "enable_https": boolean(description="serve HTTPS with a certificate for the hostname"),
    "preserve_host_header": boolean(description="send the client's Host upstream"),
    "custom_request_headers": _headers_schema("headers added to requests sent upstream"),
    "custom_response_headers": _headers_schema("headers added to responses to clients"),
    "strip_request_headers": array(
        string(min_length=1, max_length=128, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"),
        max_items=50,
        description="client headers never forwarded (besides the identity headers always stripped)",
    ),
    "keep_underscore_headers": boolean(
        description="forward client header names with '_' (dropped by default)"
    ),
    "connect_timeout": _timeout(300, "seconds to connect upstream"),
    "read_timeout": _timeout(3600, "seconds to wait for the upstream's response"),
    "cert_name": nullable(
        string(
            max_length=64,
            pattern=NAME_PATTERN,
            description="certificate to serve",
            error=NAME_WORDS,
        )
    ),
    "staging": boolean(description="order certificates from the ACME staging directory"),
    "verify_upstream_tls": boolean(description="verify the upstream's certificate"),
    "upstream_ca_pem": nullable(
        string(max_length=65536, description="PEM CA certificates trusted for the upstream")
    ),
    "route_mode": ROUTE_MODE,
    "enabled_routes": ROUTE_IDS,
    "disabled_routes": ROUTE_IDS,
}
PROXY_CREATE = obj({"hostname": HOSTNAME, **_SETTABLE}, required=("hostname", "target_url"))
PROXY_UPDATE = obj(_SETTABLE, description="the fields to change; the others stay")

_HEADERS_OUT: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
_PROXY_FIELDS: dict[str, Schema] = {
    "hostname": string(max_length=253),
    "target_url": string(max_length=2048),
    "enable_http": boolean(),
    "enable_https": boolean(),
    "preserve_host_header": boolean(),
    "custom_request_headers": _HEADERS_OUT,
    "custom_response_headers": _HEADERS_OUT,
    "strip_request_headers": array(string(max_length=128), max_items=50),
    "keep_underscore_headers": boolean(),
    "connect_timeout": number(minimum=0),
    "read_timeout": number(minimum=0),
    "cert_name": nullable(string(max_length=64)),
    "staging": boolean(),
    "verify_upstream_tls": boolean(),
    "upstream_ca_pem": nullable(string(max_length=65536)),
    "route_mode": ROUTE_MODE,
    "enabled_routes": array(string(max_length=64), max_items=10_000),
    "disabled_routes": array(string(max_length=64), max_items=10_000),
    "auth": nullable(
        {"type": "object", "additionalProperties": True, "description": "proxy auth settings"}
    ),
    "owner": string(max_length=64, description="the token that created it"),
    "created_at": number(minimum=0, description="POSIX seconds"),
    "updated_at": number(minimum=0, description="POSIX seconds"),
}
PROXY = obj(_PROXY_FIELDS, required=tuple(_PROXY_FIELDS))
HOSTNAME_PARAM = {
    "hostname": string(max_length=253, pattern=HOSTNAME["pattern"], error=HOSTNAME_WORDS)
}
_FILTERS: dict[str, Schema] = {
    "owner": string(max_length=64),
    "target_url": string(max_length=2048),
    "cert_name": string(max_length=64),
    "staging": boolean(),
    "enable_https": boolean(),
}


def proxy_json(proxy: Proxy) -> dict[str, object]:
    """The API's view of a proxy record."""
    auth = proxy.auth
    return {
        "hostname": proxy.hostname,
        "target_url": proxy.target_url,
        "enable_http": proxy.enable_http,
        "enable_https": proxy.enable_https,
        "preserve_host_header": proxy.preserve_host_header,
        "custom_request_headers": header_object(proxy.custom_request_headers),
        "custom_response_headers": header_object(proxy.custom_response_headers),
        "strip_request_headers": list(proxy.strip_request_headers),
        "keep_underscore_headers": proxy.keep_underscore_headers,
        "connect_timeout": proxy.connect_timeout,
        "read_timeout": proxy.read_timeout,
        "cert_name": proxy.cert_name,
        "staging": proxy.staging,
        "verify_upstream_tls": proxy.verify_upstream_tls,
        "upstream_ca_pem": proxy.upstream_ca_pem,
        "route_mode": proxy.route_mode,
        "enabled_routes": list(proxy.enabled_routes),
        "disabled_routes": list(proxy.disabled_routes),
        "auth": None
        if auth is None
        else {
            "auth_type": auth.auth_type,
            "auth_proxy": auth.auth_proxy,
            "auth_mode": auth.auth_mode,
            "required_users": list(auth.required_users),
            "required_scopes": list(auth.required_scopes),
            "allowed_audiences": list(auth.allowed_audiences),
            "excluded_paths": list(auth.excluded_paths),
        },
        "owner": proxy.owner,
        "created_at": proxy.created_at,
        "updated_at": proxy.updated_at,
    }


def proxy_changes(body: dict[str, Any]) -> dict[str, Any]:
    """The validated body as model values (tuples, floats, header pairs, lower-case names)."""
    changes: dict[str, Any] = {}
    for name, value in body.items():
        where = f"/{name}"
        if name == "hostname":
            value = hostname(value, where)
        elif name == "target_url":
            value = http_url(value, where)
        elif name in ("custom_request_headers", "custom_response_headers"):
            value = header_pairs(value, where, request=name == "custom_request_headers")
        elif name in ("connect_timeout", "read_timeout"):
            value = float(value)
        elif name == "upstream_ca_pem" and value is not None:
            value = pem_certificates(value, where)
        elif name in ("enabled_routes", "disabled_routes"):
            value = unique(value, where)
        elif name == "strip_request_headers":
            value = unique([header.lower() for header in value], where)
        changes[name] = value
    return changes


def check_proxy(proxy: Proxy) -> Proxy:
    """Refuse a proxy that could never serve anything; return it otherwise."""
    if not proxy.enable_http and not proxy.enable_https:
        raise InvalidInput("enable HTTP, HTTPS or both", field="/enable_https")
    return proxy


async def check_certificate(storage: IStorage, principal: Principal, proxy: Proxy) -> None:
    """Refuse a ``cert_name`` the caller may not use for this proxy (422 /cert_name).

    The same rule as ``POST /proxy/targets/{hostname}/cert``: the certificate exists,
    the caller may access it, and it covers the hostname.
    """
    name = proxy.cert_name
    if name is None:
        return
    certificate: Certificate | None = await storage.certificates.get(name)
    if certificate is None or not may_access(principal, certificate.owner):
        raise InvalidInput(f"no certificate named {name!r}", field="/cert_name")
    if not covers(certificate.domains, proxy.hostname):
        raise InvalidInput(
            f"certificate {name!r} does not cover {proxy.hostname!r}", field="/cert_name"
        )


async def visible_proxy(storage: IStorage, principal: Principal, name: str) -> Proxy:
    """The proxy named ``name`` if ``principal`` may access it; NotFound otherwise."""
    what = f"proxy {name.lower()!r}"
    proxy: Proxy | None = await storage.proxies.get(name.lower())
    if proxy is None:
        raise NotFound(f"no {what}", field="hostname")
    require_access(principal, proxy.owner, what)
    return proxy


@define
class ProxyResource:
    """The proxy endpoints."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    storage: IStorage
    clock: IReactorTime

    @endpoint(
        app,
        "POST",
        "/proxy/targets/",
        summary="Create a proxy (a virtual host) for a hostname",
        tags=TAGS,
        body=PROXY_CREATE,
        returns={201: PROXY},
        errors=(409,),
    )
    async def create(self, call: Call) -> object:
        """Create a proxy owned by the calling token; live on every daemon at once."""
        now = self.clock.seconds()
        changes = proxy_changes(call.body)
        name = changes.pop("hostname")
        if await self.storage.proxies.get(name) is not None:
            raise Conflict(f"a proxy for {name!r} exists", field="/hostname")
        proxy = check_proxy(
            evolve(
                Proxy(hostname=name, target_url=changes.pop("target_url")),
                **changes,
                owner=call.principal.name,
                created_at=now,
                updated_at=now,
            )
        )
        await check_certificate(self.storage, call.principal, proxy)
        await self.storage.proxies.create(proxy)
        await self._release_scoped_routes(proxy)
        return Reply(201, proxy_json(proxy), {"location": f"/proxy/targets/{name}"})

    async def _release_scoped_routes(self, proxy: Proxy) -> None:
        """Unscope other tokens' routes from a hostname that was theirs to scope before.

        A route scoped to a deleted proxy would otherwise apply to whoever creates that
        hostname next: token B's new proxy must not serve token A's routes.  The admin's
        routes and the new owner's own stay (deleting and re-creating a proxy keeps them).
        """
        for route in await self.storage.routes.list():
            if proxy.hostname in route.proxy_hostnames and route.owner not in (
                ADMIN_TOKEN_NAME,
                proxy.owner,
            ):
                kept = tuple(h for h in route.proxy_hostnames if h != proxy.hostname)
                await self.storage.routes.update(
                    evolve(route, proxy_hostnames=kept, updated_at=proxy.created_at)
                )

    @endpoint(
        app,
        "GET",
        "/proxy/targets/",
        summary="List proxies (a non-admin token sees only its own)",
        tags=TAGS,
        query=page_query(_FILTERS),
        returns={200: page_schema(PROXY)},
    )
    async def list(self, call: Call) -> object:
        """The caller's proxies by hostname, filtered by exact field values."""
        proxies = visible(call.principal, await self.storage.proxies.list(), _owner)
        return paginate(proxies, call.query, proxy_json, filters=tuple(_FILTERS))

    @endpoint(
        app,
        "GET",
        "/proxy/targets/{hostname}",
        summary="Show a proxy",
        tags=TAGS,
        params=HOSTNAME_PARAM,
        returns={200: PROXY},
    )
    async def show(self, call: Call) -> object:
        """The proxy's record."""
        return proxy_json(
            await visible_proxy(self.storage, call.principal, call.params["hostname"])
        )

    @endpoint(
        app,
        "PUT",
        "/proxy/targets/{hostname}",
        summary="Update a proxy (only the fields given change)",
        tags=TAGS,
        params=HOSTNAME_PARAM,
        body=PROXY_UPDATE,
        returns={200: PROXY},
    )
    async def replace(self, call: Call) -> object:
        """Change the fields given; the hostname cannot change (delete and create instead)."""
        return await self._update(call)

    @endpoint(
        app,
        "PATCH",
        "/proxy/targets/{hostname}",
        summary="Change some fields of a proxy",
        tags=TAGS,
        params=HOSTNAME_PARAM,
        body=PROXY_UPDATE,
        returns={200: PROXY},
    )
    async def patch(self, call: Call) -> object:
        """Change the fields given, keep the others."""
        return await self._update(call)

    async def _update(self, call: Call) -> object:
        """PUT and PATCH: apply the body's fields onto the stored proxy."""
        proxy = await visible_proxy(self.storage, call.principal, call.params["hostname"])
        changes = proxy_changes(call.body)
        updated = check_proxy(evolve(proxy, **changes, updated_at=self.clock.seconds()))
        if "cert_name" in changes:
            await check_certificate(self.storage, call.principal, updated)
        await self.storage.proxies.update(updated)
        return proxy_json(updated)


def _owner(proxy: Proxy) -> str:
    """Who owns ``proxy``."""
    return proxy.owner
