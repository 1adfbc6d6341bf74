"""Creating, updating, running and deleting services on the twins, failures included."""

from __future__ import annotations

from typing import Any

from attrs import evolve
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from oauthproxy.containers.lease import service_lock
from oauthproxy.containers.runtime import DockerRefused, ImageUnavailable
from oauthproxy.errors import Conflict, InvalidInput, NotFound, Unavailable
from oauthproxy.model import DockerService, ExternalService, Proxy, Route, ServicePort
from oauthproxy.storage.codec import encode
from tests.containers.harness import Twins, web


class CreateTests(TestCase):
    """create: record, ports, image, container, start — or nothing at all."""

    def setUp(self) -> None:
        """Fresh twins."""
        self.twins = Twins()
        self.lifecycle = self.twins.lifecycle

    async def nothing_left(self, name: str = "web") -> None:
        """No record, no container, no reserved port remains of ``name``."""
        self.assertIsNone(await self.twins.storage.docker_services.get(name))
        self.assertIsNone(self.twins.runtime.named(name))
        self.assertEqual(
            [
                r
                for r in await self.twins.storage.docker_services.reservations()
                if r.service == name
            ],
            [],
        )

    async def test_create_stores_a_ready_record_with_a_running_container(self) -> None:
        """The record is ready, names its container and IP; the container runs; ports held."""
        record = await self.lifecycle.create(web("web", ServicePort("http", 14005, 80)))
        self.assertEqual((record.phase, record.generation), ("ready", 1))
        container = self.twins.runtime.named("web")
        assert container is not None
        self.assertEqual(record.container_id, container.info.id)
        self.assertEqual(container.info.state, "running")
        self.assertEqual(record.address, f"{record.ip}:80")
        self.assertEqual(await self.twins.storage.docker_services.get("web"), record)
        [held] = await self.twins.storage.docker_services.reservations()
        self.assertEqual((held.port, held.service), (14005, "web"))
        self.assertIn("oauthproxy", self.twins.runtime.networks)

    async def test_host_port_zero_gets_the_lowest_free_port(self) -> None:
        """Automatic ports skip reserved ones and ports the bind test finds in use."""
        await self.lifecycle.create(web("one", ServicePort("http", 14000, 80)))
        self.twins.busy.add(("127.0.0.1", 14001))
        record = await self.lifecycle.create(web("two", ServicePort("http", 0, 80)))
        self.assertEqual(record.ports[0].host, 14002)

    async def test_a_port_another_service_holds_is_a_conflict_naming_it(self) -> None:
        """409 naming the holder; nothing of the new service is made."""
        await self.lifecycle.create(web("one", ServicePort("http", 14000, 80, "0.0.0.0")))
        with self.assertRaises(Conflict) as raised:
            await self.lifecycle.create(web("two", ServicePort("http", 14000, 80)))
        self.assertIn("service one", raised.exception.detail)
        self.assertEqual(raised.exception.field, "/ports/0/host")
        await self.nothing_left("two")

    async def test_a_port_the_host_uses_is_refused(self) -> None:
        """The bind test refuses a port some other program holds."""
        self.twins.busy.add(("127.0.0.1", 14003))
        with self.assertRaises(InvalidInput) as raised:
            await self.lifecycle.create(web("web", ServicePort("http", 14003, 80)))
        self.assertIn("another program", raised.exception.detail)
        await self.nothing_left()

    async def test_a_container_that_exits_at_once_undoes_the_create(self) -> None:
        """A command that fails: DockerRefused saying so; no container, record or port left."""
        with self.assertRaises(DockerRefused) as raised:
            await self.lifecycle.create(
                web("web", ServicePort("http", 14000, 80), command=("false",))
            )
        self.assertIn("exited at once", raised.exception.detail)
        await self.nothing_left()

    async def test_a_missing_image_undoes_the_create(self) -> None:
        """An image that is not there (and may not be pulled): 422 /image, nothing left."""
        with self.assertRaises(ImageUnavailable):
            await self.lifecycle.create(web("web", image="local/missing:1"))
        await self.nothing_left()

    async def test_docker_unreachable_writes_nothing(self) -> None:
        """With Docker away the create is Unavailable before any record is written."""
        self.twins.runtime.available = False
        with self.assertRaises(Unavailable):
            await self.lifecycle.create(web())
        await self.nothing_left()

    async def test_rules_are_checked_first(self) -> None:
        """A service the rules refuse never reaches the store or Docker."""
        with self.assertRaises(InvalidInput):
            await self.lifecycle.create(web(name="Bad Name"))
        self.assertEqual(self.twins.runtime.calls, [])

    async def test_names_are_shared_with_external_services_and_unique(self) -> None:
        """An external service's name and an existing Docker service's name are 409."""
        await self.twins.storage.services.create(ExternalService("api", "http://x"))
        with self.assertRaises(Conflict):
            await self.lifecycle.create(web("api"))
        await self.lifecycle.create(web())
        with self.assertRaises(Conflict):
            await self.lifecycle.create(web())

    async def test_an_operation_in_flight_holds_the_service(self) -> None:
        """While another daemon holds the service's lock, a create is 409 "in progress"."""
        await self.twins.storage.locks.acquire(service_lock("web"), 30)
        with self.assertRaises(Conflict) as raised:
            await self.lifecycle.create(web())
        self.assertIn("in progress", raised.exception.detail)

    async def test_stopped_services_are_created_without_starting(self) -> None:
        """desired_state stopped: a created container, not started."""
        record = await self.lifecycle.create(web(desired_state="stopped"))
        self.assertEqual(self.twins.runtime.named("web").info.state, "created")  # type: ignore[union-attr]
        self.assertIsNone(record.ip)

    async def test_the_start_must_hold_for_the_grace_period(self) -> None:
        """With a grace period the create waits for it, then checks the container."""
        twins = Twins(start_grace=1.0)
        d = Deferred.fromCoroutine(twins.lifecycle.create(web()))
        self.assertNoResult(d)
        twins.clock.advance(1.0)
        self.assertEqual(self.successResultOf(d).phase, "ready")


