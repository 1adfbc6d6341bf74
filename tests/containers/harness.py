"""Docker services on the in-memory twins: storage, runtime and a fake clock.

:class:`Twins` builds what the composition root builds (rules, allocator,
lifecycle) over :class:`~oauthproxy.testing.MemoryStorage` and
:class:`~oauthproxy.testing.MemoryRuntime`; its bind test is a set of ports the
"host" uses (:attr:`Twins.busy`).  Everything answers at once, so ``async`` tests
need no reactor.
"""

from __future__ import annotations

from attrs import evolve
from twisted.internet.task import Clock

from oauthproxy.containers.allocator import PortAllocator
from oauthproxy.containers.lifecycle import ServiceLifecycle
from oauthproxy.containers.policy import PortPolicy
from oauthproxy.containers.rules import DockerRules
from oauthproxy.model import DockerService, ServicePort
from oauthproxy.testing import MemoryRuntime, MemoryStorage

IMAGE = "local/busybox:1"


class Twins:
    """Storage, runtime, rules and lifecycle in memory."""

    def __init__(
        self, start_grace: float = 0.0, clock: Clock | None = None, **rules: object
    ) -> None:
        self.clock = clock or Clock()
        self.clock.advance(1_000_000)
        self.storage = MemoryStorage(self.clock)
        self.runtime = MemoryRuntime(self.clock, images={IMAGE})
        self.busy: set[tuple[str, int]] = set()
        settings: dict[str, object] = {
            "host_network": True,
            "ports": PortPolicy(ranges=((14000, 14010),)),
            **rules,
        }
        self.rules = DockerRules(**settings)  # type: ignore[arg-type]
        self.allocator = PortAllocator(self.storage.docker_services, self.rules.ports, self.probe)
        self.lifecycle = ServiceLifecycle(
            self.storage,
            self.runtime,
            self.rules,
            self.clock,
            self.allocator,
            lock_ttl=30.0,
            start_grace=start_grace,
        )

    def probe(self, bind: str, port: int, protocol: str) -> str | None:
        """The bind test: ports in :attr:`busy` are used by another program."""
        return "another program on this host uses it" if (bind, port) in self.busy else None


def web(name: str = "web", *ports: ServicePort, **changes: object) -> DockerService:
    """A bridge-networked service of the test image."""
    service = DockerService(name, IMAGE, command=("httpd", "-f"), internal_port=80, ports=ports)
    return evolve(service, **changes) if changes else service
