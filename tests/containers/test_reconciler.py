"""The reconciler: findings (pure), passes on the twins, the lease, guarded ports."""

from __future__ import annotations

from typing import Any

from attrs import evolve
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase

from oauthproxy.config import Config
from oauthproxy.containers.guarded import GuardedPorts
from oauthproxy.containers.reconciler import LEASE, Reconciler, findings
from oauthproxy.containers.runtime import ContainerInfo
from oauthproxy.errors import Unavailable
from oauthproxy.gateway.forward import Forwarder
from oauthproxy.model import DockerService, Snapshot
from tests.containers.harness import Twins, web


class StandIn:
    """An ISnapshotSource the test sets (what the mirror does in the daemon)."""

    def __init__(self) -> None:
        self.current = Snapshot()
        self.connected = True
        self.listeners: list[Any] = []

    def subscribe(self, listener: Any) -> Any:
        """Remember the listener; call it once now."""
        self.listeners.append(listener)
        listener(self.current, None)
        return lambda: self.listeners.remove(listener)


def info(id: str, service: str | None, state: str = "running") -> ContainerInfo:
    """A container of deployment d."""
    return ContainerInfo(id, service or id, state, service=service, deployment="d")


class FindingsTests(TestCase):
    """What disagrees between records and containers."""

    def test_each_kind_of_disagreement(self) -> None:
        """Orphans, interrupted operations, missing containers, strays, unwanted runs."""
        records = [
            DockerService("ok", "i:1", phase="ready", container_id="c-ok"),
            DockerService("busy", "i:1", phase="creating"),
            DockerService("gone", "i:1", phase="ready", container_id="c-gone"),
            DockerService("stray", "i:1", phase="ready", container_id="c-s1"),
            DockerService(
                "off", "i:1", phase="ready", container_id="c-off", desired_state="stopped"
            ),
        ]
        containers = [
            info("c-ok", "ok"),
            info("c-orphan", "deleted-long-ago"),
            info("c-s1", "stray"),
            info("c-s0", "stray", "exited"),
            info("c-off", "off"),
        ]
        found = findings(records, containers)
        self.assertEqual(found.orphans, (("c-orphan", "deleted-long-ago", "deleted-long-ago"),))
        self.assertEqual(found.interrupted, ("busy",))
        self.assertEqual(found.missing, ("gone",))
        self.assertEqual(found.strays, ("stray",))
        self.assertEqual(found.running_stopped, ("off",))

    def test_agreement_finds_nothing(self) -> None:
        """Records and containers that agree give empty findings."""
        found = findings(
            [DockerService("a", "i:1", phase="ready", container_id="c")], [info("c", "a")]
        )
        self.assertEqual(found.as_json()["orphans"], [])
        self.assertFalse(any(found.as_json().values()))