class UpdateTests(TestCase):
    """update: a new container with the new configuration, or the old one back."""

    def setUp(self) -> None:
        """Twins with one running service."""
        self.twins = Twins()
        self.lifecycle = self.twins.lifecycle

    async def created(self, **changes: object) -> DockerService:
        """The service ``web`` created with ``changes``."""
        return await self.lifecycle.create(web("web", ServicePort("http", 14000, 80), **changes))

    async def test_update_recreates_the_container_with_the_change(self) -> None:
        """New environment: a new container (same name), generation 2, the old one gone."""
        old = await self.created()
        new = await self.lifecycle.update("web", lambda s: evolve(s, environment=(("A", "1"),)))
        self.assertNotEqual(new.container_id, old.container_id)
        self.assertEqual((new.generation, new.phase, new.previous), (2, "ready", None))
        self.assertEqual(len(self.twins.runtime.by_id), 1)
        container = self.twins.runtime.named("web")
        assert container is not None
        self.assertEqual(container.arguments["environment"], {"A": "1"})
        self.assertEqual(container.info.state, "running")

    async def test_a_new_container_that_fails_is_rolled_back(self) -> None:
        """The old container runs again under its name; the record is as before."""
        old = await self.created()
        with self.assertRaises(DockerRefused):
            await self.lifecycle.update("web", lambda s: evolve(s, command=("false",)))
        self.assertEqual(await self.twins.storage.docker_services.get("web"), old)
        container = self.twins.runtime.named("web")
        assert container is not None
        self.assertEqual((container.info.id, container.info.state), (old.container_id, "running"))
        self.assertEqual(len(self.twins.runtime.by_id), 1)

    async def test_moving_a_port_releases_the_old_one(self) -> None:
        """After an update only the new port is reserved."""
        await self.created()
        await self.lifecycle.update(
            "web", lambda s: evolve(s, ports=(ServicePort("http", 14001, 80),))
        )
        held = [r.port for r in await self.twins.storage.docker_services.reservations()]
        self.assertEqual(held, [14001])

    async def test_a_guarded_port_is_added_without_touching_the_container(self) -> None:
        """Docker has no part in a guarded port: the container keeps running as it was."""
        old = await self.created()
        guarded = ServicePort("admin", 14002, 80, allowed_networks=("127.0.0.0/8",))
        new = await self.lifecycle.update("web", lambda s: evolve(s, ports=(*s.ports, guarded)))
        self.assertEqual((new.container_id, new.generation), (old.container_id, 1))
        self.assertNotIn("create", [call for call, _ in self.twins.runtime.calls[-5:]])

    async def test_an_unknown_service(self) -> None:
        """NotFound naming it."""
        with self.assertRaises(NotFound):
            await self.lifecycle.update("nope", lambda s: s)


