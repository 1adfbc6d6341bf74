"""In-memory twins of the Docker service store and of the container runtime.

Part of :mod:`oauthproxy.testing`.  :class:`MemoryDockerServiceStore` reserves ports
by the same rule as the Redis script (the pure policy's); :class:`MemoryRuntime`
behaves like the Docker engine as far as the daemon can tell (names are unique,
a running container must be forced to be removed, a container whose command is
``false`` exits at once, images must be present or built), and can be switched
off (``available = False``) like a stopped dockerd.  The same contract suites run
against these and against Redis and a real dockerd.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from attrs import define, evolve, field
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from oauthproxy.containers.policy import (
    Reservation,
    first_clash,
    reservation_from_key,
    reservations,
)
from oauthproxy.containers.runconfig import create_arguments
from oauthproxy.containers.runtime import (
    ContainerInfo,
    DockerRefused,
    IContainerRuntime,
    ILogStream,
    ImageUnavailable,
)
from oauthproxy.containers.stats import ContainerStats
from oauthproxy.errors import Conflict, NotFound, Unavailable
from oauthproxy.interfaces import IDockerServiceStore
from oauthproxy.model import DockerService
from oauthproxy.storage.codec import decode
from oauthproxy.storage.events import Action
from oauthproxy.testing.memory import MemoryRecordStore

T = TypeVar("T")


def _wanted(service: DockerService | None) -> list[Reservation]:
    """The reservations a stored record holds (its ports and its previous record's)."""
    if service is None:
        return []
    previous = None if service.previous is None else decode(DockerService, service.previous)
    return reservations(service, previous)


@implementer(IDockerServiceStore)
class MemoryDockerServiceStore(MemoryRecordStore[DockerService]):
    """Docker services with their ports reserved in ``state.ports``."""

    def _held_by_others(self, key: str) -> list[Reservation]:
        """Reservations of every other service."""
        held = [reservation_from_key(k, v) for k, v in self.state.ports.items()]
        return [r for r in held if r.service != key]

    def _check_index(
        self, action: Action, key: str, old: DockerService | None, new: DockerService | None
    ) -> None:
        """A wanted port another service holds refuses the write."""
        clash = first_clash(_wanted(new), self._held_by_others(key))
        if clash is not None:
            wanted, held = clash
            raise Conflict(
                f"port {wanted.port}/{wanted.protocol} on {wanted.bind} is reserved by "
                f"service {held.holder}",
                field="ports",
            )

    def _update_index(
        self, action: Action, key: str, old: DockerService | None, new: DockerService | None
    ) -> None:
        """Release this service's reservations and take the new ones."""
        for name, holder in list(self.state.ports.items()):
            if holder.startswith(key + "/"):
                del self.state.ports[name]
        for reservation in _wanted(new):
            self.state.ports[reservation.key] = reservation.holder

    def reservations(self) -> Deferred[list[Reservation]]:
        """Every reserved port, by port."""
        return self.state.run(
            lambda: sorted(
                (reservation_from_key(k, v) for k, v in self.state.ports.items()),
                key=lambda r: (r.port, r.protocol, r.bind),
            )
        )

    def deployment(self) -> Deferred[str]:
        """The deployment id, made on first use."""

        def deployment() -> str:
            if self.state.deployment is None:
                self.state.deployment = secrets.token_hex(8)
            return self.state.deployment

        return self.state.run(deployment)


@define
class FakeContainer:
    """One container of :class:`MemoryRuntime`."""

    info: ContainerInfo
    service: DockerService
    arguments: dict[str, object]
    output: list[str] = field(factory=list)


@implementer(ILogStream)
@define(eq=False)
class _Follow:
    """A follow of :class:`MemoryRuntime`: lines go to ``deliver`` until stopped."""

    container: str
    deliver: Callable[[str], None]
    done: Deferred[None] = field(factory=Deferred)

    def stop(self) -> None:
        """End the follow."""
        if not self.done.called:
            self.done.callback(None)


@implementer(IContainerRuntime)
@define
class MemoryRuntime:
    """A Docker engine in memory (see the module docstring)."""

    clock: IReactorTime
    available: bool = True
    #: images present on the "host"
    images: set[str] = field(factory=set)
    #: images a pull would find (no registry otherwise)
    pullable: set[str] = field(factory=set)
    networks: set[str] = field(factory=set)
    #: by id
    by_id: dict[str, FakeContainer] = field(factory=dict)
    follows: list[_Follow] = field(factory=list)
    #: every call made, as (method, first argument)
    calls: list[tuple[str, str]] = field(factory=list)
    #: calls to fail with DockerRefused, by method name (e.g. {"start"})
    refuse: set[str] = field(factory=set)
    _addresses: int = 1

    def _checked(self, method: str, what: str, f: Callable[[], T]) -> Deferred[T]:
        """Record the call; fail when off or told to refuse; else ``f()``."""
        self.calls.append((method, what))
        if not self.available:
            return fail(
                Unavailable("Docker is not reachable at memory (DOCKER_HOST): switched off")
            )
        if method in self.refuse:
            return fail(DockerRefused(f"{method} {what}: Docker refused: told to"))
        try:
            return succeed(f())
        except Exception as e:
            return fail(e)

    def _find(self, container: str) -> FakeContainer:
        """A container by id or name; NotFound otherwise."""
        found = self.by_id.get(container) or next(
            (c for c in self.by_id.values() if c.info.name == container), None
        )
        if found is None:
            raise NotFound(f"container {container}: No such container: {container}")
        return found

    def _set(self, container: FakeContainer, **changes: Any) -> None:
        """Change what ``inspect`` says about ``container``."""
        container.info = evolve(container.info, **changes)

    def ping(self) -> Deferred[None]:
        """Fires unless switched off."""
        return self._checked("ping", "", lambda: None)

    def ensure_network(self, name: str) -> Deferred[None]:
        """Remember the network."""
        return self._checked("ensure_network", name, lambda: self.networks.add(name))

    def prepare_image(self, service: DockerService, may_pull: bool) -> Deferred[None]:
        """Build (always works), find, or pull from :attr:`pullable`."""

        def prepare() -> None:
            if service.build is not None or service.image in self.images:
                self.images.add(service.image)
                return
            if not may_pull:
                raise ImageUnavailable(
                    f"image {service.image} is not on the Docker host", field="/image"
                )
            if service.image not in self.pullable:
                raise ImageUnavailable(
                    f"image {service.image} is not on the Docker host and pulling it failed",
                    field="/image",
                )
            self.images.add(service.image)

        return self._checked("prepare_image", service.image, prepare)

    def create(self, service: DockerService, deployment: str, network: str) -> Deferred[str]:
        """A created container; names are unique, the image must be present."""

        def create() -> str:
            if service.image not in self.images:
                raise ImageUnavailable(f"No such image: {service.image}", field="/image")
            if any(c.info.name == service.name for c in self.by_id.values()):
                raise DockerRefused(
                    f"container {service.name}: Docker refused: Conflict. name in use"
                )
            container_id = secrets.token_hex(32)
            addresses: tuple[tuple[str, str], ...] = ()
            if service.network_mode == "bridge":
                self._addresses += 1
                address = f"10.89.0.{self._addresses}"
                addresses = tuple(sorted((n, address) for n in (network, *service.networks)))
            self.by_id[container_id] = FakeContainer(
                ContainerInfo(
                    id=container_id,
                    name=service.name,
                    state="created",
                    service=service.name,
                    deployment=deployment,
                    generation=service.generation,
                    addresses=addresses,
                    image=service.image,
                    health="starting" if service.healthcheck is not None else None,
                ),
                service,
                create_arguments(service, deployment, network),
            )
            return container_id

        return self._checked("create", service.name, create)

    def start(self, container: str) -> Deferred[None]:
        """Running, unless the command is ``false`` (then exited with 1 at once)."""

        def start() -> None:
            found = self._find(container)
            if found.service.command and found.service.command[0] == "false":
                self._set(found, state="exited", exit_code=1)
            else:
                self._set(found, state="running", exit_code=0)
            self._set(found, started_at=self.clock.seconds())

        return self._checked("start", container, start)

    def stop(self, container: str, timeout: float) -> Deferred[None]:
        """Exited."""
        return self._checked(
            "stop",
            container,
            lambda: self._set(self._find(container), state="exited", exit_code=143),
        )

    def restart(self, container: str, timeout: float) -> Deferred[None]:
        """Running again."""
        return self._checked(
            "restart",
            container,
            lambda: self._set(
                self._find(container), state="running", started_at=self.clock.seconds()
            ),
        )

    def remove(self, container: str, force: bool) -> Deferred[None]:
        """Gone; a running one only with ``force``."""

        def remove() -> None:
            found = self._find(container)
            if found.info.running and not force:
                raise DockerRefused(f"container {container}: Docker refused: stop it or force")
            del self.by_id[found.info.id]
            for follow in list(self.follows):
                if follow.container == found.info.id:
                    follow.stop()

        return self._checked("remove", container, remove)

    def rename(self, container: str, name: str) -> Deferred[None]:
        """Renamed; names stay unique."""

        def rename() -> None:
            found = self._find(container)
            if any(c.info.name == name for c in self.by_id.values() if c is not found):
                raise DockerRefused(f"container {container}: Docker refused: name {name} in use")
            self._set(found, name=name)

        return self._checked("rename", container, rename)

    def inspect(self, container: str) -> Deferred[ContainerInfo | None]:
        """The container's info, or None."""

        def inspect() -> ContainerInfo | None:
            try:
                return self._find(container).info
            except NotFound:
                return None

        return self._checked("inspect", container, inspect)

    def containers(self, deployment: str) -> Deferred[list[ContainerInfo]]:
        """The deployment's containers, by name."""
        return self._checked(
            "containers",
            deployment,
            lambda: sorted(
                (c.info for c in self.by_id.values() if c.info.deployment == deployment),
                key=lambda info: info.name,
            ),
        )

    def logs(self, container: str, tail: int, timestamps: bool) -> Deferred[list[str]]:
        """The last ``tail`` output lines."""

        def logs() -> list[str]:
            lines = self._find(container).output[-tail:] if tail else []
            return [self._stamped(line, timestamps) for line in lines]

        return self._checked("logs", container, logs)

    def _stamped(self, line: str, timestamps: bool) -> str:
        """``line`` with a fixed RFC 3339 stamp when asked."""
        return f"2026-01-01T00:00:00.000000000Z {line}" if timestamps else line

    def follow(
        self, container: str, tail: int, timestamps: bool, deliver: Callable[[str], None]
    ) -> ILogStream:
        """Deliver the tail now and every line :meth:`emit` adds later."""
        self.calls.append(("follow", container))
        try:
            if not self.available:
                raise Unavailable("Docker is not reachable at memory (DOCKER_HOST): switched off")
            found = self._find(container)
        except Exception as e:
            stream = _Follow(container, deliver)
            stream.done.errback(e)
            return stream
        stream = _Follow(found.info.id, lambda line: deliver(self._stamped(line, timestamps)))
        for line in found.output[-tail:] if tail else []:
            stream.deliver(line)
        self.follows.append(stream)

        def ended(result: object) -> object:
            self.follows.remove(stream)
            return result

        stream.done.addBoth(ended)
        return stream

    def emit(self, container: str, line: str) -> None:
        """Test helper: the container prints ``line``."""
        found = self._find(container)
        found.output.append(line)
        for follow in list(self.follows):
            if follow.container == found.info.id:
                follow.deliver(line)

    def stats(self, container: str) -> Deferred[ContainerStats]:
        """Fixed numbers for a running container."""

        def stats() -> ContainerStats:
            found = self._find(container)
            limit = found.service.memory_limit
            return ContainerStats(
                1.5, 1024**2, limit, round(1024**2 / limit * 100, 2), 10, 20, 0, 0, 1
            )

        return self._checked("stats", container, stats)

    def named(self, name: str) -> FakeContainer | None:
        """Test helper: the container named ``name``, if any."""
        return next((c for c in self.by_id.values() if c.info.name == name), None)
