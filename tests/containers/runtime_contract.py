"""The container runtime contract, written once, run on the memory twin and on a real dockerd.

:class:`RuntimeContract` tests :class:`~oauthproxy.containers.runtime.IContainerRuntime`
through ``self.runtime``.  A backend provides it in ``setUp``, with an image that is
present (``self.image``), a deployment id of its own (so tests never see each other's
containers), ``produce`` (the container prints its output: a real container does so
by itself, the twin is told to) and ``sleep``.  Services run with host networking:
tests send nothing to container addresses.
"""

from __future__ import annotations

import uuid
from contextlib import suppress

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from oauthproxy.containers.runconfig import GENERATION_LABEL, SERVICE_LABEL
from oauthproxy.containers.runtime import DockerRefused, IContainerRuntime, ImageUnavailable
from oauthproxy.errors import NotFound
from oauthproxy.model import DockerService

#: a command that prints three lines and ends
THREE_LINES = ("sh", "-c", "echo one; echo two; echo three")
#: a command that prints a line every 0.2 seconds for a minute
TICKING = ("sh", "-c", "for i in $(seq 1 300); do echo tick$i; sleep 0.2; done")


class RuntimeContract(TestCase):
    """IContainerRuntime behaviour both implementations share."""

    runtime: IContainerRuntime
    image: str
    deployment: str

    def sleep(self, seconds: float) -> Deferred[None]:
        """Let time pass for the runtime."""
        raise NotImplementedError

    async def produce(self, container: str, lines: list[str]) -> None:
        """Make ``container`` print ``lines`` (a real one does by itself)."""
        raise NotImplementedError

    def service(self, command: tuple[str, ...] = ("sleep", "300"), **kw: object) -> DockerService:
        """A host-networked service with a name unique to this test."""
        name = "t" + uuid.uuid4().hex[:12]
        return DockerService(
            name=name,
            image=self.image,
            command=command,
            network_mode="host",
            memory_limit=64 * 1024**2,
            **kw,  # type: ignore[arg-type]
        )

    async def created(self, service: DockerService) -> str:
        """Create ``service``'s container (removed at cleanup); its id."""
        container = await self.runtime.create(service, self.deployment, "unused")

        async def remove() -> None:
            with suppress(NotFound):
                await self.runtime.remove(container, force=True)

        self.addCleanup(remove)
        return container

    async def eventually(self, check: object, what: str, seconds: float = 10.0) -> None:
        """Wait (bounded) until ``await check()`` is true."""
        waited = 0.0
        while not await check():  # type: ignore[operator]
            if waited >= seconds:
                self.fail(f"{what} did not happen within {seconds}s")
            await self.sleep(0.1)
            waited += 0.1

    def test_provides_the_interface(self) -> None:
        """The runtime provides every method of the interface."""
        self.assertTrue(verifyObject(IContainerRuntime, self.runtime))

    async def test_ping(self) -> None:
        """A reachable runtime answers ping."""
        await self.runtime.ping()

    async def test_present_image_is_prepared_and_missing_one_is_refused(self) -> None:
        """The present image needs nothing; a missing one fails naming /image, pull or not."""
        await self.runtime.prepare_image(self.service(), may_pull=False)
        missing = self.service()
        missing = DockerService(missing.name, "local/not-there:1")
        for may_pull in (False, True):
            with self.assertRaises(ImageUnavailable) as raised:
                await self.runtime.prepare_image(missing, may_pull=may_pull)
            self.assertEqual(raised.exception.field, "/image")
            self.assertIn("local/not-there:1", raised.exception.detail)

    async def test_created_container_carries_the_daemons_labels(self) -> None:
        """Name, deployment, service and generation labels; listed for its deployment only."""
        service = self.service()
        container = await self.created(service)
        info = await self.runtime.inspect(container)
        assert info is not None
        self.assertEqual(
            (info.name, info.service, info.deployment, info.generation, info.state),
            (service.name, service.name, self.deployment, 1, "created"),
        )
        self.assertEqual(
            [i.id for i in await self.runtime.containers(self.deployment)], [container]
        )
        self.assertEqual(await self.runtime.containers("other-" + self.deployment), [])
        self.assertEqual(await self.runtime.inspect(service.name), info)
        self.assertTrue(SERVICE_LABEL and GENERATION_LABEL)

    async def test_names_are_unique(self) -> None:
        """A second container with the same name is refused."""
        service = self.service()
        await self.created(service)
        with self.assertRaises(DockerRefused):
            await self.runtime.create(service, self.deployment, "unused")

    async def test_start_stop_restart(self) -> None:
        """start runs it, stop ends it, restart runs it again; ``started_at`` (POSIX
        seconds) is None until the first start and moves on with a restart."""
        container = await self.created(self.service())
        self.assertIsNone((await self.runtime.inspect(container)).started_at)
        await self.runtime.start(container)
        started = await self.runtime.inspect(container)
        self.assertTrue(started.running)
        self.assertIsInstance(started.started_at, float)
        await self.runtime.stop(container, 5)
        self.assertFalse((await self.runtime.inspect(container)).running)
        await self.sleep(0.01)
        await self.runtime.restart(container, 5)
        restarted = await self.runtime.inspect(container)
        self.assertTrue(restarted.running)
        self.assertGreater(restarted.started_at, started.started_at)

    async def test_a_command_that_fails_leaves_an_exited_container(self) -> None:
        """``false`` exits with 1 at once: not running, exit code 1 (no restart policy)."""
        container = await self.created(self.service(("false",), restart_policy="no"))
        await self.runtime.start(container)

        async def exited() -> bool:
            info = await self.runtime.inspect(container)
            return info is not None and not info.running and info.exit_code == 1

        await self.eventually(exited, "the container exiting with 1")

    async def test_remove_needs_force_while_running(self) -> None:
        """A running container is refused without force; removed with it; then NotFound."""
        container = await self.created(self.service())
        await self.runtime.start(container)
        with self.assertRaises(DockerRefused):
            await self.runtime.remove(container, force=False)
        await self.runtime.remove(container, force=True)
        self.assertIsNone(await self.runtime.inspect(container))
        with self.assertRaises(NotFound):
            await self.runtime.remove(container, force=True)

    async def test_rename(self) -> None:
        """A renamed container is found under its new name."""
        service = self.service()
        container = await self.created(service)
        await self.runtime.rename(container, service.name + "-previous-1")
        info = await self.runtime.inspect(service.name + "-previous-1")
        assert info is not None
        self.assertEqual(info.id, container)
        self.assertIsNone(await self.runtime.inspect(service.name))

    async def test_logs_give_the_last_lines(self) -> None:
        """``logs(tail=2)`` is the last two lines; with timestamps each starts with the time."""
        container = await self.created(self.service(THREE_LINES))
        await self.runtime.start(container)
        await self.produce(container, ["one", "two", "three"])

        async def printed() -> bool:
            return await self.runtime.logs(container, 1, False) == ["three"]

        await self.eventually(printed, "the output")
        self.assertEqual(await self.runtime.logs(container, 2, False), ["two", "three"])
        stamped = await self.runtime.logs(container, 1, True)
        self.assertTrue(stamped[0].endswith(" three"), stamped)
        self.assertRegex(stamped[0], r"^\d{4}-\d\d-\d\dT")

    async def test_follow_delivers_new_lines_until_stopped(self) -> None:
        """A follow delivers lines as they come; stop ends it."""
        container = await self.created(self.service(TICKING))
        await self.runtime.start(container)
        lines: list[str] = []
        stream = self.runtime.follow(container, 0, False, lines.append)
        await self.produce(container, ["tick1", "tick2", "tick3"])

        async def followed() -> bool:
            return len(lines) >= 3

        await self.eventually(followed, "three followed lines")
        self.assertTrue(all(line.startswith("tick") for line in lines), lines)
        stream.stop()
        await stream.done

    async def test_stats_of_a_running_container(self) -> None:
        """Stats report the memory limit the service set and at least one process."""
        service = self.service()
        container = await self.created(service)
        await self.runtime.start(container)
        stats = await self.runtime.stats(container)
        self.assertEqual(stats.memory_limit, service.memory_limit)
        self.assertGreaterEqual(stats.pids, 1)
        self.assertGreater(stats.memory_usage, 0)

    async def test_unknown_container(self) -> None:
        """inspect says None; operations say NotFound."""
        self.assertIsNone(await self.runtime.inspect("no-such-container-" + uuid.uuid4().hex))
        with self.assertRaises(NotFound):
            await self.runtime.start("no-such-container-" + uuid.uuid4().hex)
