"""The store contracts run against :class:`RedisStorage` on a real redis-server.

One redis-server is shared by the whole test process (``shared_redis_server``)
and flushed before each test.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from oauthproxy.interfaces import IStorage
from oauthproxy.storage.crypto import SecretBox
from oauthproxy.storage.redis import RedisStorage, connect_storage
from tests.storage import contract
from tests.support.redis import RedisServer, shared_redis_server

#: seconds any Redis call may take in these tests
TIMEOUT = 5.0


class RedisBackend(contract.StorageBackend):
    """Provides a RedisStorage on the shared, freshly flushed redis-server."""

    unix = False

    def setUp(self) -> None:
        """Flush the shared server and connect to it."""
        self.server: RedisServer = shared_redis_server()
        self.server.flush()
        self.redis: RedisStorage = connect_storage(
            self.server.address(unix=self.unix), SecretBox.generate(), TIMEOUT, reactor
        )
        self.storage = self.redis
        self.addCleanup(self.redis.close)

    def sleep(self, seconds: float) -> Deferred[None]:
        """Wait on the real reactor."""
        return deferLater(reactor, seconds, lambda: None)

    def storage_keeping(self, stream_maxlen: int) -> IStorage:
        """A second RedisStorage on the shared server, under its own key prefix."""
        storage = connect_storage(
            self.server.address(),
            SecretBox.generate(),
            TIMEOUT,
            reactor,
            key_prefix="short:",
            stream_maxlen=stream_maxlen,
        )
        self.addCleanup(storage.close)
        return storage


class RedisProxyStoreTests(RedisBackend, contract.ProxyStoreContract):
    """IProxyStore contract on Redis."""


class RedisRouteStoreTests(RedisBackend, contract.RouteStoreContract):
    """IRouteStore contract on Redis."""


class RedisServiceStoreTests(RedisBackend, contract.ServiceStoreContract):
    """IServiceStore contract on Redis."""


class RedisDockerServiceStoreTests(RedisBackend, contract.DockerServiceStoreContract):
    """IDockerServiceStore contract on Redis."""


class RedisAuthRuleStoreTests(RedisBackend, contract.AuthRuleStoreContract):
    """IAuthRuleStore contract on Redis."""


class RedisCertificateStoreTests(RedisBackend, contract.CertificateStoreContract):
    """ICertificateStore contract on Redis."""


class RedisTokenStoreTests(RedisBackend, contract.TokenStoreContract):
    """ITokenStore contract on Redis."""


class RedisEventLogTests(RedisBackend, contract.EventLogContract):
    """IEventLog contract on Redis, over the unix socket."""

    unix = True


class RedisChallengeStoreTests(RedisBackend, contract.ChallengeStoreContract):
    """IChallengeStore contract on Redis."""


class RedisLocksTests(RedisBackend, contract.LocksContract):
    """ILocks contract on Redis."""


class RedisAccountKeyStoreTests(RedisBackend, contract.AccountKeyStoreContract):
    """IAccountKeyStore contract on Redis."""


class RedisPingTests(RedisBackend, contract.PingContract):
    """IStorage.ping contract on Redis."""
