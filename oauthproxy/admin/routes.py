"""``/routes/``: path rules that send matching requests to another target.

A route matches a path (``prefix``, ``exact`` or ``regex``) and optionally
methods; the gateway tries routes by priority (higher first, ties by route_id).
Its target is a URL, a named (external or Docker) service, a local port or another proxy;
names are checked when the route is written (422 for an unknown or invisible
service or proxy).  Ownership: records belong to the creating token; only the
admin token may create ``global`` routes, since those apply to every proxy —
another token scopes its routes to proxies it owns (``scope: "proxy"``).
``PUT`` and ``PATCH`` change only the fields given, and re-check the fields the
change affects (a new ``match_type`` re-checks ``path_pattern``, and so on).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, ClassVar

from attrs import define, evolve
from klein import Klein
from twisted.internet.interfaces import IReactorTime

from oauthproxy.admin.access import Principal, require_access, visible
from oauthproxy.admin.endpoint import ApiContext, Call, Reply, endpoint
from oauthproxy.admin.listing import page_query, page_schema, paginate
from oauthproxy.admin.proxies import ROUTE_ID, visible_proxy
from oauthproxy.admin.schema import Schema, array, boolean, integer, nullable, number, obj, string
from oauthproxy.admin.services import target_service
from oauthproxy.admin.validation import HOSTNAME, hostname, http_url, path_prefix, port_number
from oauthproxy.admin.validation import regex as regex_pattern
from oauthproxy.errors import Conflict, Forbidden, InvalidInput, NotFound
from oauthproxy.interfaces import IStorage
from oauthproxy.model import Route

TAGS = ("routes",)
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
MAX_PATH = 1024
MATCH_TYPE = string(enum=("prefix", "exact", "regex"))
TARGET_TYPE = string(
    enum=("url", "service", "port", "proxy"),
    description="url: an http(s) URL; service: an external or Docker service name; "
    "port: a local port 1-65535; proxy: another proxy's hostname",
)
SCOPE = string(enum=("global", "proxy"), description="proxy: only for proxy_hostnames")

_SETTABLE: dict[str, Schema] = {
    "path_pattern": string(
        min_length=1,
        max_length=MAX_PATH,
        description="a path prefix or exact path starting with '/', or a regex",
        example="/api/",
    ),
    "match_type": MATCH_TYPE,
    "methods": array(
        string(max_length=8, pattern=r"^([A-Za-z]+|\*)$", error="an HTTP method such as GET, or *"),
        max_items=len(METHODS) + 1,
        description="HTTP methods; empty or '*' = every method",
    ),
    "priority": integer(minimum=0, maximum=1000, description="higher is tried first"),
    "target_type": TARGET_TYPE,
    "target_value": string(min_length=1, max_length=2048, example="backend-api"),
    "scope": SCOPE,
    "proxy_hostnames": array(HOSTNAME, max_items=100, unique=True),
    "enabled": boolean(),
    "description": string(max_length=500),
}
ROUTE_CREATE = obj(
    {"route_id": ROUTE_ID, **_SETTABLE},
    required=("path_pattern", "target_type", "target_value"),
    description="route_id is generated when not given",
)
ROUTE_UPDATE = obj(_SETTABLE, description="the fields to change; the others stay")
_ROUTE_FIELDS: dict[str, Schema] = {
    "route_id": string(max_length=64),
    "path_pattern": string(max_length=MAX_PATH),
    "match_type": MATCH_TYPE,
    "methods": array(string(max_length=8), max_items=20),
    "priority": integer(minimum=0, maximum=1000),
    "target_type": TARGET_TYPE,
    "target_value": string(max_length=2048),
    "scope": SCOPE,
    "proxy_hostnames": array(string(max_length=253), max_items=100),
    "enabled": boolean(),
    "description": string(max_length=500),
    "auth": nullable(
        {"type": "object", "additionalProperties": True, "description": "route auth settings"}
    ),
    "owner": string(max_length=64, description="the token that created it"),
    "created_at": number(minimum=0, description="POSIX seconds"),
    "updated_at": number(minimum=0, description="POSIX seconds"),
}
ROUTE = obj(_ROUTE_FIELDS, required=tuple(_ROUTE_FIELDS))
_ROUTE_ID_PARAM = {"route_id": ROUTE_ID}
_FILTERS: dict[str, Schema] = {
    "owner": string(max_length=64),
    "target_type": TARGET_TYPE,
    "target_value": string(max_length=2048),
    "scope": SCOPE,
    "match_type": MATCH_TYPE,
    "enabled": boolean(),
}
_ID_ATTEMPTS = 5


def new_route_id() -> str:
    """A short, URL-safe, random route id (8 hex digits)."""
    return secrets.token_hex(4)


def route_json(route: Route) -> dict[str, object]:
    """The API's view of a route."""
    auth = route.auth
    return {
        "route_id": route.route_id,
        "path_pattern": route.path_pattern,
        "match_type": route.match_type,
        "methods": list(route.methods),
        "priority": route.priority,
        "target_type": route.target_type,
        "target_value": route.target_value,
        "scope": route.scope,
        "proxy_hostnames": list(route.proxy_hostnames),
        "enabled": route.enabled,
        "description": route.description,
        "auth": None
        if auth is None
        else {
            "auth_type": auth.auth_type,
            "override_proxy_auth": auth.override_proxy_auth,
            "oauth_scopes": list(auth.oauth_scopes),
            "oauth_allowed_users": list(auth.oauth_allowed_users),
        },
        "owner": route.owner,
        "created_at": route.created_at,
        "updated_at": route.updated_at,
    }


