"""The reconciler: records and containers brought into agreement, by one daemon at a time.

:func:`findings` compares the records with Docker's containers (pure) and names
what disagrees: **orphans** (containers with this deployment's label whose
service has no record), **interrupted** operations (records not ``ready``),
**missing** containers (ready records whose container is gone), **strays** (old
containers of a ready service), and services that run though they should be
stopped.  :meth:`Reconciler.run_pass` fixes them: orphans are removed, the rest
goes to :class:`~oauthproxy.containers.lifecycle.ServiceLifecycle` (``recover`` and
``repair``, each under the service's own lock, so a live operation is never
disturbed).  Containers are listed *before* records: a container is made only
after its record is written, so one without a record in a later listing is
really an orphan.

:class:`Reconciler` is a service: the daemon holding the Redis lease
``docker:reconciler`` (TTL and fencing token, refreshed every third of the TTL)
runs a pass at once and then every ``interval`` seconds, and serves the guarded
ports (:class:`~oauthproxy.containers.guarded.GuardedPorts`), kept in step with
the snapshot.  The other daemons stand by and take over within the TTL when the
holder dies.  A pass that finds Docker unreachable logs it once and tries again
at the next pass; the first pass after Docker returns repairs what its restart
changed (container addresses, missing containers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from typing import Any

from attrs import define, field, frozen
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from oauthproxy.containers.guarded import GuardedPorts
from oauthproxy.containers.lifecycle import ServiceLifecycle
from oauthproxy.containers.runtime import ContainerInfo
from oauthproxy.errors import NotFound, OAuthProxyError, Unavailable
from oauthproxy.interfaces import ISnapshotSource
from oauthproxy.model import DockerService, Event, Snapshot

_log = Logger()
#: the lock whose holder runs passes and guarded ports
LEASE = "docker:reconciler"


@frozen
class Findings:
    """What disagrees between records and containers (names and container ids)."""

    #: (container id, container name, service label) of containers without a record
    orphans: tuple[tuple[str, str, str], ...] = ()
    #: services whose record is not ready (an operation in flight or interrupted)
    interrupted: tuple[str, ...] = ()
    #: ready services without their container
    missing: tuple[str, ...] = ()
    #: ready services with other containers of theirs lying around
    strays: tuple[str, ...] = ()
    #: ready services that should be stopped but run
    running_stopped: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The API's view."""
        return {
            "orphans": [{"id": i, "name": n, "service": s} for i, n, s in self.orphans],
            "interrupted": list(self.interrupted),
            "missing": list(self.missing),
            "strays": list(self.strays),
            "running_stopped": list(self.running_stopped),
        }


def findings(records: Iterable[DockerService], containers: Iterable[ContainerInfo]) -> Findings:
    """Compare ``records`` with this deployment's ``containers`` (pure)."""
    services = {record.name: record for record in records}
    listed = list(containers)
    orphans = tuple(
        (info.id, info.name, info.service or "")
        for info in listed
        if info.service is None or info.service not in services
    )
    interrupted, missing, strays, running_stopped = [], [], [], []
    for name, record in sorted(services.items()):
        if record.phase != "ready":
            interrupted.append(name)
            continue
        own = [info for info in listed if info.service == name]
        current = [info for info in own if info.id == record.container_id]
        if not current:
            missing.append(name)
        elif record.desired_state == "stopped" and current[0].running:
            running_stopped.append(name)
        if any(info.id != record.container_id for info in own):
            strays.append(name)
    return Findings(
        orphans, tuple(interrupted), tuple(missing), tuple(strays), tuple(running_stopped)
    )


@define
class PassReport:
    """What one pass found and what it did about it."""

    findings: Findings
    #: one line per fix, ``service: what was done``
    done: list[str] = field(factory=list)
    #: one line per fix that failed
    failed: list[str] = field(factory=list)

    def as_json(self) -> dict[str, Any]:
        """The API's view."""
        return {**self.findings.as_json(), "done": self.done, "failed": self.failed}


