"""Per-route and per-proxy auth: ``/routes/{route_id}/auth``, ``/proxy/targets/{hostname}/auth``.

These endpoints write the ``auth`` field of a route (:class:`~oauthproxy.model.RouteAuth`)
or a proxy (:class:`~oauthproxy.model.ProxyAuth`) through the route and proxy
stores; the gateway enforces them.  Like every write to a record they are
ownership-checked: a non-admin token reaches only the routes and proxies it
created (others' are 404, as if absent).  ``PUT``/``POST`` change only the
fields given, on top of the current settings (or the defaults).

The proxy body takes the seed's names (``auth_required_users``, ``oauth_scopes``)
as well as the model's (``required_users``, ``required_scopes``); answers use the
model's.

Protecting a proxy or a route with ``oauth`` is refused (409, saying what to set) while
this daemon's authorization server does not work: off, failed, or without any GitHub
app to log in with (:mod:`oauthproxy.oauth.status`).

A proxy's ``auth_proxy`` (the seed's ``AUTH_HOST``) is the host its clients are sent to
for logins: this daemon's authorization server, which the gateway serves at its issuer's
host.  So it must name that host (422 otherwise, naming the issuer) and is filled in
when left out; it can never point clients somewhere no server answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from attrs import define, evolve
from klein import Klein
from twisted.internet.interfaces import IReactorTime

from oauthproxy.admin.access import require_access
from oauthproxy.admin.auth_rules import (
    AUTH_TYPE,
    PATH_PATTERN,
    SCOPE,
    USER,
    StatusSource,
    require_oauth,
)
from oauthproxy.admin.endpoint import ApiContext, Call, Reply, endpoint
from oauthproxy.admin.records import record_json
from oauthproxy.admin.schema import Schema, array, boolean, nullable, obj, string
from oauthproxy.admin.validation import HOSTNAME, NAME_PATTERN, NAME_WORDS
from oauthproxy.errors import InvalidInput, NotFound
from oauthproxy.interfaces import IStorage
from oauthproxy.model import Proxy, ProxyAuth, Route, RouteAuth

ROUTE_ID = string(
    min_length=1, max_length=64, pattern=NAME_PATTERN, example="api", error=NAME_WORDS
)
_SCOPES = array(SCOPE, max_items=32, unique=True)
_USERS = array(USER, max_items=100, unique=True)
_LOGIN = r"[A-Za-z0-9][A-Za-z0-9-]*"
#: a proxy allowlist entry (oauth.access): '*', a login, org:ORG or team:ORG/TEAM-SLUG
ALLOWLIST_ENTRY = string(
    min_length=1,
    max_length=120,
    pattern=rf"^(\*|{_LOGIN}|org:{_LOGIN}|team:{_LOGIN}/[A-Za-z0-9][A-Za-z0-9_.-]*)$",
    error="a GitHub login (alice), org:ORG, team:ORG/TEAM or *",
)
_ALLOWLIST = array(ALLOWLIST_ENTRY, max_items=100, unique=True)

_ROUTE_AUTH_FIELDS: dict[str, Schema] = {
    "auth_type": AUTH_TYPE,
    "override_proxy_auth": boolean(description="use this instead of the proxy's auth"),
    "oauth_scopes": _SCOPES,
    "oauth_allowed_users": _USERS,
}
ROUTE_AUTH_BODY = obj(_ROUTE_AUTH_FIELDS)
ROUTE_AUTH = obj(_ROUTE_AUTH_FIELDS, required=tuple(_ROUTE_AUTH_FIELDS))
ROUTE_AUTH_VIEW = obj(
    {"route_id": ROUTE_ID, "auth": nullable(ROUTE_AUTH)}, required=("route_id", "auth")
)

_PROXY_AUTH_FIELDS: dict[str, Schema] = {
    "auth_type": AUTH_TYPE,
    "auth_proxy": nullable(HOSTNAME),
    "auth_mode": string(enum=("redirect", "forward", "passthrough")),
    "required_users": _ALLOWLIST,
    "required_scopes": _SCOPES,
    "allowed_audiences": array(string(min_length=1, max_length=512), max_items=32, unique=True),
    "excluded_paths": array(PATH_PATTERN, max_items=100, unique=True),
}
#: the seed's names for two model fields
PROXY_ALIASES = {"auth_required_users": "required_users", "oauth_scopes": "required_scopes"}
PROXY_AUTH_BODY = obj(
    {**_PROXY_AUTH_FIELDS, "auth_required_users": _ALLOWLIST, "oauth_scopes": _SCOPES}
)
PROXY_AUTH = obj(_PROXY_AUTH_FIELDS, required=tuple(_PROXY_AUTH_FIELDS))
PROXY_AUTH_VIEW = obj(
    {"hostname": HOSTNAME, "auth": nullable(PROXY_AUTH)}, required=("hostname", "auth")
)


def _tupled(changes: Mapping[str, Any]) -> dict[str, Any]:
    """JSON lists as the model's tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}


