"""``/proxy/targets/{hostname}/routes``: which routes a proxy uses (route filtering).

A proxy's ``route_mode`` decides which routes apply to it: ``all`` (every global
route and those scoped to it, minus ``disabled_routes``), ``selective`` (only
``enabled_routes``) or ``none`` (always its ``target_url``).  These endpoints show
the setting with the routes that apply now, in the order the gateway tries them,
and change it; the same fields can also be PATCHed on the proxy itself.
"""

from __future__ import annotations

from typing import Any, ClassVar

from attrs import define, evolve
from klein import Klein
from twisted.internet.interfaces import IReactorTime

from oauthproxy.admin.endpoint import ApiContext, Call, endpoint
from oauthproxy.admin.proxies import (
    HOSTNAME_PARAM,
    ROUTE_ID,
    ROUTE_IDS,
    ROUTE_MODE,
    visible_proxy,
)
from oauthproxy.admin.schema import Schema, array, obj, string
from oauthproxy.admin.validation import unique
from oauthproxy.interfaces import IStorage
from oauthproxy.model import Proxy, Route

TAGS = ("proxies",)
FILTER_UPDATE = obj(
    {"route_mode": ROUTE_MODE, "enabled_routes": ROUTE_IDS, "disabled_routes": ROUTE_IDS},
    description="the fields to change; the others stay",
)
_IDS_OUT = array(string(max_length=64), max_items=10_000)
_FILTER_FIELDS: dict[str, Schema] = {
    "hostname": string(max_length=253),
    "route_mode": ROUTE_MODE,
    "enabled_routes": _IDS_OUT,
    "disabled_routes": _IDS_OUT,
    "applied_routes": array(
        string(max_length=64),
        max_items=10_000,
        description="the routes that apply now, in the order the gateway tries them",
    ),
}
ROUTE_FILTER = obj(_FILTER_FIELDS, required=tuple(_FILTER_FIELDS))
_ONE_ROUTE = {**HOSTNAME_PARAM, "route_id": ROUTE_ID}


def applies(route: Route, proxy: Proxy) -> bool:
    """Whether the gateway tries ``route`` for requests to ``proxy``."""
    if not route.enabled:
        return False
    if route.scope == "proxy" and proxy.hostname not in route.proxy_hostnames:
        return False
    if proxy.route_mode == "none":
        return False
    if proxy.route_mode == "selective":
        return route.route_id in proxy.enabled_routes
    return route.route_id not in proxy.disabled_routes


def filter_json(proxy: Proxy, routes: list[Route]) -> dict[str, object]:
    """The route filtering of ``proxy`` with the routes among ``routes`` that apply."""
    ordered = sorted(routes, key=lambda r: (-r.priority, r.route_id))
    return {
        "hostname": proxy.hostname,
        "route_mode": proxy.route_mode,
        "enabled_routes": list(proxy.enabled_routes),
        "disabled_routes": list(proxy.disabled_routes),
        "applied_routes": [r.route_id for r in ordered if applies(r, proxy)],
    }


@define
class ProxyRouteResource:
    """The route filtering endpoints of a proxy."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    storage: IStorage
    clock: IReactorTime

    async def _answer(self, proxy: Proxy) -> dict[str, object]:
        """The filtering view of ``proxy`` against the stored routes."""
        return filter_json(proxy, await self.storage.routes.list())

    async def _save(self, proxy: Proxy) -> dict[str, object]:
        """Store ``proxy`` stamped with the time; its filtering view."""
        updated = evolve(proxy, updated_at=self.clock.seconds())
        await self.storage.proxies.update(updated)
        return await self._answer(updated)

    @endpoint(
        app,
        "GET",
        "/proxy/targets/{hostname}/routes",
        summary="Show a proxy's route filtering and the routes that apply to it",
        tags=TAGS,
        params=HOSTNAME_PARAM,
        returns={200: ROUTE_FILTER},
    )
    async def show_routes(self, call: Call) -> object:
        """route_mode, the enabled/disabled lists, and the routes applied in order."""
        proxy = await visible_proxy(self.storage, call.principal, call.params["hostname"])
        return await self._answer(proxy)

    @endpoint(
        app,
        "PUT",
        "/proxy/targets/{hostname}/routes",
        summary="Change a proxy's route filtering (only the fields given change)",
        tags=TAGS,
        params=HOSTNAME_PARAM,
        body=FILTER_UPDATE,
        returns={200: ROUTE_FILTER},
    )
    async def set_routes(self, call: Call) -> object:
        """Set route_mode and/or the enabled/disabled route lists."""
        proxy = await visible_proxy(self.storage, call.principal, call.params["hostname"])
        changes: dict[str, Any] = {
            name: unique(value, f"/{name}") if isinstance(value, list) else value
            for name, value in call.body.items()
        }
        return await self._save(evolve(proxy, **changes))

    @endpoint(
        app,
        "POST",
        "/proxy/targets/{hostname}/routes/{route_id}/enable",
        summary="Enable a route for a proxy",
        tags=TAGS,
        params=_ONE_ROUTE,
        returns={200: ROUTE_FILTER},
    )
    async def enable_route(self, call: Call) -> object:
        """Add the route to enabled_routes and take it off disabled_routes."""
        proxy = await visible_proxy(self.storage, call.principal, call.params["hostname"])
        route_id = call.params["route_id"]
        enabled = proxy.enabled_routes
        return await self._save(
            evolve(
                proxy,
                enabled_routes=enabled if route_id in enabled else (*enabled, route_id),
                disabled_routes=tuple(r for r in proxy.disabled_routes if r != route_id),
            )
        )

    @endpoint(
        app,
        "POST",
        "/proxy/targets/{hostname}/routes/{route_id}/disable",
        summary="Disable a route for a proxy",
        tags=TAGS,
        params=_ONE_ROUTE,
        returns={200: ROUTE_FILTER},
    )
    async def disable_route(self, call: Call) -> object:
        """Add the route to disabled_routes and take it off enabled_routes."""
        proxy = await visible_proxy(self.storage, call.principal, call.params["hostname"])
        route_id = call.params["route_id"]
        disabled = proxy.disabled_routes
        return await self._save(
            evolve(
                proxy,
                enabled_routes=tuple(r for r in proxy.enabled_routes if r != route_id),
                disabled_routes=disabled if route_id in disabled else (*disabled, route_id),
            )
        )
