"""The IOAuthStore contract on the memory twin and on RedisOAuthStore with a real redis-server."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, deferLater

from oauthproxy.storage.crypto import SecretBox
from oauthproxy.storage.redis import connect_storage
from oauthproxy.testing import MemoryStorage
from tests.oauth import store_contract
from tests.support.redis import shared_redis_server


class MemoryOAuthStoreTests(store_contract.OAuthStoreContract):
    """The contract on the memory twin."""

    def setUp(self) -> None:
        """A MemoryStorage on a Clock."""
        self.clock = Clock()
        self.storage = MemoryStorage(self.clock)

    def sleep(self, seconds: float) -> Deferred[None]:
        """Advance the clock."""
        self.clock.advance(seconds)
        return Deferred.fromCoroutine(_nothing())


class RedisOAuthStoreTests(store_contract.OAuthStoreContract):
    """The contract on a real redis-server."""

    def setUp(self) -> None:
        """Connect to the shared, flushed redis-server."""
        server = shared_redis_server()
        server.flush()
        storage = connect_storage(server.address(), SecretBox.generate(), 5.0, reactor)
        self.storage = storage
        self.addCleanup(storage.close)

    def sleep(self, seconds: float) -> Deferred[None]:
        """Wait on the real reactor."""
        return deferLater(reactor, seconds, lambda: None)


async def _nothing() -> None:
    """An already finished coroutine."""
