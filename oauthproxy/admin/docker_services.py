"""``/services/``: Docker services — create, list, show, update, delete, start, stop, proxy.

The admin API's face of :class:`~oauthproxy.containers.lifecycle.ServiceLifecycle`.
Creating or changing a service needs the admin token by default (the Docker socket
is root on the host); an endpoint auth rule (``/auth/endpoints``) can open these
paths to API tokens or to OAuth tokens with a scope such as ``service:write``.
Records belong to the token that created them: other tokens see 404.  Reads show
the container's live state (``state``, ``health``, ``exit_code``), so they need
Docker: when Docker cannot be reached every endpoint here answers 503 with one
sentence saying so, and the rest of the daemon is unaffected.

Logs, stats and cleanup are in :mod:`oauthproxy.admin.docker_containers`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from attrs import define, frozen
from klein import Klein
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from oauthproxy.admin.access import Principal, require_access, visible
from oauthproxy.admin.docker_inputs import service_changes, service_from_body
from oauthproxy.admin.docker_schemas import (
    SERVICE,
    SERVICE_CREATE,
    SERVICE_NAME,
    SERVICE_UPDATE,
    service_json,
)
from oauthproxy.admin.endpoint import ApiContext, Call, Reply, endpoint
from oauthproxy.admin.listing import page_query, page_schema, paginate
from oauthproxy.admin.proxies import PROXY, check_proxy, proxy_json
from oauthproxy.admin.schema import Schema, boolean, obj, string
from oauthproxy.admin.validation import HOSTNAME, hostname
from oauthproxy.containers.lifecycle import ServiceLifecycle
from oauthproxy.containers.reconciler import PassReport
from oauthproxy.containers.runtime import ContainerInfo
from oauthproxy.errors import Conflict, InvalidInput
from oauthproxy.interfaces import IStorage
from oauthproxy.model import DockerService, Proxy

TAGS = ("docker",)
_NAME = {"name": SERVICE_NAME}
_FILTERS: dict[str, Schema] = {
    "owner": string(max_length=128),
    "phase": string(enum=("creating", "ready", "updating", "deleting")),
    "desired_state": string(enum=("running", "stopped")),
}
PROXY_REQUEST = obj(
    {
        "hostname": HOSTNAME,
        "enable_http": boolean(default=True),
        "enable_https": boolean(default=True, description="HTTPS with an ACME certificate"),
    },
    description="hostname defaults to <name>.<BASE_DOMAIN>",
)


@frozen
class DockerWiring:
    """What the Docker endpoints need from the composition root."""

    lifecycle: ServiceLifecycle
    #: one reconciler pass (``fix`` False: only report)
    cleanup: Callable[[bool], Deferred[PassReport]]
    base_domain: str | None = None


async def visible_docker_service(
    lifecycle: ServiceLifecycle, principal: Principal, name: str
) -> DockerService:
    """The service named ``name`` if ``principal`` may access it; NotFound otherwise."""
    service = await lifecycle.get(name)
    require_access(principal, service.owner, f"Docker service {name!r}")
    return service


async def container_of(lifecycle: ServiceLifecycle, service: DockerService) -> ContainerInfo | None:
    """The service's container as Docker has it now (503 without Docker)."""
    if service.container_id is None:
        await lifecycle.runtime.ping()
        return None
    info: ContainerInfo | None = await lifecycle.runtime.inspect(service.container_id)
    return info


