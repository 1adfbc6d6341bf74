"""Is the store usable: a probe every half second, with its own short deadline.

:class:`StorageWatch` runs :meth:`~oauthproxy.interfaces.IStorage.probe` every
``interval`` seconds: a read (``PING``) and a write (a key with an expiry), each
allowed ``deadline`` seconds, far less than the Redis timeout of ordinary calls, so
a Redis that died, froze (SIGSTOP, a stuck host) or refuses writes (out of memory)
shows in ``/health`` and ``/health/ready`` within a second or two.  The Redis store
also fails calls fast while its probe finds Redis unreachable (the admin API then
answers 503 at once instead of waiting out the timeout on every request); the probe
itself always goes through, which is how recovery is noticed.
"""

from __future__ import annotations

from collections.abc import Callable

from attrs import define, field, frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

#: seconds between probes
PROBE_INTERVAL = 0.5
#: seconds a probe's read, and then its write, may take
PROBE_DEADLINE = 1.0

_log = Logger()


@frozen
class StorageState:
    """What the last probe found."""

    #: the store answered the read
    reachable: bool = True
    #: the store took the write
    writable: bool = True
    #: why not, for people (empty when all is well)
    detail: str = ""

    @property
    def healthy(self) -> bool:
        """Reads and writes both work."""
        return self.reachable and self.writable


@define(eq=False, slots=False)
class StorageWatch(Service):
    """Probes the store on a timer; :attr:`state` is the last answer (see the module)."""

    probe: Callable[[float], Deferred[StorageState]]
    clock: IReactorTime
    interval: float = PROBE_INTERVAL
    deadline: float = PROBE_DEADLINE
    #: called with the new state whenever reachability or writability changes
    on_change: Callable[[StorageState], None] = lambda state: None
    state: StorageState = field(factory=StorageState)
    _loop: LoopingCall | None = field(default=None, init=False)

    def startService(self) -> None:
        """Probe now and every ``interval`` seconds (one probe at a time)."""
        super().startService()  # type: ignore[no-untyped-call]
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True)

    def _tick(self) -> Deferred[None]:
        """One probe; the loop waits for it (its deadline bounds it)."""
        d = self.probe(self.deadline).addCallback(self._update)
        # a probe reports, never fails; should one fail anyway, the loop must go on
        return d.addErrback(lambda failure: _log.failure("storage probe failed", failure))

    def _update(self, state: StorageState) -> None:
        """Keep the new state; log and report changes."""
        before, self.state = self.state, state
        if (before.reachable, before.writable) == (state.reachable, state.writable):
            return
        if state.healthy:
            _log.info("Redis takes reads and writes again")
        elif not state.reachable:
            _log.warn("Redis is unreachable: {detail}", detail=state.detail)
        else:
            _log.warn("Redis refuses writes: {detail}", detail=state.detail)
        self.on_change(state)

    def stopService(self) -> None:
        """Stop probing."""
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop is not None and self._loop.running:
            self._loop.stop()
