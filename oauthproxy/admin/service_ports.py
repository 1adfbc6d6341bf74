"""Ports of Docker services: ``/services/{name}/ports``, ``/services/ports/*``, ``/ports/``.

A port maps ``bind:host`` on the Docker host to a container port.  Adding,
changing or removing one goes through the service's update (the container is
recreated when Docker publishes the port; a guarded port — ``allowed_networks`` or
``source_token`` — is the daemon's own listener, so the container keeps running).
``GET /services/ports/check`` says whether a port could be given and, if not, why
(restricted, reserved by which service, used by another program on the host);
``GET /services/ports/available`` lists the free automatic ranges; ``GET /ports/``
lists every reservation.  Ports are reserved atomically in Redis, so two daemons
never hand out the same one.
"""

from __future__ import annotations

from typing import Any, ClassVar

from attrs import define, evolve
from klein import Klein
from twisted.internet.interfaces import IReactorTime

from oauthproxy.admin.access import visible
from oauthproxy.admin.docker_inputs import port_from_body
from oauthproxy.admin.docker_schemas import (
    PORT,
    PORT_CREATE,
    PORT_NAME,
    PORT_UPDATE,
    SERVICE_NAME,
    port_json,
)
from oauthproxy.admin.docker_services import DockerWiring, visible_docker_service
from oauthproxy.admin.endpoint import ApiContext, Call, Reply, endpoint
from oauthproxy.admin.listing import page_query, page_schema, paginate
from oauthproxy.admin.schema import Schema, array, boolean, integer, nullable, obj, string
from oauthproxy.containers.lifecycle import ServiceLifecycle
from oauthproxy.containers.policy import Reservation, bind_address
from oauthproxy.errors import Conflict, InvalidInput, NotFound
from oauthproxy.interfaces import IStorage
from oauthproxy.model import DockerService, ServicePort

TAGS = ("ports",)
_NAME = {"name": SERVICE_NAME}
_PORT_PARAMS = {"name": SERVICE_NAME, "port_name": PORT_NAME}
CHECK = obj(
    {
        "port": integer(minimum=1, maximum=65535),
        "bind": string(max_length=64),
        "protocol": string(enum=("tcp", "udp")),
        "available": boolean(),
        "reason": nullable(string(max_length=500, description="why not, or a note")),
    },
    required=("port", "bind", "protocol", "available", "reason"),
)
_RANGE = obj(
    {"first": integer(minimum=1, maximum=65535), "last": integer(minimum=1, maximum=65535)},
    required=("first", "last"),
)
AVAILABLE = obj(
    {
        "ranges": array(_RANGE, max_items=100_000),
        "restricted": array(integer(minimum=1, maximum=65535), max_items=65535),
        "reserved": integer(minimum=0, description="ports reserved by services"),
    },
    required=("ranges", "restricted", "reserved"),
)
ALLOCATION = obj(
    {
        "port": integer(minimum=1, maximum=65535),
        "protocol": string(enum=("tcp", "udp")),
        "bind": string(max_length=64),
        "service": string(max_length=63),
        "port_name": string(max_length=32),
    },
    required=("port", "protocol", "bind", "service", "port_name"),
)
_ALLOCATION_FILTERS: dict[str, Schema] = {
    "service": string(max_length=63),
    "protocol": string(enum=("tcp", "udp")),
}


def _port(service: DockerService, name: str) -> ServicePort:
    """The service's port named ``name``; NotFound otherwise."""
    for port in service.ports:
        if port.name == name:
            return port
    raise NotFound(f"service {service.name!r} has no port {name!r}", field="port_name")


def allocation_json(reservation: Reservation) -> dict[str, Any]:
    """The API's view of one reserved port."""
    return {
        "port": reservation.port,
        "protocol": reservation.protocol,
        "bind": reservation.bind,
        "service": reservation.service,
        "port_name": reservation.port_name,
    }