@define
class DockerServiceResource:
    """The Docker service endpoints."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    storage: IStorage
    clock: IReactorTime
    docker: DockerWiring

    @property
    def lifecycle(self) -> ServiceLifecycle:
        """The lifecycle the endpoints drive."""
        return self.docker.lifecycle

    async def _shown(self, service: DockerService) -> dict[str, Any]:
        """The service with its container's live state."""
        return service_json(service, await container_of(self.lifecycle, service))

    @endpoint(
        app,
        "POST",
        "/services/",
        summary="Create a Docker service and start its container",
        tags=TAGS,
        auth="admin",
        body=SERVICE_CREATE,
        returns={201: SERVICE},
        errors=(409,),
    )
    async def create(self, call: Call) -> object:
        """Check the rules, reserve the ports, make the image and the container, start it.

        With ``auto_proxy`` the proxy ``<name>.<BASE_DOMAIN>`` is created as well.
        """
        body = call.body
        service = service_from_body(
            body, self.lifecycle.rules, call.principal.name, self.clock.seconds()
        )
        if body.get("auto_proxy"):
            self._proxy_hostname(service, None)
        record = await self.lifecycle.create(service)
        if body.get("auto_proxy"):
            record, _ = await self._make_proxy(record, call.principal, None, True, True)
        return Reply(201, await self._shown(record), {"location": f"/services/{record.name}"})

    @endpoint(
        app,
        "GET",
        "/services/",
        summary="List Docker services with their containers' state",
        tags=TAGS,
        query=page_query(_FILTERS),
        returns={200: page_schema(SERVICE)},
    )
    async def list(self, call: Call) -> object:
        """The caller's services by name (one Docker call for every container's state)."""
        services = visible(call.principal, await self.storage.docker_services.list(), _owner)
        containers = await self.lifecycle.runtime.containers(await self.lifecycle.deployment())
        by_id = {info.id: info for info in containers}
        return paginate(
            services,
            call.query,
            lambda s: service_json(s, by_id.get(s.container_id or "")),
            filters=tuple(_FILTERS),
        )

    @endpoint(
        app,
        "GET",
        "/services/{name}",
        summary="Show a Docker service",
        tags=TAGS,
        params=_NAME,
        returns={200: SERVICE},
    )
    async def show(self, call: Call) -> object:
        """The record and the container's state and health."""
        service = await visible_docker_service(self.lifecycle, call.principal, call.params["name"])
        return await self._shown(service)

    @endpoint(
        app,
        "PUT",
        "/services/{name}",
        summary="Update a Docker service (only the fields given change; recreates the container)",
        tags=TAGS,
        auth="admin",
        params=_NAME,
        body=SERVICE_UPDATE,
        returns={200: SERVICE},
        errors=(409,),
    )
    async def replace(self, call: Call) -> object:
        """Change the fields given; the container is recreated, rolled back if it fails."""
        return await self._update(call)

    @endpoint(
        app,
        "PATCH",
        "/services/{name}",
        summary="Change some fields of a Docker service (recreates the container)",
        tags=TAGS,
        auth="admin",
        params=_NAME,
        body=SERVICE_UPDATE,
        returns={200: SERVICE},
        errors=(409,),
    )
    async def patch(self, call: Call) -> object:
        """Change the fields given, keep the others."""
        return await self._update(call)

    async def _update(self, call: Call) -> object:
        """PUT and PATCH."""
        name = call.params["name"]
        await visible_docker_service(self.lifecycle, call.principal, name)
        record = await self.lifecycle.update(name, lambda s: service_changes(s, call.body))
        return await self._shown(record)

    @endpoint(
        app,
        "DELETE",
        "/services/{name}",
        summary="Delete a Docker service and its container",
        tags=TAGS,
        auth="admin",
        params=_NAME,
        query={
            "force": boolean(default=False, description="also when the container runs"),
            "delete_proxy": boolean(
                default=False, description="also delete the proxies made for it"
            ),
        },
        returns={204: None},
        errors=(409,),
    )
    async def delete(self, call: Call) -> object:
        """Remove the container (a running one only with ``force``), its ports and record."""
        name = call.params["name"]
        await visible_docker_service(self.lifecycle, call.principal, name)
        await self.lifecycle.delete(name, call.query["force"], call.query["delete_proxy"])
        return Reply(204)

    async def _act(self, call: Call, action: Callable[[str], Any]) -> object:
        """start, stop, restart."""
        name = call.params["name"]
        await visible_docker_service(self.lifecycle, call.principal, name)
        return await self._shown(await action(name))

    @endpoint(
        app,
        "POST",
        "/services/{name}/start",
        summary="Start a Docker service",
        tags=TAGS,
        auth="admin",
        params=_NAME,
        returns={200: SERVICE},
        errors=(409,),
    )
    async def start(self, call: Call) -> object:
        """Start the container (made again if it is gone); it must keep running."""
        return await self._act(call, self.lifecycle.start)

    @endpoint(
        app,
        "POST",
        "/services/{name}/stop",
        summary="Stop a Docker service",
        tags=TAGS,
        auth="admin",
        params=_NAME,
        returns={200: SERVICE},
        errors=(409,),
    )
    async def stop(self, call: Call) -> object:
        """Stop the container; it stays stopped until started (also across restarts)."""
        return await self._act(call, self.lifecycle.stop)

    @endpoint(
        app,
        "POST",
        "/services/{name}/restart",
        summary="Restart a Docker service",
        tags=TAGS,
        auth="admin",
        params=_NAME,
        returns={200: SERVICE},
        errors=(409,),
    )
    async def restart(self, call: Call) -> object:
        """Restart the container (start it if it was stopped)."""
        return await self._act(call, self.lifecycle.restart)

    @endpoint(
        app,
        "POST",
        "/services/{name}/proxy",
        summary="Create a proxy for a Docker service (<name>.<BASE_DOMAIN> by default)",
        tags=TAGS,
        auth="admin",
        params=_NAME,
        body=PROXY_REQUEST,
        body_required=False,
        returns={201: PROXY},
        errors=(409,),
    )
    async def proxy(self, call: Call) -> object:
        """A proxy to the service's internal port; it follows the service when it moves."""
        body = call.body or {}
        service = await visible_docker_service(self.lifecycle, call.principal, call.params["name"])
        _, proxy = await self._make_proxy(
            service,
            call.principal,
            body.get("hostname"),
            body.get("enable_http", True),
            body.get("enable_https", True),
        )
        return Reply(201, proxy_json(proxy), {"location": f"/proxy/targets/{proxy.hostname}"})

    def _proxy_hostname(self, service: DockerService, given: str | None) -> str:
        """The proxy's hostname: given, or ``<name>.<BASE_DOMAIN>``; checks it can be made."""
        if service.internal_port is None:
            raise InvalidInput(
                f"service {service.name!r} has no internal_port to proxy to", field="/internal_port"
            )
        if given is not None:
            return hostname(given)
        if self.docker.base_domain is None:
            raise InvalidInput("give a hostname (BASE_DOMAIN is not set)", field="/hostname")
        return f"{service.name}.{self.docker.base_domain}"

    async def _make_proxy(
        self,
        service: DockerService,
        principal: Principal,
        given: str | None,
        enable_http: bool,
        enable_https: bool,
    ) -> tuple[DockerService, Proxy]:
        """Create the proxy and remember it on the service; the service's record and the proxy."""
        name = self._proxy_hostname(service, given)
        target = service.upstream_url
        if target is None:
            raise Conflict(
                f"service {service.name!r} has no address yet (is it running?); start it first"
            )
        if await self.storage.proxies.get(name) is not None:
            raise Conflict(f"a proxy for {name!r} exists", field="/hostname")
        now = self.clock.seconds()
        proxy = check_proxy(
            Proxy(
                hostname=name,
                target_url=target,
                enable_http=enable_http,
                enable_https=enable_https,
                owner=principal.name,
                created_at=now,
                updated_at=now,
            )
        )
        await self.storage.proxies.create(proxy)
        return await self.lifecycle.add_proxy(service.name, name), proxy


def _owner(service: DockerService) -> str:
    """Who owns ``service``."""
    return service.owner