class RunStateTests(TestCase):
    """start, stop, restart, delete."""

    def setUp(self) -> None:
        """Twins with one running service."""
        self.twins = Twins()
        self.lifecycle = self.twins.lifecycle

    async def test_stop_then_start(self) -> None:
        """stop: exited and desired stopped; start: running and desired running."""
        await self.lifecycle.create(web())
        stopped = await self.lifecycle.stop("web")
        self.assertEqual(stopped.desired_state, "stopped")
        self.assertFalse(self.twins.runtime.named("web").info.running)  # type: ignore[union-attr]
        started = await self.lifecycle.start("web")
        self.assertEqual(started.desired_state, "running")
        self.assertTrue(self.twins.runtime.named("web").info.running)  # type: ignore[union-attr]

    async def test_start_makes_a_missing_container_again(self) -> None:
        """A container removed behind the daemon's back is made again by start."""
        await self.lifecycle.create(web())
        await self.lifecycle.stop("web")
        container = self.twins.runtime.named("web")
        assert container is not None
        await self.twins.runtime.remove(container.info.id, force=True)
        record = await self.lifecycle.start("web")
        self.assertNotEqual(record.container_id, container.info.id)
        self.assertTrue(self.twins.runtime.named("web").info.running)  # type: ignore[union-attr]

    async def test_restart(self) -> None:
        """restart keeps the container and its running state."""
        record = await self.lifecycle.create(web())
        again = await self.lifecycle.restart("web")
        self.assertEqual(again.container_id, record.container_id)
        self.assertIn(("restart", record.container_id), self.twins.runtime.calls)

    async def test_delete_needs_force_while_running(self) -> None:
        """409 without force; with force: container, record and ports gone."""
        await self.lifecycle.create(web("web", ServicePort("http", 14000, 80)))
        with self.assertRaises(Conflict) as raised:
            await self.lifecycle.delete("web", force=False, delete_proxies=False)
        self.assertEqual(raised.exception.field, "force")
        await self.lifecycle.delete("web", force=True, delete_proxies=False)
        self.assertIsNone(self.twins.runtime.named("web"))
        self.assertIsNone(await self.twins.storage.docker_services.get("web"))
        self.assertEqual(await self.twins.storage.docker_services.reservations(), [])

    async def test_delete_is_refused_while_a_route_targets_the_service(self) -> None:
        """Like external services: 409 naming the route."""
        await self.lifecycle.create(web())
        await self.twins.storage.routes.create(Route("r1", "/api/", "service", "web"))
        with self.assertRaises(Conflict) as raised:
            await self.lifecycle.delete("web", force=True, delete_proxies=False)
        self.assertIn("r1", raised.exception.detail)

    async def test_proxies_follow_the_service_and_go_with_it_when_asked(self) -> None:
        """A recreated container's new IP reaches the proxy; delete_proxies removes it."""
        record = await self.lifecycle.create(web())
        assert record.upstream_url is not None
        await self.twins.storage.proxies.create(Proxy("web.example", record.upstream_url))
        await self.lifecycle.add_proxy("web", "web.example")
        new = await self.lifecycle.update("web", lambda s: evolve(s, environment=(("B", "2"),)))
        self.assertNotEqual(new.ip, record.ip)
        proxy = await self.twins.storage.proxies.get("web.example")
        assert proxy is not None
        self.assertEqual(proxy.target_url, new.upstream_url)
        await self.lifecycle.delete("web", force=True, delete_proxies=True)
        self.assertIsNone(await self.twins.storage.proxies.get("web.example"))