@define(eq=False)
class Reconciler(Service):
    """Runs reconciliation passes and the guarded ports while holding the lease."""

    lifecycle: ServiceLifecycle
    snapshots: ISnapshotSource
    ports: GuardedPorts
    clock: IReactorTime
    interval: float = 30.0
    lock_ttl: float = 30.0
    #: whether this daemon holds the lease (runs passes and guarded ports)
    active: bool = field(default=False, init=False)
    #: whether the last pass reached Docker
    docker_up: bool | None = field(default=None, init=False)
    _token: int | None = field(default=None, init=False)
    _lease_loop: LoopingCall | None = field(default=None, init=False)
    _pass_loop: LoopingCall | None = field(default=None, init=False)
    _running: defer.Deferred[Any] | None = field(default=None, init=False)
    _unsubscribe: Callable[[], None] | None = field(default=None, init=False)

    @property
    def _locks(self) -> Any:
        return self.lifecycle.storage.locks

    def startService(self) -> None:
        """Try for the lease now and every third of its TTL; follow the snapshot."""
        super().startService()  # type: ignore[no-untyped-call]
        self._lease_loop = LoopingCall(self._tend_lease)
        self._lease_loop.clock = self.clock
        self._lease_loop.start(self.lock_ttl / 3.0, now=True)
        self._unsubscribe = self.snapshots.subscribe(self._snapshot_changed)

    def stopService(self) -> defer.Deferred[None]:
        """Stop passes, close the guarded ports, release the lease."""
        super().stopService()  # type: ignore[no-untyped-call]
        if self._unsubscribe is not None:
            self._unsubscribe()
        for loop in (self._lease_loop, self._pass_loop):
            if loop is not None and loop.running:
                loop.stop()
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        """Let go (a pass in flight finishes on its own; it no longer touches the ports)."""
        await self._deactivate()

    async def _deactivate(self) -> None:
        """Stop serving guarded ports and give the lease back."""
        self.active = False
        if self._pass_loop is not None and self._pass_loop.running:
            self._pass_loop.stop()
        await self.ports.close()
        token, self._token = self._token, None
        if token is not None:
            with suppress(OAuthProxyError):  # it expires by itself
                await self._locks.release(LEASE, token)

    def _tend_lease(self) -> defer.Deferred[None]:
        """Take or keep the lease; start or stop being the active daemon accordingly."""
        return defer.Deferred.fromCoroutine(self._lease()).addErrback(
            lambda f: _log.failure("reconciler lease", f)
        )

    async def _lease(self) -> None:
        try:
            if self._token is None:
                self._token = await self._locks.acquire(LEASE, self.lock_ttl)
                if self._token is not None:
                    _log.info("this daemon now reconciles Docker services and guarded ports")
                    self.active = True
                    # guarded ports need no Docker: serve them even while it is away
                    await self.ports.apply(self.snapshots.current.docker_services.values())
                    self._pass_loop = LoopingCall(self._scheduled_pass)
                    self._pass_loop.clock = self.clock
                    self._pass_loop.start(self.interval, now=True)
            elif not await self._locks.refresh(LEASE, self._token, self.lock_ttl):
                _log.warn("lost the reconciler lease; another daemon reconciles now")
                self._token = None
                await self._deactivate()
        except OAuthProxyError as e:
            # Redis is away: the lease expires; keep serving until a refresh says it is lost
            _log.warn("reconciler lease not refreshed: {error}", error=e.detail)

    def _scheduled_pass(self) -> defer.Deferred[None]:
        """A timer pass (skipped while another is still running)."""
        if self._running is not None:
            return defer.succeed(None)
        # the failure was logged by the pass; the timer must keep going
        return self.run_pass().addCallbacks(lambda _: None, lambda _: None)

    def run_pass(self, fix: bool = True) -> defer.Deferred[PassReport]:
        """One pass: find, then (with ``fix``) repair; the report.  Unavailable without Docker."""
        d = defer.Deferred.fromCoroutine(self._pass(fix))
        if fix:
            self._running = d

            def done(result: object) -> object:
                self._running = None
                return result

            d.addBoth(done)
            d.addErrback(self._pass_failed)
        return d

    def _pass_failed(self, failure: Any) -> Any:
        """Log a failed timer pass (Docker away: once, then quietly) and pass the error on."""
        if failure.check(Unavailable):
            if self.docker_up is not False:
                _log.warn("Docker services: {error}", error=failure.value.detail)
            self.docker_up = False
        else:
            _log.failure("reconciler pass failed", failure)
        return failure

    async def _pass(self, fix: bool) -> PassReport:
        lifecycle = self.lifecycle
        deployment = await lifecycle.deployment()
        containers = await lifecycle.runtime.containers(deployment)
        records = await lifecycle.storage.docker_services.list()
        if self.docker_up is False:
            _log.info("Docker is reachable again; reconciling")
        self.docker_up = True
        report = PassReport(findings(records, containers))
        if not fix:
            return report
        found = report.findings
        for container_id, name, service in found.orphans:
            await self._fix(report, f"{service or name}: removed orphan container {name}",
                            lifecycle.runtime.remove(container_id, True))  # fmt: skip
        for name in found.interrupted:
            await self._fix(report, name, lifecycle.recover(name), prefix=True)
        for name in sorted({*found.missing, *found.strays, *found.running_stopped}):
            await self._fix(report, name, lifecycle.repair(name), prefix=True)
        for line in report.done:
            _log.info("reconciler: {line}", line=line)
        if self.active:
            await self.ports.apply(self.snapshots.current.docker_services.values())
        return report

    async def _fix(
        self, report: PassReport, what: str, work: Awaitable[Any], prefix: bool = False
    ) -> None:
        """Await one fix; note what it did (or why it failed) in ``report``."""
        try:
            result = await work
        except NotFound:
            return
        except Unavailable:
            raise
        except Exception as e:
            detail = e.detail if isinstance(e, OAuthProxyError) else repr(e)
            report.failed.append(f"{what}: {detail}")
            _log.failure("reconciler fix for {what} failed", what=what)
            return
        if prefix:
            if result:
                report.done.append(f"{what}: {result}")
        else:
            report.done.append(what)

    def _snapshot_changed(self, snapshot: Snapshot, event: Event | None) -> None:
        """Keep the guarded ports in step with the records (when this daemon serves them)."""
        if self.active and (event is None or event.kind == "docker_service"):
            self.ports.apply(snapshot.docker_services.values()).addErrback(
                lambda f: _log.failure("guarded ports", f)
            )


__all__ = ["LEASE", "Findings", "PassReport", "Reconciler", "findings"]
