"""The runtime contract on :class:`~oauthproxy.containers.engine.DockerEngine` and a real dockerd.

One private dockerd per test process (``shared_dockerd``); every test has its own
deployment label, and its containers are removed at cleanup.  The engine's calls run
in its thread pools; the test waits on the real reactor.  Containers use host
networking and nothing is sent to them here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from oauthproxy.containers.engine import DockerEngine
from oauthproxy.containers.runtime import ImageUnavailable
from oauthproxy.errors import Unavailable
from oauthproxy.model import DockerService, ImageBuild
from tests.containers import runtime_contract
from tests.support.dockerd import shared_dockerd


def engine_for(test: TestCase, host: str, timeout: float = 30.0) -> DockerEngine:
    """An engine on ``host`` with its pools open, closed at cleanup."""
    engine = DockerEngine(reactor, host=host, timeout=timeout)
    engine.open()
    test.addCleanup(engine.close)
    return engine


class DockerEngineTests(runtime_contract.RuntimeContract):
    """IContainerRuntime contract on a real dockerd."""

    timeout = 120

    def setUp(self) -> None:
        """The shared dockerd, the busybox image, an engine and a deployment of our own."""
        self.dockerd = shared_dockerd()
        self.image = self.dockerd.busybox_image()
        self.runtime = engine_for(self, self.dockerd.url)
        self.deployment = "test-" + uuid.uuid4().hex[:12]
        label = f"oauthproxy.deployment={self.deployment}"
        self.addCleanup(self.dockerd.remove_containers, label)

    def sleep(self, seconds: float) -> Deferred[None]:
        """Wait on the real reactor."""
        return deferLater(reactor, seconds, lambda: None)

    async def produce(self, container: str, lines: list[str]) -> None:
        """A real container prints by itself."""

    async def test_dockerfile_build(self) -> None:
        """A Dockerfile under a build directory builds ``FROM`` the local image."""
        context = tempfile.mkdtemp(prefix="opbuild-")
        self.addCleanup(shutil.rmtree, context, True)
        with open(os.path.join(context, "Dockerfile"), "w") as f:
            f.write(f"FROM {self.image}\nARG GREETING\nRUN echo $GREETING > /greeting\n")
        name = "b" + uuid.uuid4().hex[:10]
        tag = f"oauthproxy-build/{name}:latest"
        service = DockerService(
            name, tag, build=ImageBuild(context, "Dockerfile", (("GREETING", "built"),)),
            command=("cat", "/greeting"), network_mode="host",
        )  # fmt: skip
        await self.runtime.prepare_image(service, may_pull=False)
        container = await self.created(service)
        await self.runtime.start(container)

        async def printed() -> bool:
            return await self.runtime.logs(container, 1, False) == ["built"]

        await self.eventually(printed, "the built image's file")

    async def test_a_failing_build_names_the_dockerfile(self) -> None:
        """A build that fails is ImageUnavailable naming /dockerfile_path."""
        context = tempfile.mkdtemp(prefix="opbuild-")
        self.addCleanup(shutil.rmtree, context, True)
        with open(os.path.join(context, "Dockerfile"), "w") as f:
            f.write(f"FROM {self.image}\nRUN false\n")
        name = "b" + uuid.uuid4().hex[:10]
        service = DockerService(
            name, f"oauthproxy-build/{name}:latest", build=ImageBuild(context, "Dockerfile")
        )
        with self.assertRaises(ImageUnavailable) as raised:
            await self.runtime.prepare_image(service, may_pull=False)
        self.assertEqual(raised.exception.field, "/dockerfile_path")

    async def test_published_ports_as_docker_records_them(self) -> None:
        """Bridge-mode ports are published with their bind address (checked, not contacted)."""
        from oauthproxy.model import ServicePort

        name = "p" + uuid.uuid4().hex[:10]
        network = "opnet-" + uuid.uuid4().hex[:8]
        await self.runtime.ensure_network(network)
        await self.runtime.ensure_network(network)  # again: it exists, nothing happens
        with self.dockerd.client() as client:
            self.addCleanup(lambda: client.networks.get(network).remove())
        ports = (
            ServicePort("web", 18123, 80, "127.0.0.1"),
            ServicePort("dns", 18124, 53, "0.0.0.0", "udp"),
        )
        service = DockerService(name, self.image, command=("sleep", "300"), ports=ports)
        container = await self.runtime.create(service, self.deployment, network)
        with self.dockerd.client() as client:
            bindings = client.api.inspect_container(container)["HostConfig"]["PortBindings"]
            self.addCleanup(lambda: self.dockerd.remove_containers(f"oauthproxy.service={name}"))
        self.assertEqual(
            bindings,
            {
                "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18123"}],
                "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "18124"}],
            },
        )

    async def test_the_security_settings_reach_docker(self) -> None:
        """no-new-privileges, an init, limits, dropped capabilities, read-only root: as asked."""
        service = self.service(cap_drop=("NET_RAW",), read_only=True, cpu_limit=0.5)
        container = await self.created(service)
        with self.dockerd.client() as client:
            host = client.api.inspect_container(container)["HostConfig"]
        self.assertEqual(host["SecurityOpt"], ["no-new-privileges"])
        self.assertTrue(host["Init"])
        self.assertFalse(host["Privileged"])
        self.assertEqual(host["Memory"], service.memory_limit)
        self.assertEqual(host["NanoCpus"], 500_000_000)
        self.assertEqual(host["CapDrop"], ["NET_RAW"])
        self.assertTrue(host["ReadonlyRootfs"])
        self.assertEqual(host["LogConfig"]["Config"]["max-size"], "10m")


class UnreachableDockerTests(TestCase):
    """No Docker at DOCKER_HOST: one sentence naming it, quickly."""

    async def test_missing_socket_is_unavailable_naming_docker_host(self) -> None:
        """A socket that does not exist: Unavailable saying where Docker was looked for."""
        directory = tempfile.mkdtemp(prefix="opd-")
        self.addCleanup(os.rmdir, directory)
        path = os.path.join(directory, "docker.sock")
        engine = engine_for(self, f"unix://{path}", timeout=5)
        with self.assertRaises(Unavailable) as raised:
            await engine.ping()
        self.assertIn(path, raised.exception.detail)
        self.assertIn("DOCKER_HOST", raised.exception.detail)
        self.assertIn("no Docker socket", raised.exception.detail)