class ReconcilerTests(TestCase):
    """Passes on the twins, one daemon at a time."""

    def setUp(self) -> None:
        """Twins on a memory reactor (guarded listeners are recorded, not bound)."""
        self.reactor = MemoryReactorClock()
        self.twins = Twins(clock=self.reactor)
        self.snapshots = StandIn()

    def reconciler(self) -> Reconciler:
        """A reconciler over the twins (not started)."""
        ports = GuardedPorts(self.reactor, Config(), Forwarder(self.reactor))
        return Reconciler(
            self.twins.lifecycle, self.snapshots, ports, self.reactor, interval=5, lock_ttl=15
        )

    async def test_a_pass_removes_orphans_and_repairs_services(self) -> None:
        """An orphan container goes; a missing container is made; an interrupted create undone."""
        lifecycle = self.twins.lifecycle
        deployment = await lifecycle.deployment()
        kept = await lifecycle.create(web("kept"))
        lost = await lifecycle.create(web("lost"))
        await self.twins.runtime.remove(lost.container_id or "", force=True)
        await self.twins.runtime.create(web("orphan"), deployment, "oauthproxy")
        await self.twins.storage.docker_services.create(web("half", phase="creating"))
        await self.twins.runtime.create(web("half"), deployment, "oauthproxy")
        other = await self.twins.runtime.create(web("theirs"), "another-deployment", "oauthproxy")
        report = await self.reconciler().run_pass()
        self.assertEqual([name for _, name, _ in report.findings.orphans], ["orphan"])
        self.assertEqual(report.findings.missing, ("lost",))
        self.assertEqual(report.failed, [])
        self.assertIsNone(self.twins.runtime.named("orphan"))
        self.assertIsNotNone(self.twins.runtime.named("lost"))
        self.assertIsNone(self.twins.runtime.named("half"))
        self.assertIsNone(await self.twins.storage.docker_services.get("half"))
        self.assertIn(other, self.twins.runtime.by_id, "another deployment's container stays")
        self.assertEqual(self.twins.runtime.named("kept").info.id, kept.container_id)  # type: ignore[union-attr]
        self.assertEqual(len(report.done), 3, report.done)

    async def test_a_dry_run_changes_nothing(self) -> None:
        """run_pass(fix=False) reports the orphan and leaves it."""
        deployment = await self.twins.lifecycle.deployment()
        await self.twins.runtime.create(web("orphan"), deployment, "oauthproxy")
        report = await self.reconciler().run_pass(fix=False)
        self.assertEqual(len(report.findings.orphans), 1)
        self.assertEqual(report.done, [])
        self.assertIsNotNone(self.twins.runtime.named("orphan"))

    async def test_docker_away_fails_the_pass_with_unavailable(self) -> None:
        """A pass without Docker is Unavailable (the API says 503); the next one works again."""
        reconciler = self.reconciler()
        self.twins.runtime.available = False
        with self.assertRaises(Unavailable):
            await reconciler.run_pass()
        self.assertIs(reconciler.docker_up, False)
        self.twins.runtime.available = True
        await reconciler.run_pass()
        self.assertIs(reconciler.docker_up, True)

    def test_one_daemon_holds_the_lease_the_other_takes_over(self) -> None:
        """Two reconcilers on one store: one active; when it stops, the other takes over."""
        first, second = self.reconciler(), self.reconciler()
        first.startService()
        second.startService()
        self.assertEqual((first.active, second.active), (True, False))
        self.successResultOf(first.stopService())
        self.reactor.advance(5)
        self.assertTrue(second.active)
        self.successResultOf(second.stopService())
        self.assertIsNone(self.successResultOf(self.twins.storage.locks.acquire(LEASE, 1)) and None)

    def test_a_dead_holders_lease_expires(self) -> None:
        """A holder that stops refreshing (killed) loses the lease after its TTL."""
        self.successResultOf(self.twins.storage.locks.acquire(LEASE, 15))
        reconciler = self.reconciler()
        reconciler.startService()
        self.assertFalse(reconciler.active)
        self.reactor.advance(16)
        self.assertTrue(reconciler.active)
        self.successResultOf(reconciler.stopService())

    def test_the_active_daemon_serves_the_guarded_ports(self) -> None:
        """Guarded ports of the snapshot are listened on by the lease holder only,
        also while Docker is away (they relay to an address, Docker is not asked)."""
        from oauthproxy.model import ServicePort

        guarded = ServicePort("admin", 14009, 80, allowed_networks=("127.0.0.0/8",))
        service = evolve(web("web", guarded), phase="ready", ip="10.0.0.5")
        self.snapshots.current = Snapshot(docker_services={"web": service})
        self.twins.runtime.available = False
        reconciler = self.reconciler()
        reconciler.startService()
        self.assertEqual([server[0] for server in self.reactor.tcpServers], [14009])
        self.assertEqual([p.target_ip for p in reconciler.ports.listening], ["10.0.0.5"])
        self.successResultOf(reconciler.stopService())
        self.assertEqual(reconciler.ports.listening, [])
