"""In-memory twins of oauthproxy's own interfaces, shipped for tests.

:class:`MemoryStorage` provides :class:`~oauthproxy.interfaces.IStorage` without
Redis.  It keeps records as codec JSON (so a record that does not survive the
codec fails here as it would on Redis), publishes the same events, blocks
``events.read`` on waiters, and expires challenges and locks on an injected
clock.  ``set_available(False)`` makes every call fail with
``StorageUnavailable``, as a Redis outage would, so the behaviour of callers
under failure can be tested with a ``task.Clock``.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from oauthproxy.interfaces import IStorage
from oauthproxy.model import (
    ApiToken,
    AuthRule,
    Certificate,
    DockerService,
    ExternalService,
    Proxy,
    Route,
)
from oauthproxy.storage.events import STREAM_MAXLEN
from oauthproxy.testing.containers import MemoryDockerServiceStore, MemoryRuntime
from oauthproxy.testing.memory import (
    MemoryAccountKeyStore,
    MemoryAuthRuleStore,
    MemoryCertificateStore,
    MemoryChallengeStore,
    MemoryEventLog,
    MemoryLocks,
    MemoryProxyStore,
    MemoryRecordStore,
    MemoryRouteStore,
    MemoryServiceStore,
    MemoryState,
    MemoryTokenStore,
)
from oauthproxy.testing.oauth import MemoryOAuthStore
from oauthproxy.testing.requestlog import MemoryRequestLogStore


@implementer(IStorage)
class MemoryStorage:
    """:class:`~oauthproxy.interfaces.IStorage` in memory, timed by ``clock``."""

    def __init__(self, clock: IReactorTime, stream_maxlen: int = STREAM_MAXLEN) -> None:
        """Create empty stores sharing one :class:`MemoryState`."""
        self.state = MemoryState(clock, stream_maxlen)
        self.proxies = MemoryProxyStore(self.state, "proxy", Proxy)
        self.routes = MemoryRouteStore(self.state, "route", Route)
        self.certificates = MemoryCertificateStore(self.state, "certificate", Certificate)
        self.tokens = MemoryTokenStore(self.state, "token", ApiToken)
        self.services = MemoryServiceStore(self.state, "service", ExternalService)
        self.docker_services = MemoryDockerServiceStore(self.state, "docker_service", DockerService)
        self.events = MemoryEventLog(self.state)
        self.challenges = MemoryChallengeStore(self.state)
        self.locks = MemoryLocks(self.state)
        self.accounts = MemoryAccountKeyStore(self.state)
        self.auth_rules = MemoryAuthRuleStore(self.state, "auth_rule", AuthRule)
        self.oauth = MemoryOAuthStore(self.state)
        self.request_log = MemoryRequestLogStore(self.state)

    def set_available(self, available: bool) -> None:
        """Switch the store on or off; switching off fails blocked reads at once."""
        self.state.available = available
        if not available:
            self.state.fail_waiters()

    def ping(self) -> Deferred[bool]:
        """Whether the store is switched on."""
        return succeed(self.state.available)

    def close(self) -> Deferred[None]:
        """Nothing to close; for symmetry with RedisStorage."""
        return succeed(None)


__all__ = [
    "MemoryAccountKeyStore",
    "MemoryAuthRuleStore",
    "MemoryCertificateStore",
    "MemoryChallengeStore",
    "MemoryDockerServiceStore",
    "MemoryEventLog",
    "MemoryLocks",
    "MemoryOAuthStore",
    "MemoryProxyStore",
    "MemoryRecordStore",
    "MemoryRequestLogStore",
    "MemoryRouteStore",
    "MemoryRuntime",
    "MemoryServiceStore",
    "MemoryState",
    "MemoryStorage",
    "MemoryTokenStore",
]
