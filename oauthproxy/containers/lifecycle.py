"""Creating, changing, starting, stopping and deleting Docker services, one owner at a time.

:class:`ServiceLifecycle` is what the admin API and the reconciler call.  Every
operation holds the service's cluster lock (:mod:`~oauthproxy.containers.lease`),
passes the security rules (:class:`~oauthproxy.containers.rules.DockerRules`), and
writes the record before and after touching Docker, so that a daemon killed at any
point leaves a record whose ``phase`` says what was in flight:

- **create**: record ``creating`` (ports reserved) → image (build, find or pull) →
  container → start (it must still run ``start_grace`` seconds later) → ``ready``.
  Any failure removes the container and the record, releasing the ports.
- **update**: record ``updating`` with the new configuration and ``previous`` (old
  and new ports reserved) → old container renamed and stopped → new container
  created and started → old container removed → ``ready``.  A failure removes the
  new container, brings the old one back under its name (started if it ran) and
  restores the old record.  A change Docker has no part in (a guarded port, the
  ``internal_port``) is only written: the container keeps running.
- **delete**: record ``deleting`` → containers removed (and the proxies made for
  the service, if asked) → record deleted.

:meth:`ServiceLifecycle.recover` finishes or undoes what an interrupted operation
left (the reconciler calls it for records not ``ready`` whose lock is free).
Proxies made for a service (``proxies``) follow its address whenever it changes.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

from attrs import define, evolve, field
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from oauthproxy.containers.allocator import PortAllocator
from oauthproxy.containers.lease import Lease, holding, service_lock
from oauthproxy.containers.rules import DockerRules
from oauthproxy.containers.runconfig import container_ip, create_arguments, previous_name
from oauthproxy.containers.runtime import ContainerInfo, DockerRefused, IContainerRuntime
from oauthproxy.errors import Conflict, NotFound
from oauthproxy.interfaces import IStorage
from oauthproxy.model import DesiredState, DockerService
from oauthproxy.storage.codec import decode, encode

_log = Logger()
#: times a create tries after losing an automatically picked port to another daemon
PICK_ATTEMPTS = 20
#: route ids named in a 409 when a service is still in use
_NAMED_ROUTES = 5


def _busy(name: str) -> str:
    """The Conflict detail when another operation holds the service."""
    return f"another operation on service {name!r} is in progress; try again shortly"


@define
class ServiceLifecycle:
    """Docker services' lifecycle (see the module docstring)."""

    storage: IStorage
    runtime: IContainerRuntime
    rules: DockerRules
    clock: IReactorTime
    allocator: PortAllocator
    #: seconds the service lock outlives a daemon killed mid-operation
    lock_ttl: float = 30.0
    #: seconds ``docker stop`` waits before killing
    stop_timeout: float = 10.0
    #: seconds a started container must keep running to count as started (0: no wait)
    start_grace: float = 1.0
    #: ``randrange(n)``: how many free ports a retry passes over (spreads racing daemons)
    randrange: Callable[[int], int] = field(factory=lambda: random.SystemRandom().randrange)
    _deployment: str | None = field(default=None, init=False)

    async def deployment(self) -> str:
        """This deployment's id (the label on its containers)."""
        if self._deployment is None:
            self._deployment = await self.storage.docker_services.deployment()
        return self._deployment

    @asynccontextmanager
    async def _holding(self, name: str) -> AsyncIterator[Lease]:
        """Hold the service's lock for the block."""
        async with holding(
            self.storage.locks, service_lock(name), self.lock_ttl, self.clock, _busy(name)
        ) as lease:
            yield lease

    async def get(self, name: str) -> DockerService:
        """The stored record; NotFound naming the service."""
        service: DockerService | None = await self.storage.docker_services.get(name)
        if service is None:
            raise NotFound(f"no Docker service {name!r}", field="name")
        return service

    # -- create ---------------------------------------------------------------------

    async def create(self, service: DockerService) -> DockerService:
        """Create and (unless ``desired_state`` is stopped) start ``service``; the stored record."""
        service = self.rules.check(service)
        name = service.name
        if await self.storage.services.get(name) is not None:
            raise Conflict(
                f"an external service is named {name!r}; Docker and external services share "
                "names (routes target them by name)",
                field="/name",
            )
        async with self._holding(name) as lease:
            if await self.storage.docker_services.get(name) is not None:
                raise Conflict(f"a Docker service named {name!r} exists", field="/name")
            await self.runtime.ping()
            record = await self._store_new(service)
            try:
                record = await self._make_container(record)
                lease.check()
                record = self._touched(evolve(record, phase="ready"))
                await self.storage.docker_services.update(record)
            except BaseException:
                await self._undo_create(record)
                raise
        _log.info("Docker service {name} created ({image})", name=name, image=record.image)
        return record

    async def _store_new(self, service: DockerService) -> DockerService:
        """Assign ports and write the ``creating`` record; retries a lost port race."""
        for attempt in range(PICK_ATTEMPTS):
            skip = self.randrange(4 * attempt + 1)
            assigned = await self.allocator.assign(service, None, skip)
            record = self._touched(
                evolve(assigned, phase="creating", generation=1, container_id=None, ip=None),
                created=True,
            )
            try:
                await self.storage.docker_services.create(record)
                return record
            except Conflict as e:
                automatic = any(p.host == 0 for p in service.ports)
                if e.field != "ports" or not automatic or attempt == PICK_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _touched(self, service: DockerService, created: bool = False) -> DockerService:
        """``service`` with ``updated_at`` (and ``created_at``) now."""
        now = self.clock.seconds()
        if created:
            return evolve(service, created_at=now, updated_at=now)
        return evolve(service, updated_at=now)

    async def _make_container(self, record: DockerService) -> DockerService:
        """Image, container and (if wanted) a start that holds; the record with id and IP."""
        await self.runtime.prepare_image(record, self.rules.may_pull)
        if record.network_mode == "bridge":
            await self.runtime.ensure_network(self.rules.network)
        container = await self.runtime.create(record, await self.deployment(), self.rules.network)
        record = evolve(record, container_id=container)
        if record.desired_state == "running":
            await self._start_checked(container)
        info = await self.runtime.inspect(container)
        return evolve(record, ip=container_ip(record, info, self.rules.network))

    async def _start_checked(self, container: str) -> None:
        """Start ``container``; DockerRefused unless it still runs ``start_grace`` seconds later.

        A container its restart policy restarted meanwhile did not start either.
        """
        before = await self.runtime.inspect(container)
        await self.runtime.start(container)
        await self._check_holds(container, 0 if before is None else before.restarts)

    async def _check_holds(self, container: str, restarts: int) -> None:
        """DockerRefused unless ``container`` runs, unrestarted, after ``start_grace`` seconds."""
        if self.start_grace > 0:
            await deferLater(self.clock, self.start_grace, lambda: None)
        info = await self.runtime.inspect(container)
        if info is None or info.state != "running" or info.restarts > restarts:
            lines = await self.runtime.logs(container, 5, False) if info is not None else []
            said = f"; its last output: {' | '.join(lines)[-300:]}" if lines else ""
            code = "" if info is None or info.exit_code is None else f" with code {info.exit_code}"
            raise DockerRefused(f"the container exited at once{code}{said}")

    async def _undo_create(self, record: DockerService) -> None:
        """Remove what a failed create made; the record goes, and its ports with it."""
        try:
            await self._remove_containers(record.name)
            await self.storage.docker_services.delete(record.name)
        except Exception:
            _log.failure("undoing the create of {name} failed", name=record.name)

    async def _containers_of(self, name: str) -> list[ContainerInfo]:
        """This deployment's containers of service ``name`` (current and previous)."""
        found = await self.runtime.containers(await self.deployment())
        return [info for info in found if info.service == name]

    async def _remove_containers(self, name: str, keep: str | None = None) -> None:
        """Remove every container of service ``name`` except the one with id ``keep``."""
        for info in await self._containers_of(name):
            if info.id != keep:
                with suppress(NotFound):
                    await self.runtime.remove(info.id, force=True)

    # -- update ---------------------------------------------------------------------

    async def update(
        self, name: str, change: Callable[[DockerService], DockerService]
    ) -> DockerService:
        """Apply ``change`` to the record and recreate the container with it (same name).

        Rolled back when the new container does not start: the old one runs again.
        """
        async with self._holding(name) as lease:
            current = await self.get(name)
            self._require_ready(current)
            changed = self.rules.check(change(current))
            await self.runtime.ping()
            changed = await self.allocator.assign(changed, current)
            if await self._same_container(current, changed):
                # e.g. a guarded port or internal_port changed: Docker has nothing to redo
                record = self._touched(
                    evolve(
                        changed,
                        ip=container_ip(
                            changed, await self._current_container(changed), self.rules.network
                        ),
                    )
                )
                lease.check()
                await self.storage.docker_services.update(record)
                await self._follow_address(record)
                return record
            updating = self._touched(
                evolve(
                    changed,
                    phase="updating",
                    generation=current.generation + 1,
                    previous=encode(current),
                    container_id=current.container_id,
                    ip=current.ip,
                )
            )
            await self.storage.docker_services.update(updating)
            try:
                record = await self._replace_container(current, updating)
                lease.check()
                record = evolve(record, phase="ready", previous=None)
                await self.storage.docker_services.update(record)
            except BaseException:
                await self._roll_back(current, updating)
                raise
            await self._follow_address(record)
        _log.info("Docker service {name} updated (generation {g})", name=name, g=record.generation)
        return record

    async def _same_container(self, current: DockerService, changed: DockerService) -> bool:
        """Whether ``changed`` would make exactly ``current``'s container (no recreate needed)."""
        deployment, network = await self.deployment(), self.rules.network
        return changed.build == current.build and create_arguments(
            changed, deployment, network
        ) == create_arguments(current, deployment, network)

    def _require_ready(self, service: DockerService) -> None:
        """Conflict while an interrupted operation waits for the reconciler."""
        if service.phase != "ready":
            raise Conflict(
                f"service {service.name!r} is {service.phase}; the reconciler finishes that first"
            )

    async def _replace_container(
        self, current: DockerService, updating: DockerService
    ) -> DockerService:
        """Old container out of the way (renamed, stopped), new one made; old one removed."""
        old = await self._current_container(current)
        if old is not None:
            await self.runtime.rename(old.id, previous_name(current.name, current.generation))
            if old.running:
                await self.runtime.stop(old.id, self.stop_timeout)
        record = await self._make_container(updating)
        if old is not None:
            await self.runtime.remove(old.id, force=True)
        return record

    async def _current_container(self, service: DockerService) -> ContainerInfo | None:
        """The record's container as Docker has it now, or None."""
        if service.container_id is None:
            return None
        return await self.runtime.inspect(service.container_id)

    async def _roll_back(self, current: DockerService, updating: DockerService) -> None:
        """Undo a failed update: new container out, old one back (and started), old record."""
        try:
            await self._restore(current)
        except Exception:
            _log.failure("rolling back the update of {name} failed", name=current.name)

    async def _restore(self, current: DockerService) -> None:
        """Bring back ``current``'s container under its name and store ``current`` as ready."""
        await self._remove_containers(current.name, keep=current.container_id)
        old = await self._current_container(current)
        if old is not None:
            if old.name != current.name:
                await self.runtime.rename(old.id, current.name)
            if current.desired_state == "running" and not old.running:
                await self.runtime.start(old.id)
            await self.storage.docker_services.update(evolve(current, phase="ready", previous=None))
        else:
            # the old container is gone too: make it again from the old record
            record = await self._make_container(evolve(current, phase="ready", previous=None))
            await self.storage.docker_services.update(record)

    # -- start, stop, restart ---------------------------------------------------------

    async def start(self, name: str) -> DockerService:
        """Start the service (its container is made again if it is gone)."""
        return await self._run_state(name, "running", restart=False)

    async def restart(self, name: str) -> DockerService:
        """Restart the service's container (start it if it was stopped)."""
        return await self._run_state(name, "running", restart=True)

    async def stop(self, name: str) -> DockerService:
        """Stop the service's container; it stays stopped until started."""
        return await self._run_state(name, "stopped", restart=False)

    async def _run_state(self, name: str, desired: DesiredState, restart: bool) -> DockerService:
        """Bring the container to ``desired`` and record it."""
        async with self._holding(name) as lease:
            current = await self.get(name)
            self._require_ready(current)
            record = evolve(current, desired_state=desired)
            info = await self._current_container(current)
            if info is None:
                if desired == "running":
                    await self._remove_containers(name)  # a leftover would hold the name
                    record = await self._make_container(record)
            elif desired == "stopped":
                if info.running:
                    await self.runtime.stop(info.id, self.stop_timeout)
            elif restart and info.running:
                await self.runtime.restart(info.id, self.stop_timeout)
                await self._check_holds(info.id, info.restarts)
            elif not info.running:
                await self._start_checked(info.id)
            info = await self._current_container(record)
            record = self._touched(
                evolve(record, ip=container_ip(record, info, self.rules.network))
            )
            lease.check()
            await self.storage.docker_services.update(record)
            await self._follow_address(record)
        return record

    # -- delete ---------------------------------------------------------------------

    async def delete(self, name: str, force: bool, delete_proxies: bool) -> None:
        """Remove the service's containers and record (running ones only with ``force``)."""
        async with self._holding(name):
            current = await self.get(name)
            users = [
                route.route_id
                for route in await self.storage.routes.list()
                if route.target_type == "service" and route.target_value == name
            ]
            if users:
                shown = ", ".join(users[:_NAMED_ROUTES]) + (" ..." if len(users) > 5 else "")
                raise Conflict(
                    f"service {name!r} is the target of route(s) {shown}; change or delete them "
                    "first",
                    field="name",
                )
            info = await self._current_container(current)
            if info is not None and info.running and not force:
                raise Conflict(
                    f"service {name!r} is running; stop it first or delete with force",
                    field="force",
                )
            await self.storage.docker_services.update(
                self._touched(evolve(current, phase="deleting"))
            )
            await self._finish_delete(current, delete_proxies)
        _log.info("Docker service {name} deleted", name=name)

    async def _finish_delete(self, service: DockerService, delete_proxies: bool) -> None:
        """Containers, then (if asked) proxies, then the record."""
        await self._remove_containers(service.name)
        if delete_proxies:
            for hostname in service.proxies:
                with suppress(NotFound):
                    await self.storage.proxies.delete(hostname)
        with suppress(NotFound):
            await self.storage.docker_services.delete(service.name)

    # -- proxies --------------------------------------------------------------------

    async def add_proxy(self, name: str, hostname: str) -> DockerService:
        """Remember that the proxy ``hostname`` was made for the service."""
        async with self._holding(name):
            current = await self.get(name)
            if hostname in current.proxies:
                return current
            record = self._touched(evolve(current, proxies=(*current.proxies, hostname)))
            await self.storage.docker_services.update(record)
            return record

    async def _follow_address(self, service: DockerService) -> None:
        """Point the proxies made for ``service`` at its address (when it has one)."""
        target = service.upstream_url
        if target is None:
            return
        for hostname in service.proxies:
            proxy = await self.storage.proxies.get(hostname)
            if proxy is not None and proxy.target_url != target:
                await self.storage.proxies.update(
                    evolve(proxy, target_url=target, updated_at=self.clock.seconds())
                )

    # -- recovery (the reconciler) ----------------------------------------------------

    async def recover(self, name: str) -> str | None:
        """Finish or undo the operation an interrupted daemon left on ``name``; what was done.

        None when there was nothing to do (the record is ready, gone, or locked by a
        live operation, which then finishes by itself).
        """
        try:
            async with self._holding(name):
                service = await self.storage.docker_services.get(name)
                if service is None or service.phase == "ready":
                    return None
                if service.phase == "creating":
                    await self._remove_containers(name)
                    await self.storage.docker_services.delete(name)
                    return "undid an interrupted create"
                if service.phase == "deleting":
                    await self._finish_delete(service, delete_proxies=False)
                    return "finished an interrupted delete"
                return await self._recover_update(service)
        except Conflict as e:
            if e.detail == _busy(name):
                return None
            raise

    async def _recover_update(self, updating: DockerService) -> str:
        """Roll an interrupted update back while the old container exists, else forward."""
        if updating.previous is None:
            await self.storage.docker_services.update(evolve(updating, phase="ready"))
            return "marked an update without a previous record ready"
        current = decode(DockerService, updating.previous)
        if await self._current_container(current) is not None:
            await self._restore(current)
            return "rolled back an interrupted update"
        newer = [c for c in await self._containers_of(updating.name) if c.name == updating.name]
        record = evolve(updating, phase="ready", previous=None)
        if newer:
            info = newer[0]
            record = evolve(
                record, container_id=info.id, ip=container_ip(record, info, self.rules.network)
            )
        else:
            record = await self._make_container(record)
        await self.storage.docker_services.update(record)
        await self._follow_address(record)
        return "finished an interrupted update"

    async def repair(self, name: str) -> str | None:
        """Make the container of a ready record agree with it; what was done, or None.

        Leftover containers of the service go; a container that is gone is made again;
        a stopped one that should run is left to its restart policy, but one that should
        be stopped is stopped; the IP and the proxies follow a container that moved
        (Docker restarted).
        """
        try:
            async with self._holding(name) as lease:
                service = await self.storage.docker_services.get(name)
                if service is None or service.phase != "ready":
                    return None
                info = await self._current_container(service)
                done = None
                record = service
                strays = [
                    c for c in await self._containers_of(name) if c.id != service.container_id
                ]
                if strays:
                    await self._remove_containers(name, keep=service.container_id)
                    done = f"removed {len(strays)} leftover container(s)"
                if info is None:
                    record = await self._make_container(evolve(service, container_id=None))
                    done = "made its missing container again"
                elif service.desired_state == "stopped" and info.running:
                    await self.runtime.stop(info.id, self.stop_timeout)
                    done = "stopped a container that should not run"
                ip = container_ip(record, await self._current_container(record), self.rules.network)
                if ip != record.ip:
                    record = evolve(record, ip=ip)
                    done = done or f"noted its container's address {ip}"
                if record != service:
                    lease.check()
                    await self.storage.docker_services.update(self._touched(record))
                    await self._follow_address(record)
                return done
        except Conflict as e:
            if e.detail == _busy(name):
                return None
            raise
