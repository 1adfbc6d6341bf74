"""The container runtime seam: what the lifecycle, reconciler and API ask of Docker.

:class:`IContainerRuntime` is implemented by :class:`~oauthproxy.containers.engine.DockerEngine`
(the docker SDK in a thread pool) and by the in-memory twin
:class:`~oauthproxy.testing.containers.MemoryRuntime`; one contract suite runs
against both (the real one on a private dockerd).  Everything returns Deferreds;
failures are :mod:`oauthproxy.errors`:

- :class:`~oauthproxy.errors.Unavailable` (503): Docker cannot be reached; its
  detail is one sentence naming ``DOCKER_HOST``;
- :class:`~oauthproxy.errors.NotFound`: no such container;
- :class:`DockerRefused` (422): Docker refused the request (its own words);
- :class:`ImageUnavailable` (422): the image is not on the host and cannot be had.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred, fail
from zope.interface import Attribute, Interface, implementer

from oauthproxy.containers.stats import ContainerStats
from oauthproxy.errors import InvalidInput, Unavailable
from oauthproxy.model import DockerService

#: container states in which its process runs
RUNNING_STATES = frozenset({"running", "restarting", "paused"})


class DockerRefused(InvalidInput):
    """Docker refused the request."""

    code = "docker_refused"


class ImageUnavailable(InvalidInput):
    """The image is not on the Docker host and could not be pulled or built."""

    code = "image_unavailable"


@frozen
class ContainerInfo:
    """What Docker says about one container (``inspect`` or a listing)."""

    id: str
    name: str
    state: str
    #: the daemon's labels (None on containers that are not ours)
    service: str | None = None
    deployment: str | None = None
    generation: int | None = None
    #: the healthcheck's verdict: starting, healthy, unhealthy (None: no healthcheck)
    health: str | None = None
    exit_code: int | None = None
    #: POSIX seconds (None: never started)
    started_at: float | None = None
    #: (network, IP address) for each network the container joined
    addresses: tuple[tuple[str, str], ...] = ()
    image: str = ""
    #: times Docker restarted it (by its restart policy); listings say 0
    restarts: int = 0

    @property
    def running(self) -> bool:
        """Whether the container's process runs."""
        return self.state in RUNNING_STATES


class ILogStream(Interface):
    """A log follow in progress: lines are delivered until it ends or is stopped."""

    done = Attribute("Deferred[None]: fires when the stream has ended (container gone, stopped)")

    def stop() -> None:
        """End the stream (the client went away); ``done`` fires soon after."""


class IContainerRuntime(Interface):
    """Docker, as the daemon uses it."""

    def ping() -> Deferred[None]:
        """Fires when Docker answers; Unavailable otherwise."""

    def ensure_network(name: str) -> Deferred[None]:
        """Create the user-defined bridge network ``name`` unless it exists."""

    def prepare_image(service: DockerService, may_pull: bool) -> Deferred[None]:
        """Make ``service.image`` present: build it (``service.build``), find it, or pull it.

        Pulls only when ``may_pull``; ImageUnavailable when the image cannot be had.
        """

    def create(service: DockerService, deployment: str, network: str) -> Deferred[str]:
        """Create (not start) the service's container, joined to its networks; its id."""

    def start(container: str) -> Deferred[None]:
        """Start a container (by id or name)."""

    def stop(container: str, timeout: float) -> Deferred[None]:
        """Stop a container, killing it after ``timeout`` seconds."""

    def restart(container: str, timeout: float) -> Deferred[None]:
        """Stop (``timeout`` as for stop) and start a container."""

    def remove(container: str, force: bool) -> Deferred[None]:
        """Remove a container (``force`` also a running one); NotFound if there is none."""

    def rename(container: str, name: str) -> Deferred[None]:
        """Rename a container."""

    def inspect(container: str) -> Deferred[ContainerInfo | None]:
        """The container by id or name, or None."""

    def containers(deployment: str) -> Deferred[list[ContainerInfo]]:
        """Every container (running or not) carrying ``deployment``'s label."""

    def logs(container: str, tail: int, timestamps: bool) -> Deferred[list[str]]:
        """The last ``tail`` lines of the container's output (stdout and stderr)."""

    def follow(
        container: str, tail: int, timestamps: bool, deliver: Callable[[str], None]
    ) -> ILogStream:
        """Deliver the last ``tail`` lines, then every new line, until stopped."""

    def stats(container: str) -> Deferred[ContainerStats]:
        """The container's resource use now."""


@implementer(ILogStream)
class _NoStream:
    """The log stream of :class:`DisabledRuntime`: failed at once."""

    def __init__(self, error: Exception) -> None:
        self.done: Deferred[None] = fail(error)

    def stop(self) -> None:
        """Nothing runs."""


@implementer(IContainerRuntime)
class DisabledRuntime:
    """The runtime when Docker services are turned off: every call is Unavailable."""

    error = "Docker services are turned off on this daemon (OAUTHPROXY_DOCKER=off)"

    def _off(self, *args: object, **kwargs: object) -> Deferred[Any]:
        """Fail with the one sentence saying why."""
        return fail(Unavailable(self.error))

    ping = ensure_network = prepare_image = create = start = stop = restart = _off
    remove = rename = inspect = containers = logs = stats = _off

    def follow(
        self, container: str, tail: int, timestamps: bool, deliver: Callable[[str], None]
    ) -> ILogStream:
        """A stream that has failed already."""
        return _NoStream(Unavailable(self.error))
