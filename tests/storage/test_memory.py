"""The store contracts run against :class:`oauthproxy.testing.MemoryStorage`."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from oauthproxy.errors import StorageUnavailable
from oauthproxy.interfaces import IStorage
from oauthproxy.model import ExternalService
from oauthproxy.testing import MemoryStorage
from tests.storage import contract


class MemoryBackend(contract.StorageBackend):
    """Provides a fresh MemoryStorage on a ``task.Clock`` to each test."""

    def setUp(self) -> None:
        """Create the storage and its clock."""
        self.clock = Clock()
        self.memory = MemoryStorage(self.clock)
        self.storage = self.memory

    def sleep(self, seconds: float) -> Deferred[None]:
        """Advance the fake clock."""
        self.clock.advance(seconds)
        return succeed(None)

    def storage_keeping(self, stream_maxlen: int) -> IStorage:
        """A second MemoryStorage on the same clock with a shorter stream."""
        return MemoryStorage(self.clock, stream_maxlen=stream_maxlen)


class MemoryProxyStoreTests(MemoryBackend, contract.ProxyStoreContract):
    """IProxyStore contract on MemoryStorage."""


class MemoryRouteStoreTests(MemoryBackend, contract.RouteStoreContract):
    """IRouteStore contract on MemoryStorage."""


class MemoryServiceStoreTests(MemoryBackend, contract.ServiceStoreContract):
    """IServiceStore contract on MemoryStorage."""


class MemoryDockerServiceStoreTests(MemoryBackend, contract.DockerServiceStoreContract):
    """IDockerServiceStore contract on MemoryStorage."""


class MemoryAuthRuleStoreTests(MemoryBackend, contract.AuthRuleStoreContract):
    """IAuthRuleStore contract on MemoryStorage."""


class MemoryCertificateStoreTests(MemoryBackend, contract.CertificateStoreContract):
    """ICertificateStore contract on MemoryStorage."""


class MemoryTokenStoreTests(MemoryBackend, contract.TokenStoreContract):
    """ITokenStore contract on MemoryStorage."""


class MemoryEventLogTests(MemoryBackend, contract.EventLogContract):
    """IEventLog contract on MemoryStorage."""


class MemoryChallengeStoreTests(MemoryBackend, contract.ChallengeStoreContract):
    """IChallengeStore contract on MemoryStorage."""


class MemoryLocksTests(MemoryBackend, contract.LocksContract):
    """ILocks contract on MemoryStorage."""


class MemoryAccountKeyStoreTests(MemoryBackend, contract.AccountKeyStoreContract):
    """IAccountKeyStore contract on MemoryStorage."""


class MemoryPingTests(MemoryBackend, contract.PingContract):
    """IStorage.ping contract on MemoryStorage."""


class MemoryOutageTests(TestCase):
    """``set_available(False)`` behaves like a Redis outage."""

    def setUp(self) -> None:
        """A MemoryStorage on a fake clock."""
        self.clock = Clock()
        self.memory = MemoryStorage(self.clock)

    def test_provides_istorage(self) -> None:
        """MemoryStorage provides IStorage."""
        self.assertTrue(IStorage.providedBy(self.memory))

    def test_calls_fail_while_unavailable(self) -> None:
        """Every call fails with StorageUnavailable while switched off; ping says False."""
        self.memory.set_available(False)
        self.failureResultOf(self.memory.proxies.list(), StorageUnavailable)
        self.failureResultOf(
            self.memory.services.create(ExternalService("s", "http://a")), StorageUnavailable
        )
        self.failureResultOf(self.memory.events.read("0-0", 5), StorageUnavailable)
        self.assertFalse(self.successResultOf(self.memory.ping()))

    def test_switching_off_fails_blocked_reads(self) -> None:
        """A read blocked waiting for events fails at once when the store goes away."""
        reading = self.memory.events.read("0-0", 30)
        self.assertNoResult(reading)
        self.memory.set_available(False)
        self.failureResultOf(reading, StorageUnavailable)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelled_read_leaves_no_timer(self) -> None:
        """Cancelling a blocked read removes its timer and its waiter."""
        reading = self.memory.events.read("0-0", 30)
        reading.cancel()
        self.failureResultOf(reading)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.memory.state.waiters, [])