def methods_of(given: list[str]) -> tuple[str, ...]:
    """Upper-case methods from the fixed set, in order, no repeats; ``*`` (or none) = all."""
    chosen: list[str] = []
    for index, text in enumerate(given):
        method = text.upper()
        if method == "*":
            return ()
        if method not in METHODS:
            raise InvalidInput(f"unknown HTTP method {text!r}", field=f"/methods/{index}")
        if method not in chosen:
            chosen.append(method)
    return tuple(chosen)


@define
class RouteResource:
    """The route endpoints."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    storage: IStorage
    clock: IReactorTime
    #: makes route ids when the caller gives none (tests inject a fixed sequence)
    new_id: Callable[[], str] = new_route_id

    async def _visible_route(self, call: Call) -> Route:
        """The route named in the path, if the caller may access it (else 404)."""
        route_id = call.params["route_id"]
        what = f"route {route_id!r}"
        route: Route | None = await self.storage.routes.get(route_id)
        if route is None:
            raise NotFound(f"no {what}", field="route_id")
        require_access(call.principal, route.owner, what)
        return route

    async def _checked(self, route: Route, changed: set[str], principal: Principal) -> Route:
        """``route`` with the ``changed`` fields (and those depending on them) checked."""
        if changed & {"path_pattern", "match_type"}:
            if route.match_type == "regex":
                regex_pattern(route.path_pattern, "/path_pattern")
            else:
                path_prefix(route.path_pattern, "/path_pattern")
        if changed & {"target_type", "target_value"}:
            route = evolve(route, target_value=await self._target(route, principal))
        if changed & {"scope", "proxy_hostnames"}:
            route = evolve(route, proxy_hostnames=await self._scope(route, principal))
        return route

    async def _target(self, route: Route, principal: Principal) -> str:
        """The target value in its stored form, if it is valid for its type and visible."""
        value, where = route.target_value, "/target_value"
        if route.target_type == "url":
            return http_url(value, where)
        if route.target_type == "port":
            return port_number(value, where)
        try:
            if route.target_type == "service":
                return await target_service(self.storage, principal, value)
            return (await visible_proxy(self.storage, principal, hostname(value, where))).hostname
        except NotFound:
            kind = "external or Docker service" if route.target_type == "service" else "proxy"
            raise InvalidInput(f"no {kind} named {value!r}", field=where) from None

    async def _scope(self, route: Route, principal: Principal) -> tuple[str, ...]:
        """The proxy hostnames, lower-cased, each an existing proxy the caller may access."""
        if route.scope == "global":
            if route.proxy_hostnames:
                raise InvalidInput("proxy_hostnames need scope 'proxy'", field="/proxy_hostnames")
            if not principal.is_admin:
                raise Forbidden(
                    "only the admin token may create global routes; "
                    "use scope 'proxy' with your proxies' hostnames"
                )
            return ()
        if not route.proxy_hostnames:
            raise InvalidInput("scope 'proxy' needs proxy_hostnames", field="/proxy_hostnames")
        names = []
        for index, name in enumerate(route.proxy_hostnames):
            where = f"/proxy_hostnames/{index}"
            try:
                proxy = await visible_proxy(self.storage, principal, hostname(name, where))
            except NotFound:
                raise InvalidInput(f"no proxy named {name!r}", field=where) from None
            if proxy.hostname in names:
                raise InvalidInput(f"{name!r} is listed twice", field=where)
            names.append(proxy.hostname)
        return tuple(names)

    @endpoint(
        app,
        "POST",
        "/routes/",
        summary="Create a route",
        tags=TAGS,
        body=ROUTE_CREATE,
        returns={201: ROUTE},
        errors=(409,),
    )
    async def create(self, call: Call) -> object:
        """Create a route owned by the calling token (global ones: admin only)."""
        body: dict[str, Any] = dict(call.body)
        given_id = body.pop("route_id", None)
        if "methods" in body:
            body["methods"] = methods_of(body["methods"])
        if "proxy_hostnames" in body:
            body["proxy_hostnames"] = tuple(body["proxy_hostnames"])
        now = self.clock.seconds()
        draft = Route(
            route_id=given_id or "",
            **body,
            owner=call.principal.name,
            created_at=now,
            updated_at=now,
        )
        route = await self._checked(draft, set(_SETTABLE), call.principal)
        if given_id is not None:
            await self._create(route)
        else:
            route = await self._create_with_new_id(route)
        return Reply(201, route_json(route), {"location": f"/routes/{route.route_id}"})

    async def _create(self, route: Route) -> None:
        """Store ``route``; 409 if its id is taken."""
        if await self.storage.routes.get(route.route_id) is not None:
            raise Conflict(f"a route with id {route.route_id!r} exists", field="/route_id")
        await self.storage.routes.create(route)

    async def _create_with_new_id(self, route: Route) -> Route:
        """Store ``route`` under a fresh random id (a taken one is drawn again); the result."""
        for _ in range(_ID_ATTEMPTS):
            candidate = evolve(route, route_id=self.new_id())
            try:
                await self._create(candidate)
            except Conflict:
                continue
            return candidate
        raise Conflict("could not find a free route id; give one", field="/route_id")

    @endpoint(
        app,
        "GET",
        "/routes/",
        summary="List routes (a non-admin token sees only its own)",
        tags=TAGS,
        query=page_query(_FILTERS),
        returns={200: page_schema(ROUTE)},
    )
    async def list(self, call: Call) -> object:
        """The caller's routes in the order the gateway tries them, filtered by field values."""
        routes = visible(call.principal, await self.storage.routes.list(), _owner)
        routes.sort(key=lambda r: (-r.priority, r.route_id))
        return paginate(routes, call.query, route_json, filters=tuple(_FILTERS))

    @endpoint(
        app,
        "GET",
        "/routes/{route_id}",
        summary="Show a route",
        tags=TAGS,
        params=_ROUTE_ID_PARAM,
        returns={200: ROUTE},
    )
    async def show(self, call: Call) -> object:
        """The route's record."""
        return route_json(await self._visible_route(call))

    @endpoint(
        app,
        "PUT",
        "/routes/{route_id}",
        summary="Update a route (only the fields given change)",
        tags=TAGS,
        params=_ROUTE_ID_PARAM,
        body=ROUTE_UPDATE,
        returns={200: ROUTE},
    )
    async def replace(self, call: Call) -> object:
        """Change the fields given; the route_id cannot change."""
        return await self._update(call)

    @endpoint(
        app,
        "PATCH",
        "/routes/{route_id}",
        summary="Change some fields of a route",
        tags=TAGS,
        params=_ROUTE_ID_PARAM,
        body=ROUTE_UPDATE,
        returns={200: ROUTE},
    )
    async def patch(self, call: Call) -> object:
        """Change the fields given, keep the others."""
        return await self._update(call)

    async def _update(self, call: Call) -> object:
        """PUT and PATCH: apply the body's fields, re-check what they affect, store."""
        route = await self._visible_route(call)
        changes: dict[str, Any] = dict(call.body)
        if "methods" in changes:
            changes["methods"] = methods_of(changes["methods"])
        if "proxy_hostnames" in changes:
            changes["proxy_hostnames"] = tuple(changes["proxy_hostnames"])
        updated = evolve(route, **changes, updated_at=self.clock.seconds())
        updated = await self._checked(updated, set(changes), call.principal)
        await self.storage.routes.update(updated)
        return route_json(updated)

    @endpoint(
        app,
        "DELETE",
        "/routes/{route_id}",
        summary="Delete a route",
        tags=TAGS,
        params=_ROUTE_ID_PARAM,
        returns={204: None},
    )
    async def delete(self, call: Call) -> object:
        """Remove the route; requests it took go to their proxy's target again."""
        route = await self._visible_route(call)
        await self.storage.routes.delete(route.route_id)
        return Reply(204)


def _owner(route: Route) -> str:
    """Who owns ``route``."""
    return route.owner
