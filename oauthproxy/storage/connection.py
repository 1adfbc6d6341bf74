"""One guarded txredisapi connection pool: every call has a deadline.

txredisapi queues commands forever while Redis is down and its own
``replyTimeout`` only starts once a command is sent, so every call made here
gets ``Deferred.addTimeout`` on the injected reactor and every failure becomes
:class:`~oauthproxy.errors.StorageUnavailable`.

Blocking reads (``XREAD BLOCK``) would stall whatever shares their connection,
so they run on a dedicated connection that is thrown away after any failure
(a cancelled read leaves the connection waiting for a reply nobody wants).

The connection is this instance's session with Redis: its :attr:`RedisConnection.visibility`
is where every store's writes wait until the instance's mirror has applied them
(read-your-writes, :mod:`oauthproxy.storage.visibility`).

While the health probe (:mod:`oauthproxy.storage.health`) finds Redis unreachable,
:attr:`RedisConnection.outage` says why and ordinary calls fail at once instead of
each waiting out the timeout; :meth:`RedisConnection.probe_call` always goes through.

Behind Redis Sentinel (:mod:`oauthproxy.storage.sentinel`) the pool follows the
master through failovers; a ``READONLY`` reply (a demoted master we are still
connected to) rebuilds the pool at once.  Writes that must survive a failover wait
for replicas (:meth:`RedisConnection.replicated`, Redis ``WAIT``): Redis replicates
asynchronously, and a write the master acknowledged but had not yet sent to a replica
is gone once that replica is promoted.
"""

from __future__ import annotations

from typing import Any

import txredisapi
from attrs import define, field
from twisted.internet import defer, task
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from oauthproxy.errors import StorageUnavailable
from oauthproxy.storage.address import RedisAddress, client_tls
from oauthproxy.storage.sentinel import sentinel_pool
from oauthproxy.storage.visibility import WriteVisibility

#: connections in the shared pool (the blocking reader has its own)
POOL_SIZE = 4

_log = Logger()


