"""What a Docker service's container says, and what the reconciler would fix.

``/services/{name}/logs`` (the last lines, with timestamps if asked),
``/services/{name}/logs/follow`` (a ``text/plain`` stream of lines until the client
disconnects or the container goes away), ``/services/{name}/stats`` (CPU, memory,
network, block I/O, processes) and ``/services/cleanup`` (GET reports, POST fixes:
orphan containers, interrupted operations, missing containers; admin only).
Reads follow the ownership of :mod:`oauthproxy.admin.docker_services`; without
Docker they answer 503.
"""

from __future__ import annotations

from typing import ClassVar

from attrs import define
from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Request

from oauthproxy.admin.docker_schemas import SERVICE_NAME
from oauthproxy.admin.docker_services import DockerWiring, container_of, visible_docker_service
from oauthproxy.admin.endpoint import ApiContext, Call, Stream, endpoint
from oauthproxy.admin.schema import Schema, array, boolean, integer, number, obj, string
from oauthproxy.containers.lifecycle import ServiceLifecycle
from oauthproxy.errors import NotFound
from oauthproxy.interfaces import IStorage

TAGS = ("docker",)
_NAME = {"name": SERVICE_NAME}
MAX_LOG_LINES = 10_000
LOGS = obj(
    {
        "name": string(max_length=63),
        "lines": array(string(max_length=1_000_000), max_items=MAX_LOG_LINES),
    },
    required=("name", "lines"),
)
_LOG_QUERY: dict[str, Schema] = {
    "lines": integer(minimum=0, maximum=MAX_LOG_LINES, default=100, description="last N lines"),
    "timestamps": boolean(default=False, description="prefix each line with its RFC 3339 time"),
}
STATS = obj(
    {
        "name": string(max_length=63),
        "cpu_percent": number(minimum=0, description="100 = one CPU busy"),
        "memory_usage": integer(minimum=0, description="bytes, without page cache"),
        "memory_limit": integer(minimum=0),
        "memory_percent": number(minimum=0),
        "network_rx_bytes": integer(minimum=0),
        "network_tx_bytes": integer(minimum=0),
        "block_read_bytes": integer(minimum=0),
        "block_write_bytes": integer(minimum=0),
        "pids": integer(minimum=0),
    },
    required=(
        "name",
        "cpu_percent",
        "memory_usage",
        "memory_limit",
        "memory_percent",
        "network_rx_bytes",
        "network_tx_bytes",
        "block_read_bytes",
        "block_write_bytes",
        "pids",
    ),
)
_NAMES = array(string(max_length=63), max_items=10_000)
CLEANUP = obj(
    {
        "orphans": array(
            obj(
                {
                    "id": string(max_length=128),
                    "name": string(max_length=255),
                    "service": string(max_length=255),
                },
                required=("id", "name", "service"),
            ),
            max_items=10_000,
        ),
        "interrupted": _NAMES,
        "missing": _NAMES,
        "strays": _NAMES,
        "running_stopped": _NAMES,
        "done": array(string(max_length=2048), max_items=10_000),
        "failed": array(string(max_length=2048), max_items=10_000),
    },
    required=("orphans", "interrupted", "missing", "strays", "running_stopped", "done", "failed"),
)


@define
class DockerContainerResource:
    """Logs, stats and cleanup of Docker services."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext
    storage: IStorage
    clock: IReactorTime
    docker: DockerWiring

    @property
    def lifecycle(self) -> ServiceLifecycle:
        """The lifecycle whose runtime answers."""
        return self.docker.lifecycle

    async def _container(self, call: Call) -> str:
        """The id of the caller's service's container; NotFound when it has none."""
        service = await visible_docker_service(self.lifecycle, call.principal, call.params["name"])
        info = await container_of(self.lifecycle, service)
        if info is None:
            raise NotFound(f"service {service.name!r} has no container (start it)", field="name")
        return info.id

    @endpoint(
        app,
        "GET",
        "/services/{name}/logs",
        summary="The last lines of a Docker service's output",
        tags=TAGS,
        params=_NAME,
        query=_LOG_QUERY,
        returns={200: LOGS},
    )
    async def logs(self, call: Call) -> object:
        """stdout and stderr, oldest first."""
        container = await self._container(call)
        lines = await self.lifecycle.runtime.logs(
            container, call.query["lines"], call.query["timestamps"]
        )
        return {"name": call.params["name"], "lines": lines}

    @endpoint(
        app,
        "GET",
        "/services/{name}/logs/follow",
        summary="Follow a Docker service's output (a text/plain stream of lines)",
        tags=TAGS,
        params=_NAME,
        query={**_LOG_QUERY, "lines": integer(minimum=0, maximum=MAX_LOG_LINES, default=10)},
        returns={200: None},
        stream="text/plain; charset=utf-8",
    )
    async def follow(self, call: Call) -> object:
        """The last ``lines`` lines, then each new line, until the client or the container goes."""
        container = await self._container(call)
        runtime = self.lifecycle.runtime
        lines, timestamps = call.query["lines"], call.query["timestamps"]

        async def run(request: Request) -> None:
            gone: list[bool] = []

            def deliver(line: str) -> None:
                if not gone:
                    request.write(line.encode("utf-8") + b"\n")  # type: ignore[no-untyped-call]

            stream = runtime.follow(container, lines, timestamps, deliver)

            def client_left(result: object) -> None:
                gone.append(True)
                stream.stop()

            request.notifyFinish().addBoth(client_left)
            await stream.done

        return Stream(run)

    @endpoint(
        app,
        "GET",
        "/services/{name}/stats",
        summary="A Docker service's CPU, memory, network, block I/O and process counts",
        tags=TAGS,
        params=_NAME,
        returns={200: STATS},
    )
    async def stats(self, call: Call) -> object:
        """Resource use now (Docker samples for about a second)."""
        container = await self._container(call)
        stats = await self.lifecycle.runtime.stats(container)
        return {"name": call.params["name"], **stats.as_json()}

    @endpoint(
        app,
        "GET",
        "/services/cleanup",
        summary="Report orphan containers, interrupted operations and missing containers",
        tags=TAGS,
        auth="admin",
        returns={200: CLEANUP},
    )
    async def cleanup_report(self, call: Call) -> object:
        """What a cleanup would fix, without fixing it."""
        return (await self.docker.cleanup(False)).as_json()

    @endpoint(
        app,
        "POST",
        "/services/cleanup",
        summary="Remove orphan containers and repair services (a reconciler pass, now)",
        tags=TAGS,
        auth="admin",
        returns={200: CLEANUP},
    )
    async def cleanup(self, call: Call) -> object:
        """Run a reconciler pass now; what it found and what it did."""
        return (await self.docker.cleanup(True)).as_json()
