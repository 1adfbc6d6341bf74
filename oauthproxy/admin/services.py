"""``/services/external/``: named URLs that routes can target (the seed's service-register).

An external service is a name for a URL, so that routes say ``service backend-api``
and a move of the backend is one update.  Records belong to the token that
registered them (others' are 404 to a non-admin token).  A service still
targeted by a route cannot be deleted: 409 naming the route.
"""

from __future__ import annotations

from typing import ClassVar

from attrs import define, evolve
from klein import Klein
from twisted.internet.interfaces import IReactorTime

from oauthproxy.admin.access import Principal, require_access, visible
from oauthproxy.admin.endpoint import ApiContext, Call, Reply, endpoint
from oauthproxy.admin.listing import page_query, page_schema, paginate
from oauthproxy.admin.schema import Schema, number, obj, string
from oauthproxy.admin.validation import NAME_PATTERN, NAME_WORDS, URL, http_url
from oauthproxy.errors import Conflict, NotFound
from oauthproxy.interfaces import IStorage
from oauthproxy.model import DockerService, ExternalService

TAGS = ("services",)
SERVICE_NAME = string(
    min_length=1,
    max_length=64,
    pattern=NAME_PATTERN,
    description="letters, digits, '.', '_' and '-'",
    example="backend-api",
    error=NAME_WORDS,
)
DESCRIPTION = string(max_length=500, description="free text for people")
SERVICE_CREATE = obj(
    {"name": SERVICE_NAME, "target_url": URL, "description": DESCRIPTION},
    required=("name", "target_url"),
)
SERVICE_UPDATE = obj(
    {"target_url": URL, "description": DESCRIPTION},
    description="the fields to change; the others stay",
)
_SERVICE_FIELDS: dict[str, Schema] = {
    "name": string(max_length=64),
    "target_url": string(max_length=2048),
    "description": string(max_length=500),
    "owner": string(max_length=64, description="the token that registered it"),
    "created_at": number(minimum=0, description="POSIX seconds"),
    "updated_at": number(minimum=0, description="POSIX seconds"),
}
SERVICE = obj(_SERVICE_FIELDS, required=tuple(_SERVICE_FIELDS))
_NAME = {"name": SERVICE_NAME}
_FILTERS: dict[str, Schema] = {
    "owner": string(max_length=64),
    "target_url": string(max_length=2048),
}
#: route ids named in a 409 when a service is still in use
_NAMED_ROUTES = 5


def service_json(service: ExternalService) -> dict[str, object]:
    """The API's view of an external service."""
    return {
        "name": service.name,
        "target_url": service.target_url,
        "description": service.description,
        "owner": service.owner,
        "created_at": service.created_at,
        "updated_at": service.updated_at,
    }


async def target_service(storage: IStorage, principal: Principal, name: str) -> str:
    """The name of the external or Docker service a route may target; NotFound otherwise.

    Both kinds share one namespace (a create refuses a name the other kind uses);
    should both exist, the external service is the one routes reach.
    """
    external: ExternalService | None = await storage.services.get(name)
    if external is not None:
        require_access(principal, external.owner, f"external service {name!r}")
        return external.name
    docker: DockerService | None = await storage.docker_services.get(name)
    if docker is None:
        raise NotFound(f"no service {name!r}", field="name")
    require_access(principal, docker.owner, f"Docker service {name!r}")
    return docker.name


async def visible_service(storage: IStorage, principal: Principal, name: str) -> ExternalService:
    """The service named ``name`` if ``principal`` may access it; NotFound otherwise."""
    what = f"external service {name!r}"
    service: ExternalService | None = await storage.services.get(name)
    if service is None:
        raise NotFound(f"no {what}", field="name")
    require_access(principal, service.owner, what)
    return service