def proxy_auth_changes(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body with the seed's names turned into the model's; both at once is an error."""
    changes = dict(body)
    for alias, name in PROXY_ALIASES.items():
        if alias in changes:
            if name in changes:
                raise InvalidInput(f"give {name} or {alias}, not both", field="/" + alias)
            changes[name] = changes.pop(alias)
    return _tupled(changes)


def auth_host(status: StatusSource, given: str | None) -> str | None:
    """The ``auth_proxy`` to store: this daemon's issuer host (``given`` must be it)."""
    issuer = None if status is None else status().issuer
    if issuer is None:
        return given.lower() if given else given
    host = (urlsplit(issuer).hostname or "").lower()
    if given and given.lower() != host:
        raise InvalidInput(
            f"this daemon's authorization server is {issuer}: AUTH_HOST must be {host}",
            field="/auth_proxy",
        )
    return host


def route_view(route: Route) -> dict[str, Any]:
    """A route's auth settings as JSON."""
    auth = None if route.auth is None else record_json(route.auth)
    return {"route_id": route.route_id, "auth": auth}


def proxy_view(proxy: Proxy) -> dict[str, Any]:
    """A proxy's auth settings as JSON."""
    auth = None if proxy.auth is None else record_json(proxy.auth)
    return {"hostname": proxy.hostname, "auth": auth}


@define
class RouteAuthResource:
    """``/routes/{route_id}/auth``."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    storage: IStorage
    clock: IReactorTime
    oauth_status: StatusSource = None

    async def _route(self, call: Call) -> Route:
        """The route of the path, if the caller owns it (or is admin); else 404."""
        route_id = call.params["route_id"]
        route: Route | None = await self.storage.routes.get(route_id)
        if route is None:
            raise NotFound(f"no route {route_id!r}", field="route_id")
        require_access(call.principal, route.owner, f"route {route_id!r}")
        return route

    @endpoint(
        app,
        "GET",
        "/routes/{route_id}/auth",
        summary="Show a route's auth settings",
        tags=("routes",),
        params={"route_id": ROUTE_ID},
        returns={200: ROUTE_AUTH_VIEW},
        operation_id="route_auth_show",
    )
    async def show(self, call: Call) -> object:
        """The route's auth (null: the proxy's auth applies)."""
        return route_view(await self._route(call))

    @endpoint(
        app,
        "PUT",
        "/routes/{route_id}/auth",
        summary="Configure a route's auth (only the fields given change)",
        tags=("routes",),
        params={"route_id": ROUTE_ID},
        body=ROUTE_AUTH_BODY,
        returns={200: ROUTE_AUTH_VIEW},
        errors=(409,),
        operation_id="route_auth_set",
    )
    async def set(self, call: Call) -> object:
        """Merge the body into the route's auth settings."""
        route = await self._route(call)
        auth = evolve(route.auth or RouteAuth(), **_tupled(call.body))
        if auth.auth_type == "oauth":
            require_oauth(self.oauth_status, "/auth_type")
        updated = evolve(route, auth=auth, updated_at=self.clock.seconds())
        await self.storage.routes.update(updated)
        return route_view(updated)

    @endpoint(
        app,
        "DELETE",
        "/routes/{route_id}/auth",
        summary="Remove a route's auth settings (the proxy's apply again)",
        tags=("routes",),
        params={"route_id": ROUTE_ID},
        returns={204: None},
        operation_id="route_auth_clear",
    )
    async def clear(self, call: Call) -> object:
        """Set the route's auth to none configured."""
        route = await self._route(call)
        await self.storage.routes.update(evolve(route, auth=None, updated_at=self.clock.seconds()))
        return Reply(204)


@define
class ProxyAuthResource:
    """``/proxy/targets/{hostname}/auth``."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    storage: IStorage
    clock: IReactorTime
    oauth_status: StatusSource = None

    async def _proxy(self, call: Call) -> Proxy:
        """The proxy of the path, if the caller owns it (or is admin); else 404."""
        hostname = call.params["hostname"]
        proxy: Proxy | None = await self.storage.proxies.get(hostname)
        if proxy is None:
            raise NotFound(f"no proxy {hostname!r}", field="hostname")
        require_access(call.principal, proxy.owner, f"proxy {hostname!r}")
        return proxy

    @endpoint(
        app,
        "GET",
        "/proxy/targets/{hostname}/auth",
        summary="Show a proxy's auth settings",
        tags=("proxies",),
        params={"hostname": HOSTNAME},
        returns={200: PROXY_AUTH_VIEW},
        operation_id="proxy_auth_show",
    )
    async def show(self, call: Call) -> object:
        """The proxy's auth (null: the proxy is open)."""
        return proxy_view(await self._proxy(call))

    @endpoint(
        app,
        "POST",
        "/proxy/targets/{hostname}/auth",
        summary="Configure a proxy's auth (only the fields given change)",
        tags=("proxies",),
        params={"hostname": HOSTNAME},
        body=PROXY_AUTH_BODY,
        returns={200: PROXY_AUTH_VIEW},
        errors=(409,),
        operation_id="proxy_auth_set",
    )
    async def set(self, call: Call) -> object:
        """Merge the body into the proxy's auth settings."""
        proxy = await self._proxy(call)
        auth = evolve(proxy.auth or ProxyAuth(), **proxy_auth_changes(call.body))
        if auth.auth_type == "oauth":
            own_app = bool(proxy.github_client_id and proxy.github_client_secret)
            require_oauth(self.oauth_status, "/auth_type", own_app)
            auth = evolve(auth, auth_proxy=auth_host(self.oauth_status, auth.auth_proxy))
        elif auth.auth_proxy:
            auth = evolve(auth, auth_proxy=auth.auth_proxy.lower())
        updated = evolve(proxy, auth=auth, updated_at=self.clock.seconds())
        await self.storage.proxies.update(updated)
        return proxy_view(updated)

    @endpoint(
        app,
        "DELETE",
        "/proxy/targets/{hostname}/auth",
        summary="Remove a proxy's auth settings (the proxy becomes open)",
        tags=("proxies",),
        params={"hostname": HOSTNAME},
        returns={204: None},
        operation_id="proxy_auth_clear",
    )
    async def clear(self, call: Call) -> object:
        """Set the proxy's auth to none configured."""
        proxy = await self._proxy(call)
        await self.storage.proxies.update(evolve(proxy, auth=None, updated_at=self.clock.seconds()))
        return Reply(204)
