"""Cluster locks held for the length of an operation: one owner per Docker service.

Every operation that changes a service (create, update, start, stop, delete, a
reconciler fix) runs inside :func:`holding` the lock ``docker:service:<name>``
(:class:`~oauthproxy.interfaces.ILocks`: TTL and fencing token, like ACME orders).
The lock is refreshed every third of its TTL while the operation runs; a daemon
killed mid-operation loses it after the TTL, and the reconciler then finds the
record's ``phase`` and finishes or undoes what was left.  A lock refresh that
finds the lock gone marks the lease ``lost``; the operation checks that before its
final write (:meth:`Lease.check`), so it never overwrites a reconciler's repair.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from attrs import define
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from oauthproxy.errors import Conflict
from oauthproxy.interfaces import ILocks

_log = Logger()


def service_lock(name: str) -> str:
    """The lock of Docker service ``name``."""
    return f"docker:service:{name}"


@define
class Lease:
    """A held lock: its name and fencing token, and whether a refresh found it lost."""

    name: str
    token: int
    lost: bool = False

    def check(self) -> None:
        """Raise Conflict if the lock was lost (another daemon may be repairing the service)."""
        if self.lost:
            raise Conflict(
                f"the lock {self.name} expired during the operation; the reconciler finishes it"
            )


@asynccontextmanager
async def holding(
    locks: ILocks, name: str, ttl: float, clock: IReactorTime, busy: str
) -> AsyncIterator[Lease]:
    """Hold lock ``name`` for the block; Conflict with ``busy`` when another holder has it."""
    token = await locks.acquire(name, ttl)
    if token is None:
        raise Conflict(busy)
    lease = Lease(name, token)

    def refreshed(held: bool) -> None:
        if not held:
            lease.lost = True

    def failed(failure: Failure) -> None:
        _log.failure("cannot refresh lock {lock}", failure, lock=name)

    def refresh() -> object:
        return locks.refresh(name, token, ttl).addCallbacks(refreshed, failed)

    refresher = LoopingCall(refresh)
    refresher.clock = clock
    refresher.start(ttl / 3.0, now=False)
    try:
        yield lease
    finally:
        if refresher.running:
            refresher.stop()
        try:
            await locks.release(name, token)
        except Exception:
            # the lock expires by itself; the operation's own outcome matters more
            _log.failure("cannot release lock {lock}", lock=name)
