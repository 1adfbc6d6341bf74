"""Keep the cyclic garbage collector's full collections off the request path.

A started daemon holds about 120,000 long-lived objects (Twisted, the admin API, the
snapshot of the configuration).  Requests create reference cycles (request, channel,
Deferreds) that only the cyclic collector frees, and the in-flight ones that survive a
young collection are promoted, so under load CPython ran a full collection about once a
second, each one walking every object of the heap: 50-100 ms with the reactor stopped,
which was the gateway's p99 at 50 connections (``bench/run_gateway.sh``).

:class:`FrozenHeap` moves what exists once the daemon has started into the permanent
generation (``gc.freeze()``), so full collections only walk what was made since: a
few milliseconds.  Garbage frozen by accident (cycles of requests in flight at that
moment) would never be freed, so every ``refreeze`` seconds the heap is thawed,
collected once and frozen again: one full pause an hour instead of one a second.
"""

from __future__ import annotations

import gc

from attrs import define, field
from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime


@define(eq=False)
class FrozenHeap(Service):
    """Freezes the heap ``delay`` seconds after start, then every ``refreeze`` seconds."""

    clock: IReactorTime
    #: seconds after start: the snapshot is loaded and the listeners are up by then
    delay: float = 5.0
    refreeze: float = 3600.0
    #: how many times the heap was frozen (health, tests)
    freezes: int = field(default=0, init=False)
    _call: IDelayedCall | None = field(default=None, init=False)

    def startService(self) -> None:
        """Schedule the first freeze."""
        super().startService()  # type: ignore[no-untyped-call]
        self._call = self.clock.callLater(self.delay, self.freeze)

    def stopService(self) -> None:
        """No timer outlives the service; the heap is thawed (a restarted service refreezes)."""
        super().stopService()  # type: ignore[no-untyped-call]
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()
        gc.unfreeze()

    def freeze(self) -> None:
        """Collect what is garbage now, freeze the rest, and schedule the next time."""
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.freezes += 1
        self._call = self.clock.callLater(self.refreeze, self.freeze)
