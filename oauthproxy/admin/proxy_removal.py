"""Deleting a proxy and what goes with it: ``DELETE /proxy/targets/{hostname}``, ``…/dependents``.

A proxy does not own other records, but some exist only for it: routes scoped to
it alone, and the certificate that serves only its hostname (the automatic one,
or one attached to it).  :func:`dependents` says, for a proxy, what deleting it
with ``delete_routes``/``delete_certificates`` would take along, and what stays:

- a route scoped to this proxy only is deleted; one scoped to it and others loses
  this hostname from its list (it goes on serving the others);
- a certificate covering the hostname is deleted when no other proxy is served by
  it (its ``cert_name``, or covered without one); otherwise it stays, and why.

``GET …/dependents`` answers that (the web console's delete confirmation shows it);
``DELETE`` without the flags removes the proxy alone, as before.  Only records the
caller may access are touched or even named.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any, ClassVar

from attrs import define, evolve, frozen
from klein import Klein
from twisted.internet.interfaces import IReactorTime

from oauthproxy.acme.autocert import covers
from oauthproxy.admin.access import Principal, may_access
from oauthproxy.admin.endpoint import ApiContext, Call, Reply, endpoint
from oauthproxy.admin.proxies import HOSTNAME_PARAM, visible_proxy
from oauthproxy.admin.schema import array, boolean, obj, string
from oauthproxy.errors import NotFound
from oauthproxy.gateway.sni import FALLBACK_CERT_NAME
from oauthproxy.interfaces import IStorage
from oauthproxy.model import Certificate, Proxy, Route

_ROUTE = obj(
    {
        "route_id": string(max_length=64),
        "action": string(enum=("delete", "unscope"), description="unscope: other proxies keep it"),
    },
    required=("route_id", "action"),
)
_CERTIFICATE = obj(
    {
        "cert_name": string(max_length=128),
        "action": string(enum=("delete", "keep")),
        "reason": string(max_length=2048),
    },
    required=("cert_name", "action", "reason"),
)
DEPENDENTS = obj(
    {
        "hostname": string(max_length=253),
        "routes": array(_ROUTE, max_items=10_000),
        "certificates": array(_CERTIFICATE, max_items=10_000),
    },
    required=("hostname", "routes", "certificates"),
)
_DELETE_QUERY = {
    "delete_routes": boolean(default=False, description="also the routes scoped to it alone"),
    "delete_certificates": boolean(
        default=False, description="also the certificates that serve only this proxy"
    ),
}


@frozen
class Dependents:
    """What deleting a proxy takes along (see the module docstring)."""

    deleted_routes: tuple[Route, ...]
    unscoped_routes: tuple[Route, ...]
    deleted_certificates: tuple[Certificate, ...]
    #: (certificate, why it stays)
    kept_certificates: tuple[tuple[Certificate, str], ...]

    def json(self, hostname: str) -> dict[str, Any]:
        """The ``…/dependents`` answer."""
        routes = [{"route_id": r.route_id, "action": "delete"} for r in self.deleted_routes] + [
            {"route_id": r.route_id, "action": "unscope"} for r in self.unscoped_routes
        ]
        certificates = [
            {"cert_name": c.cert_name, "action": "delete", "reason": f"serves only {hostname}"}
            for c in self.deleted_certificates
        ] + [
            {"cert_name": c.cert_name, "action": "keep", "reason": why}
            for c, why in self.kept_certificates
        ]
        return {"hostname": hostname, "routes": routes, "certificates": certificates}


def _served_by(certificate: Certificate, proxy: Proxy) -> bool:
    """Whether ``proxy`` is served by ``certificate`` (attached, or covering it without one)."""
    if proxy.cert_name is not None:
        return proxy.cert_name == certificate.cert_name
    return proxy.enable_https and covers(certificate.domains, proxy.hostname)


def dependents(
    proxy: Proxy,
    proxies: Iterable[Proxy],
    routes: Iterable[Route],
    certificates: Iterable[Certificate],
    principal: Principal,
) -> Dependents:
    """What deleting ``proxy`` takes along, among the records ``principal`` may access (pure)."""
    name = proxy.hostname
    mine = [r for r in routes if may_access(principal, r.owner) and name in r.proxy_hostnames]
    others = [p for p in proxies if p.hostname != name]
    deleted, kept = [], []
    for certificate in certificates:
        if certificate.cert_name == FALLBACK_CERT_NAME or not may_access(
            principal, certificate.owner
        ):
            continue
        if certificate.cert_name != proxy.cert_name and not covers(certificate.domains, name):
            continue
        users = sorted(p.hostname for p in others if _served_by(certificate, p))
        if users:
            kept.append((certificate, f"also serves {', '.join(users)}"))
        else:
            deleted.append(certificate)
    return Dependents(
        deleted_routes=tuple(r for r in mine if r.scope == "proxy" and len(r.proxy_hostnames) == 1),
        unscoped_routes=tuple(r for r in mine if len(r.proxy_hostnames) > 1),
        deleted_certificates=tuple(deleted),
        kept_certificates=tuple(kept),
    )


@define
class ProxyRemovalResource:
    """Deleting a proxy, alone or with its dependents."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    storage: IStorage
    clock: IReactorTime

    async def _dependents(self, call: Call) -> tuple[Proxy, Dependents]:
        """The proxy of the path (visible to the caller) and what goes with it."""
        proxy = await visible_proxy(self.storage, call.principal, call.params["hostname"])
        found = dependents(
            proxy,
            await self.storage.proxies.list(),
            await self.storage.routes.list(),
            await self.storage.certificates.list(),
            call.principal,
        )
        return proxy, found

    @endpoint(
        app,
        "GET",
        "/proxy/targets/{hostname}/dependents",
        summary="What deleting a proxy would take along (routes, certificates)",
        tags=("proxies",),
        params=HOSTNAME_PARAM,
        returns={200: DEPENDENTS},
        operation_id="proxies_dependents",
    )
    async def show(self, call: Call) -> object:
        """Routes scoped to it and certificates serving it, with what would happen to each."""
        proxy, found = await self._dependents(call)
        return found.json(proxy.hostname)

    @endpoint(
        app,
        "DELETE",
        "/proxy/targets/{hostname}",
        summary="Delete a proxy (and, if asked, its routes and certificates)",
        tags=("proxies",),
        params=HOSTNAME_PARAM,
        query=_DELETE_QUERY,
        returns={204: None},
        operation_id="proxies_delete",
    )
    async def delete(self, call: Call) -> object:
        """Remove the proxy; its host answers 404 on the next request.

        With ``delete_routes`` the routes scoped to it alone go too (routes shared
        with other proxies just lose its hostname); with ``delete_certificates`` the
        certificates serving only it (see ``…/dependents``).
        """
        proxy, found = await self._dependents(call)
        await self.storage.proxies.delete(proxy.hostname)
        now = self.clock.seconds()
        if call.query["delete_routes"]:
            for route in found.deleted_routes:
                await _ignore_missing(self.storage.routes.delete(route.route_id))
            for route in found.unscoped_routes:
                kept = tuple(h for h in route.proxy_hostnames if h != proxy.hostname)
                await _ignore_missing(
                    self.storage.routes.update(evolve(route, proxy_hostnames=kept, updated_at=now))
                )
        if call.query["delete_certificates"]:
            for certificate in found.deleted_certificates:
                await _ignore_missing(self.storage.certificates.delete(certificate.cert_name))
        return Reply(204)


async def _ignore_missing(write: Any) -> None:
    """Await a write; a record deleted meanwhile (NotFound) is what we wanted anyway."""
    with contextlib.suppress(NotFound):
        await write
