"""The runtime contract on :class:`oauthproxy.testing.MemoryRuntime`, and what only it has."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from oauthproxy.errors import Unavailable
from oauthproxy.testing import MemoryRuntime
from tests.containers import runtime_contract


class MemoryRuntimeTests(runtime_contract.RuntimeContract):
    """IContainerRuntime contract on the twin."""

    def setUp(self) -> None:
        """A twin with the test image present."""
        self.clock = Clock()
        self.image = "local/busybox:1"
        self.runtime = MemoryRuntime(self.clock, images={self.image})
        self.deployment = "d1"

    def sleep(self, seconds: float) -> Deferred[None]:
        """Advance the fake clock."""
        self.clock.advance(seconds)
        return succeed(None)

    async def produce(self, container: str, lines: list[str]) -> None:
        """Tell the twin the container printed ``lines``."""
        for line in lines:
            self.runtime.emit(container, line)

    async def test_switched_off_is_unavailable(self) -> None:
        """Like a stopped dockerd: every call fails with Unavailable naming DOCKER_HOST."""
        self.runtime.available = False
        with self.assertRaises(Unavailable) as raised:
            await self.runtime.ping()
        self.assertIn("DOCKER_HOST", raised.exception.detail)
