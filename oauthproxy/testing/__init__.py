"""In-memory twins of oauthproxy's own interfaces, shipped for tests.

:class:`MemoryStorage` provides :class:`~oauthproxy.interfaces.IStorage` without
Redis.  It keeps records as codec JSON (so a record that does not survive the
codec fails here as it would on Redis), publishes the same events, blocks
``events.read`` on waiters, and expires challenges and locks on an injected
clock.  :meth:`MemoryStorage.another_instance` is a second daemon on the same data
(its writes wait for its own mirror only).  ``set_available(False)`` makes every call fail with
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
from oauthproxy.storage.health import StorageState
from oauthproxy.storage.visibility import WriteVisibility
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

    def __init__(
        self,
        clock: IReactorTime,
        stream_maxlen: int = STREAM_MAXLEN,
        state: MemoryState | None = None,
    ) -> None:
        """Create empty stores sharing one :class:`MemoryState` (``state``, if given)."""
        self.state = state if state is not None else MemoryState(clock, stream_maxlen)
        #: this instance's: its writes return once its mirror applied them
        self.visibility = WriteVisibility()
        state, seen = self.state, self.visibility
        self.proxies = MemoryProxyStore(state, "proxy", Proxy, seen)
        self.routes = MemoryRouteStore(state, "route", Route, seen)
        self.certificates = MemoryCertificateStore(state, "certificate", Certificate, seen)
        self.tokens = MemoryTokenStore(state, "token", ApiToken, seen)
        self.services = MemoryServiceStore(state, "service", ExternalService, seen)
        self.docker_services = MemoryDockerServiceStore(
            state, "docker_service", DockerService, seen
        )
        self.events = MemoryEventLog(state)
        self.challenges = MemoryChallengeStore(state)
        self.locks = MemoryLocks(state)
        self.accounts = MemoryAccountKeyStore(state)
        self.auth_rules = MemoryAuthRuleStore(state, "auth_rule", AuthRule, seen)
        self.oauth = MemoryOAuthStore(state, seen)
        self.request_log = MemoryRequestLogStore(state)

    def another_instance(self) -> MemoryStorage:
        """A second daemon's view of the same store: shared data, its own read-your-writes."""
        return MemoryStorage(self.state.clock, state=self.state)

    def set_available(self, available: bool) -> None:
        """Switch the store on or off; switching off fails blocked reads at once."""
        self.state.available = available
        if not available:
            self.state.fail_waiters()

    def ping(self) -> Deferred[bool]:
        """Whether the store is switched on."""
        return succeed(self.state.available)

    def check_key(self) -> Deferred[None]:
        """Nothing is encrypted in memory: any key fits."""
        return succeed(None)

    def probe(self, deadline: float) -> Deferred[StorageState]:
        """Reads and writes work while the store is switched on."""
        if self.state.available:
            return succeed(StorageState())
        detail = "memory storage is switched off"
        return succeed(StorageState(reachable=False, writable=False, detail=detail))

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