@define
class RedisConnection:
    """Lazily connected pool plus a dedicated connection for blocking reads.

    Nothing connects until the first call, and a pool that txredisapi gave up
    on (failed AUTH or SELECT, e.g. while Redis is still loading its data) is
    replaced on the next call, so the daemon can start before Redis is up and
    survive its restarts.
    """

    address: RedisAddress
    reactor: IReactorTime
    timeout: float
    #: replicas a confirmed write must have reached (Redis ``WAIT``); 0 = do not wait
    wait_replicas: int = 0
    #: the key :meth:`replicated` writes (a throwaway key with an expiry)
    wait_key: str = "oauthproxy:probe"
    #: this instance's session guarantee: writes wait until its mirror applied them
    visibility: WriteVisibility = field(factory=WriteVisibility, init=False)
    #: why the last probe found Redis unreachable; None while it answers
    outage: str | None = field(default=None, init=False)
    _pool: Any = field(default=None, init=False)
    _blocking: Any = field(default=None, init=False)
    _waiter: Any = field(default=None, init=False)
    _closing: list[Deferred[Any]] = field(factory=list, init=False)
    _closed: bool = field(default=False, init=False)

    def _connect(self, poolsize: int) -> Any:
        """Create a lazy txredisapi pool (one connection for ``poolsize=1``)."""
        a = self.address
        common: dict[str, Any] = {
            "dbid": a.db or None,
            "poolsize": poolsize,
            "password": a.password,
            "username": a.username,
            "connectTimeout": self.timeout,
            "replyTimeout": self.timeout,
            "convertNumbers": False,
        }
        if a.sentinels:
            return sentinel_pool(a, self.reactor, poolsize, self.timeout)
        if a.unix_path is not None:
            pool = txredisapi.lazyUnixConnectionPool(a.unix_path, **common)
        else:
            assert a.host is not None
            tls = client_tls(a, a.host) or False
            pool = txredisapi.lazyConnectionPool(a.host, a.port, ssl_context_factory=tls, **common)
        # txredisapi fails this Deferred when Redis refuses AUTH or SELECT.  Nobody
        # waits on it for a lazy pool, so unhandled it would be reported at garbage
        # collection, far from here; our calls report the refusal themselves.
        connected = getattr(pool, "_connected", None)
        if isinstance(connected, Deferred):
            connected.addErrback(self._refused)
        return pool

    def _refused(self, failure: Failure) -> None:
        """Log that Redis refused our connection (wrong password or database)."""
        _log.warn("Redis refused the connection: {reason}", reason=failure.getErrorMessage())

    def _discard(self, pool: Any) -> None:
        """Close a pool we stopped using, remembering the Deferred for :meth:`close`."""
        d: Deferred[Any] = maybeDeferred(pool.disconnect)
        d.addErrback(lambda f: _log.failure("closing a Redis connection failed", f))
        self._closing.append(d)

    def _guard(self, d: Deferred[Any], what: str, seconds: float) -> Deferred[Any]:
        """Give ``d`` a deadline and turn Redis failures into StorageUnavailable."""
        d.addTimeout(seconds, self.reactor)

        def translate(failure: Failure) -> Failure:
            error = failure.value
            if isinstance(error, txredisapi.ConnectionError) and str(error) == "Not connected":
                # txredisapi stopped reconnecting this pool; start afresh next time
                self._reset_pool()
            if isinstance(error, txredisapi.ResponseError) and str(error).startswith("READONLY"):
                # a master demoted by a failover still has our connections: find the new one
                _log.warn("Redis refused a write as a replica; reconnecting to the master")
                self._reset_pool()
            if isinstance(error, txredisapi.RedisError):
                raise StorageUnavailable(f"Redis {what} failed: {error}")
            if isinstance(error, defer.TimeoutError):
                raise StorageUnavailable(f"Redis did not answer {what} within {seconds:g}s")
            return failure

        return d.addErrback(translate)

    def _reset_pool(self) -> None:
        """Drop the shared pool so that the next call builds a new one."""
        if self._pool is not None and not self._closed:
            self._discard(self._pool)
            self._pool = None

    def _pool_or_fail(self, probing: bool = False) -> Any:
        """The shared pool, created on first use; fails fast during a known outage."""
        if self._closed:
            raise StorageUnavailable("the Redis connection is closed")
        if self.outage is not None and not probing:
            raise StorageUnavailable(f"Redis is unreachable ({self.outage}); retrying")
        if self._pool is None:
            self._pool = self._connect(POOL_SIZE)
        return self._pool

    def call(self, command: str, *args: object) -> Deferred[Any]:
        """Run one Redis command; its reply, or StorageUnavailable."""
        try:
            pool = self._pool_or_fail()
        except StorageUnavailable as e:
            return _failed(e)
        d = maybeDeferred(pool.execute_command, command, *args)
        return self._guard(d, command, self.timeout)

    def probe_call(self, deadline: float, command: str, *args: object) -> Deferred[Any]:
        """Run one command with its own ``deadline``, during an outage too (health probe)."""
        try:
            pool = self._pool_or_fail(probing=True)
        except StorageUnavailable as e:
            return _failed(e)
        d = maybeDeferred(pool.execute_command, command, *args)
        return self._guard(d, command, deadline)

    def eval(self, script: str, keys: list[str], args: list[object]) -> Deferred[Any]:
        """Run a Lua script (by SHA after its first use on a connection)."""
        try:
            pool = self._pool_or_fail()
        except StorageUnavailable as e:
            return _failed(e)
        d = maybeDeferred(pool.eval, script, keys, args)
        return self._guard(d, "script", self.timeout)

    def blocking_call(self, block: float, command: str, *args: object) -> Deferred[Any]:
        """Run a command that may block up to ``block`` seconds on the dedicated connection."""
        if self._closed:
            return _failed(StorageUnavailable("the Redis connection is closed"))
        if self._blocking is None:
            self._blocking = self._connect(1)
        connection = self._blocking
        d = maybeDeferred(connection.execute_command, command, *args, apply_timeout=False)

        def drop(failure: Failure) -> Failure:
            if self._blocking is connection:
                self._blocking = None
                self._discard(connection)
            return failure

        d.addErrback(drop)
        return self._guard(d, command, block + self.timeout)

    def replicated(self) -> Deferred[None]:
        """Fires once :attr:`wait_replicas` replicas hold every write made so far.

        Redis ``WAIT`` counts the replicas that acknowledged the writes of the
        connection it runs on, and the pool spreads writes over several: so the
        dedicated connection first writes :attr:`wait_key` itself, after every
        write this instance has seen confirmed (the replication stream is in
        order), then waits.  Fails with StorageUnavailable if too few replicas
        confirmed within half the call timeout: the write may not survive a failover.
        """
        wanted = self.wait_replicas
        if wanted <= 0:
            return succeed(None)
        if self._closed:
            return _failed(StorageUnavailable("the Redis connection is closed"))
        if self.outage is not None:
            return _failed(StorageUnavailable(f"Redis is unreachable ({self.outage}); retrying"))
        if self._waiter is None:
            self._waiter = self._connect(1)
        waiter = self._waiter
        wait_ms = max(1, round(self.timeout * 500))

        async def replicate() -> None:
            await waiter.execute_command("SET", self.wait_key, "1", "PX", 60000)
            count = await waiter.execute_command("WAIT", wanted, wait_ms, apply_timeout=False)
            if int(count) < wanted:
                raise StorageUnavailable(
                    f"the write reached {int(count)} of {wanted} Redis replica(s) within "
                    f"{wait_ms / 1000:g}s and may not survive a failover; check the replicas"
                )

        def drop(failure: Failure) -> Failure:
            if not isinstance(failure.value, StorageUnavailable) and self._waiter is waiter:
                self._waiter = None
                self._discard(waiter)
            return failure

        d = Deferred.fromCoroutine(replicate()).addErrback(drop)
        return self._guard(d, "WAIT", self.timeout)

    def ping(self) -> Deferred[bool]:
        """True if Redis answered PING in time; never fails."""

        async def ping() -> bool:
            try:
                return bool(await self.call("PING") == "PONG")
            except StorageUnavailable:
                return False

        return Deferred.fromCoroutine(ping())

    def close(self) -> Deferred[None]:
        """Close every connection; later calls fail with StorageUnavailable.

        Fires once the connections are closed and txredisapi delivered what it read.
        """
        if not self._closed:
            self._closed = True
            for pool in (self._pool, self._blocking, self._waiter):
                if pool is not None:
                    self._discard(pool)
            self._pool = self._blocking = self._waiter = None
        pending, self._closing = self._closing, []
        closed = gatherResults(pending) if pending else succeed(None)
        return closed.addCallback(lambda _: Deferred.fromCoroutine(self._deliveries_done()))

    async def _deliveries_done(self) -> None:
        """Let txredisapi finish handing out what it had read.

        After a bulk reply its protocol passes the rest of a read on a turn later
        (``callLater(0, dataReceived, ...)``), one reply per turn, also once the
        connection is gone: a few turns, so that a closed storage leaves nothing
        scheduled behind it (trial reports such calls; so would any other owner of the
        reactor).
        """
        for _ in range(_DELIVERY_TURNS):
            if not any(_is_delivery(call) for call in self.reactor.getDelayedCalls()):
                return
            await task.deferLater(self.reactor, 0, lambda: None)


#: reactor turns :meth:`RedisConnection.close` gives txredisapi's pending deliveries
_DELIVERY_TURNS = 1000


def _is_delivery(call: Any) -> bool:
    """Whether a delayed call is txredisapi handing a protocol the rest of a read."""
    owner = getattr(call.func, "__self__", None)
    return bool(call.active()) and isinstance(owner, txredisapi.BaseRedisProtocol)


def _failed(error: Exception) -> Deferred[Any]:
    """A Deferred that has already failed with ``error``."""
    d: Deferred[Any] = Deferred()
    d.errback(error)
    return d