@define
class ServicePortResource:
    """The port endpoints of Docker services."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    storage: IStorage
    clock: IReactorTime
    docker: DockerWiring

    @property
    def lifecycle(self) -> ServiceLifecycle:
        """The lifecycle the endpoints drive."""
        return self.docker.lifecycle

    @endpoint(
        app,
        "GET",
        "/services/ports/check",
        summary="Whether a host port is free on a bind address, and why not",
        tags=TAGS,
        query={
            "port": integer(minimum=1, maximum=65535),
            "bind": string(max_length=64, description="default 127.0.0.1"),
            "protocol": string(enum=("tcp", "udp"), description="default tcp"),
        },
        returns={200: CHECK},
    )
    async def check(self, call: Call) -> object:
        """Restricted ports, other services' reservations and the host's own use are checked."""
        port = call.query.get("port")
        if port is None:
            raise InvalidInput("give the port to check", field="port")
        try:
            bind = bind_address(call.query.get("bind", "127.0.0.1"))
        except ValueError as e:
            raise InvalidInput(str(e), field="bind") from None
        protocol = call.query.get("protocol", "tcp")
        reason = await self.lifecycle.allocator.why_not(port, bind, protocol)
        note = None
        if reason is None and not self.lifecycle.rules.ports.in_ranges(port):
            note = "free, but outside the automatic ranges (it can still be given explicitly)"
        return {
            "port": port,
            "bind": bind,
            "protocol": protocol,
            "available": reason is None,
            "reason": reason or note,
        }

    @endpoint(
        app,
        "GET",
        "/services/ports/available",
        summary="The free ranges of automatically assigned host ports",
        tags=TAGS,
        returns={200: AVAILABLE},
    )
    async def available(self, call: Call) -> object:
        """The automatic ranges minus restricted and reserved ports."""
        reserved = await self.storage.docker_services.reservations()
        policy = self.lifecycle.rules.ports
        free = policy.available_ranges(r.port for r in reserved)
        return {
            "ranges": [{"first": first, "last": last} for first, last in free],
            "restricted": list(policy.restricted),
            "reserved": len({r.port for r in reserved}),
        }

    @endpoint(
        app,
        "GET",
        "/ports/",
        summary="Every host port reserved by a Docker service",
        tags=TAGS,
        query=page_query(_ALLOCATION_FILTERS),
        returns={200: page_schema(ALLOCATION)},
    )
    async def allocations(self, call: Call) -> object:
        """Reservations by port (a non-admin token sees those of its own services)."""
        reserved = await self.storage.docker_services.reservations()
        if not call.principal.is_admin:
            owners = {s.name: s.owner for s in await self.storage.docker_services.list()}
            reserved = visible(call.principal, reserved, lambda r: owners.get(r.service, ""))
        return paginate(reserved, call.query, allocation_json, filters=tuple(_ALLOCATION_FILTERS))

    @endpoint(
        app,
        "GET",
        "/services/{name}/ports",
        summary="List a Docker service's ports",
        tags=TAGS,
        params=_NAME,
        query=page_query(),
        returns={200: page_schema(PORT)},
    )
    async def list(self, call: Call) -> object:
        """The service's ports in their order."""
        service = await visible_docker_service(self.lifecycle, call.principal, call.params["name"])
        return paginate(list(service.ports), call.query, lambda p: port_json(service, p))

    @endpoint(
        app,
        "POST",
        "/services/{name}/ports",
        summary="Add a port to a Docker service",
        tags=TAGS,
        auth="admin",
        params=_NAME,
        body=PORT_CREATE,
        returns={201: PORT},
        errors=(409,),
    )
    async def add(self, call: Call) -> object:
        """Reserve and open the port (host 0: one is picked); named after its port by default."""
        name = call.params["name"]
        await visible_docker_service(self.lifecycle, call.principal, name)
        port = port_from_body(call.body, "")

        def add(service: DockerService) -> DockerService:
            if any(p.name == port.name for p in service.ports):
                raise Conflict(f"service {name!r} has a port named {port.name!r}", field="/name")
            return evolve(service, ports=(*service.ports, port))

        record = await self.lifecycle.update(name, add)
        added = _port(record, port.name)
        location = f"/services/{name}/ports/{added.name}"
        return Reply(201, port_json(record, added), {"location": location})

    async def _change(self, call: Call) -> object:
        """PUT and PATCH of one port."""
        name, port_name = call.params["name"], call.params["port_name"]
        await visible_docker_service(self.lifecycle, call.principal, name)

        def change(service: DockerService) -> DockerService:
            current = _port(service, port_name)
            changed = port_from_body(call.body, "", current)
            ports = tuple(changed if p.name == port_name else p for p in service.ports)
            return evolve(service, ports=ports)

        record = await self.lifecycle.update(name, change)
        return port_json(record, _port(record, port_name))

    @endpoint(
        app,
        "PUT",
        "/services/{name}/ports/{port_name}",
        summary="Change a port of a Docker service (only the fields given change)",
        tags=TAGS,
        auth="admin",
        params=_PORT_PARAMS,
        body=PORT_UPDATE,
        returns={200: PORT},
        errors=(409,),
    )
    async def replace(self, call: Call) -> object:
        """Change the fields given (``source_token: null`` removes the token)."""
        return await self._change(call)

    @endpoint(
        app,
        "PATCH",
        "/services/{name}/ports/{port_name}",
        summary="Change some fields of a port of a Docker service",
        tags=TAGS,
        auth="admin",
        params=_PORT_PARAMS,
        body=PORT_UPDATE,
        returns={200: PORT},
        errors=(409,),
    )
    async def patch(self, call: Call) -> object:
        """Change the fields given, keep the others."""
        return await self._change(call)

    @endpoint(
        app,
        "DELETE",
        "/services/{name}/ports/{port_name}",
        summary="Remove a port from a Docker service (its host port is released)",
        tags=TAGS,
        auth="admin",
        params=_PORT_PARAMS,
        returns={204: None},
        errors=(409,),
    )
    async def remove(self, call: Call) -> object:
        """Close the port and release its reservation."""
        name, port_name = call.params["name"], call.params["port_name"]
        await visible_docker_service(self.lifecycle, call.principal, name)

        def remove(service: DockerService) -> DockerService:
            _port(service, port_name)
            return evolve(service, ports=tuple(p for p in service.ports if p.name != port_name))

        await self.lifecycle.update(name, remove)
        return Reply(204)
