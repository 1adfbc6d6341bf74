"""The live routing table: rebuilt from every new Snapshot, swapped in one assignment.

:class:`LiveTable` subscribes to an :class:`~oauthproxy.interfaces.ISnapshotSource`; each
snapshot change builds a new :class:`~oauthproxy.gateway.routing.RoutingTable` off to the side
and then replaces ``current`` in a single attribute assignment, so a request sees either the
old table or the new one, never a mix, and a change is live on the very next request.  A build
that fails (a bug, not bad data: the builder tolerates unusable records) keeps the old table.
"""

from __future__ import annotations

from collections.abc import Callable

from attrs import define, field
from twisted.logger import Logger

from oauthproxy.gateway.routing import RoutingTable
from oauthproxy.interfaces import ISnapshotSource
from oauthproxy.model import Event, Snapshot

_log = Logger()


@define
class LiveTable:
    """Holds the current :class:`RoutingTable`; ``current`` is read once per request."""

    https_port: int | None = None
    current: RoutingTable = field(factory=RoutingTable)
    _unsubscribe: Callable[[], None] | None = None

    def attach(self, source: ISnapshotSource) -> None:
        """Follow ``source`` (it calls back at once with its current snapshot)."""
        self.detach()
        self._unsubscribe = source.subscribe(self.apply)

    def detach(self) -> None:
        """Stop following the snapshot source."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def apply(self, snapshot: Snapshot, event: Event | None = None) -> None:
        """Build the table for ``snapshot`` and swap it in."""
        try:
            table = RoutingTable.from_snapshot(snapshot, self.https_port)
        except Exception:
            _log.failure("routing table build failed; keeping the previous table")
            return
        self.current = table