@define
class ServiceResource:
    """The external service endpoints."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    storage: IStorage
    clock: IReactorTime

    @endpoint(
        app,
        "POST",
        "/services/external/",
        summary="Register an external service (a named URL for routes)",
        tags=TAGS,
        body=SERVICE_CREATE,
        returns={201: SERVICE},
        errors=(409,),
    )
    async def create(self, call: Call) -> object:
        """Register ``name`` → ``target_url``, owned by the calling token."""
        name = call.body["name"]
        if await self.storage.services.get(name) is not None:
            raise Conflict(f"an external service named {name!r} exists", field="/name")
        if await self.storage.docker_services.get(name) is not None:
            raise Conflict(
                f"a Docker service is named {name!r}; external and Docker services share "
                "names (routes target them by name)",
                field="/name",
            )
        now = self.clock.seconds()
        service = ExternalService(
            name=name,
            target_url=http_url(call.body["target_url"], "/target_url"),
            description=call.body.get("description", ""),
            owner=call.principal.name,
            created_at=now,
            updated_at=now,
        )
        await self.storage.services.create(service)
        return Reply(201, service_json(service), {"location": f"/services/external/{name}"})

    @endpoint(
        app,
        "GET",
        "/services/external/",
        summary="List external services (a non-admin token sees only its own)",
        tags=TAGS,
        query=page_query(_FILTERS),
        returns={200: page_schema(SERVICE)},
    )
    async def list(self, call: Call) -> object:
        """The caller's services by name, filtered by exact field values."""
        services = visible(call.principal, await self.storage.services.list(), _owner)
        return paginate(services, call.query, service_json, filters=tuple(_FILTERS))

    @endpoint(
        app,
        "GET",
        "/services/external/{name}",
        summary="Show an external service",
        tags=TAGS,
        params=_NAME,
        returns={200: SERVICE},
    )
    async def show(self, call: Call) -> object:
        """The service's record."""
        return service_json(
            await visible_service(self.storage, call.principal, call.params["name"])
        )

    @endpoint(
        app,
        "PUT",
        "/services/external/{name}",
        summary="Update an external service (only the fields given change)",
        tags=TAGS,
        params=_NAME,
        body=SERVICE_UPDATE,
        returns={200: SERVICE},
    )
    async def replace(self, call: Call) -> object:
        """Change the fields given; routes targeting the service follow at once."""
        return await self._update(call)

    @endpoint(
        app,
        "PATCH",
        "/services/external/{name}",
        summary="Change some fields of an external service",
        tags=TAGS,
        params=_NAME,
        body=SERVICE_UPDATE,
        returns={200: SERVICE},
    )
    async def patch(self, call: Call) -> object:
        """Change the fields given, keep the others."""
        return await self._update(call)

    async def _update(self, call: Call) -> object:
        """PUT and PATCH: apply the body's fields onto the stored service."""
        service = await visible_service(self.storage, call.principal, call.params["name"])
        changes = dict(call.body)
        if "target_url" in changes:
            changes["target_url"] = http_url(changes["target_url"], "/target_url")
        updated = evolve(service, **changes, updated_at=self.clock.seconds())
        await self.storage.services.update(updated)
        return service_json(updated)

    @endpoint(
        app,
        "DELETE",
        "/services/external/{name}",
        summary="Delete an external service (409 while a route targets it)",
        tags=TAGS,
        params=_NAME,
        returns={204: None},
        errors=(409,),
    )
    async def delete(self, call: Call) -> object:
        """Remove the service unless a route still targets it."""
        service = await visible_service(self.storage, call.principal, call.params["name"])
        users = [
            route.route_id
            for route in await self.storage.routes.list()
            if route.target_type == "service" and route.target_value == service.name
        ]
        if users:
            shown = ", ".join(users[:_NAMED_ROUTES]) + (
                " ..." if len(users) > _NAMED_ROUTES else ""
            )
            raise Conflict(
                f"external service {service.name!r} is the target of route(s) {shown}; "
                "change or delete them first",
                field="name",
            )
        await self.storage.services.delete(service.name)
        return Reply(204)


def _owner(service: ExternalService) -> str:
    """Who owns ``service``."""
    return service.owner