class RecoveryTests(TestCase):
    """What the reconciler does with records an interrupted daemon left."""

    def setUp(self) -> None:
        """Twins."""
        self.twins = Twins()
        self.lifecycle = self.twins.lifecycle
        self.store = self.twins.storage.docker_services

    async def test_an_interrupted_create_is_undone(self) -> None:
        """A ``creating`` record and its half-made container are removed."""
        record = web("web", ServicePort("http", 14000, 80), phase="creating")
        await self.store.create(record)
        await self.twins.runtime.create(record, await self.lifecycle.deployment(), "oauthproxy")
        done = await self.lifecycle.recover("web")
        self.assertIn("undid", done or "")
        self.assertIsNone(await self.store.get("web"))
        self.assertIsNone(self.twins.runtime.named("web"))
        self.assertEqual(await self.store.reservations(), [])

    async def test_a_live_operation_is_left_alone(self) -> None:
        """While the service's lock is held, recover does nothing."""
        await self.store.create(web(phase="creating"))
        await self.twins.storage.locks.acquire(service_lock("web"), 30)
        self.assertIsNone(await self.lifecycle.recover("web"))
        self.assertIsNotNone(await self.store.get("web"))

    async def test_an_interrupted_delete_is_finished(self) -> None:
        """A ``deleting`` record: containers and record go."""
        record = await self.lifecycle.create(web())
        await self.store.update(evolve(record, phase="deleting"))
        await self.lifecycle.recover("web")
        self.assertIsNone(await self.store.get("web"))
        self.assertEqual(self.twins.runtime.by_id, {})

    async def test_an_interrupted_update_is_rolled_back_while_the_old_container_exists(
        self,
    ) -> None:
        """The daemon died after renaming the old container and making the new one."""
        old = await self.lifecycle.create(web("web", ServicePort("http", 14000, 80)))
        updating = evolve(old, phase="updating", generation=2, previous=encode(old),
                          environment=(("A", "1"),))  # fmt: skip
        await self.store.update(updating)
        await self.twins.runtime.rename(old.container_id or "", "web-previous-1")
        await self.twins.runtime.stop(old.container_id or "", 1)
        await self.twins.runtime.create(updating, await self.lifecycle.deployment(), "oauthproxy")
        done = await self.lifecycle.recover("web")
        self.assertIn("rolled back", done or "")
        self.assertEqual(await self.store.get("web"), old)
        container = self.twins.runtime.named("web")
        assert container is not None
        self.assertEqual((container.info.id, container.info.state), (old.container_id, "running"))
        self.assertEqual(len(self.twins.runtime.by_id), 1)

    async def test_an_interrupted_update_is_finished_once_the_old_container_is_gone(self) -> None:
        """Only the final write was missing: the new container is adopted."""
        old = await self.lifecycle.create(web())
        updating = evolve(old, phase="updating", generation=2, previous=encode(old))
        await self.store.update(updating)
        await self.twins.runtime.remove(old.container_id or "", force=True)
        new_id = await self.twins.runtime.create(
            updating, await self.lifecycle.deployment(), "oauthproxy"
        )
        await self.lifecycle.recover("web")
        record = await self.store.get("web")
        assert record is not None
        self.assertEqual(
            (record.phase, record.container_id, record.previous), ("ready", new_id, None)
        )

    async def test_repair_removes_leftover_containers(self) -> None:
        """Another container of a ready service (an old one) is removed; the current stays."""
        record = await self.lifecycle.create(web())
        await self.twins.runtime.create(
            web("web-previous-1"), await self.lifecycle.deployment(), "oauthproxy"
        )
        leftover = self.twins.runtime.named("web-previous-1")
        assert leftover is not None
        leftover.info = evolve(leftover.info, service="web")
        self.assertIn("leftover", await self.lifecycle.repair("web") or "")
        self.assertEqual(list(self.twins.runtime.by_id), [record.container_id])

    async def test_start_clears_a_leftover_holding_the_name(self) -> None:
        """The recorded container is gone but another one holds the name: start still works."""
        record = await self.lifecycle.create(web())
        await self.lifecycle.stop("web")
        await self.twins.runtime.remove(record.container_id or "", force=True)
        await self.twins.runtime.create(web(), await self.lifecycle.deployment(), "oauthproxy")
        started = await self.lifecycle.start("web")
        self.assertTrue(self.twins.runtime.named("web").info.running)  # type: ignore[union-attr]
        self.assertEqual(list(self.twins.runtime.by_id), [started.container_id])

    async def test_repair_makes_a_missing_container_and_stops_an_unwanted_one(self) -> None:
        """A gone container is made again; one that should be stopped is stopped."""
        record = await self.lifecycle.create(web())
        await self.twins.runtime.remove(record.container_id or "", force=True)
        self.assertIn("again", await self.lifecycle.repair("web") or "")
        self.assertTrue(self.twins.runtime.named("web").info.running)  # type: ignore[union-attr]
        await self.lifecycle.stop("web")
        container = self.twins.runtime.named("web")
        assert container is not None
        await self.twins.runtime.start(container.info.id)
        self.assertIn("stopped", await self.lifecycle.repair("web") or "")
        self.assertFalse(self.twins.runtime.named("web").info.running)  # type: ignore[union-attr]
        self.assertIsNone(await self.lifecycle.repair("web"))


class PortRaceTests(TestCase):
    """A create that loses its picked port to another daemon picks again."""

    async def test_a_lost_race_for_an_automatic_port_is_retried(self) -> None:
        """The store refuses the first write (another daemon took the port): a second pick."""
        twins = Twins()
        store = twins.storage.docker_services
        real_create = store.create
        refused: list[int] = []

        def racing_create(record: DockerService) -> Any:
            if not refused:
                refused.append(record.ports[0].host)
                taken = evolve(web("other"), ports=(record.ports[0],), phase="ready")
                real_create(taken)  # the other daemon wins this port
            return real_create(record)

        store.create = racing_create  # type: ignore[method-assign]
        record = await twins.lifecycle.create(web("web", ServicePort("http", 0, 80)))
        self.assertNotEqual(record.ports[0].host, refused[0])
        self.assertEqual(record.phase, "ready")

    async def test_an_explicit_port_lost_in_a_race_is_not_retried(self) -> None:
        """A port the caller named stays a 409 when another service got it first."""
        twins = Twins()
        store = twins.storage.docker_services
        real_create = store.create

        def racing_create(record: DockerService) -> Any:
            if record.name == "web":
                real_create(evolve(web("other"), ports=record.ports, phase="ready"))
            return real_create(record)

        store.create = racing_create  # type: ignore[method-assign]
        with self.assertRaises(Conflict):
            await twins.lifecycle.create(web("web", ServicePort("http", 14004, 80)))
