"""The in-memory twin of :class:`~oauthproxy.interfaces.IRequestLogStore`."""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.defer import Deferred
from zope.interface import implementer

from oauthproxy.interfaces import (
    IRequestLogStore,
)
from oauthproxy.requestlog.noise import NoiseCount, minute_of
from oauthproxy.requestlog.record import RequestRecord, Row, index_entries, utc_day
from oauthproxy.storage.events import (
    NO_EVENT_ID,
    parse_stream_id,
)
from oauthproxy.testing.memory import MemoryState


@implementer(IRequestLogStore)
class MemoryRequestLogStore:
    """:class:`~oauthproxy.interfaces.IRequestLogStore` in memory, like the Redis one.

    Records leave the indexes (and this store) once they are older than the newest
    written minus ``retention``, or when more than ``max_records`` are kept (the oldest
    first); the follow stream keeps ``stream_maxlen`` entries.
    """

    def __init__(
        self,
        state: MemoryState,
        retention: float = 86400.0,
        stream_maxlen: int = 10_000,
        max_records: int = 100_000,
    ) -> None:
        """An empty log sharing ``state`` (availability)."""
        self.state = state
        self.retention = retention
        self.stream_maxlen = stream_maxlen
        self.max_records = max_records
        self.noise_counts: dict[tuple[int, str, str], int] = {}
        self.records: dict[str, RequestRecord] = {}
        self.stream: list[tuple[int, RequestRecord]] = []
        self.stream_sequence = 0
        self.visitor_ips: dict[tuple[str, str], set[str]] = {}
        self.host_seen: dict[str, float] = {}

    def write_rows(self, rows: Sequence[Row]) -> Deferred[None]:
        """:meth:`write` of the records of ``rows``."""
        return self.write([RequestRecord(*row) for row in rows])

    def write(self, records: Sequence[RequestRecord]) -> Deferred[None]:
        """Keep ``records``, then drop what fell out of the retention window."""

        def write() -> None:
            for record in records:
                self.records[record.correlation_id] = record
                day = (record.host, utc_day(record.time))
                self.visitor_ips.setdefault(day, set()).add(record.client_ip)
                self.host_seen[record.host] = max(
                    record.time, self.host_seen.get(record.host, record.time)
                )
                self.stream_sequence += 1
                self.stream.append((self.stream_sequence, record))
            del self.stream[: max(0, len(self.stream) - self.stream_maxlen)]
            excess = len(self.records) - self.max_records
            if excess > 0:
                oldest = sorted(self.records.values(), key=lambda r: (r.time, r.correlation_id))
                for gone in oldest[:excess]:
                    del self.records[gone.correlation_id]
            if records:
                horizon = max(r.time for r in records) - self.retention
                for key, kept in list(self.records.items()):
                    if kept.time < horizon:
                        del self.records[key]
                for host, seen in list(self.host_seen.items()):
                    if seen < horizon:
                        del self.host_seen[host]

        return self.state.run(write)

    def count_noise(self, counts: Sequence[NoiseCount]) -> Deferred[None]:
        """Add ``counts`` to the noise counters."""

        def count() -> None:
            for c in counts:
                key = (c.minute, c.reason, c.host)
                self.noise_counts[key] = self.noise_counts.get(key, 0) + c.count

        return self.state.run(count)

    def noise(self, since: float, until: float) -> Deferred[list[NoiseCount]]:
        """The counters of the minutes in ``[since, until]``, oldest first."""
        start = minute_of(since)
        return self.state.run(
            lambda: [
                NoiseCount(m, r, h, n)
                for (m, r, h), n in sorted(self.noise_counts.items())
                if start <= m <= until
            ]
        )

    def get(self, correlation_id: str) -> Deferred[RequestRecord | None]:
        """The record, or None."""
        return self.state.run(lambda: self.records.get(correlation_id))

    def _matching(self, index: str, value: str, since: float, until: float) -> list[RequestRecord]:
        """Records of the index in the window, newest first (ties: larger id first)."""
        found = [
            r
            for r in self.records.values()
            if since <= r.time <= until and (index, value) in index_entries(r)
        ]
        return sorted(found, key=lambda r: (r.time, r.correlation_id), reverse=True)

    def find(
        self, index: str, value: str, since: float, until: float, offset: int, count: int
    ) -> Deferred[list[RequestRecord]]:
        """A page of the index's records in ``[since, until]``, newest first."""
        return self.state.run(
            lambda: self._matching(index, value, since, until)[offset : offset + count]
        )

    def count(self, index: str, value: str, since: float, until: float) -> Deferred[int]:
        """How many records of the index lie in the window."""
        return self.state.run(lambda: len(self._matching(index, value, since, until)))

    def hosts(self, since: float) -> Deferred[list[str]]:
        """Hosts seen at or after ``since``."""
        return self.state.run(lambda: sorted(h for h, t in self.host_seen.items() if t >= since))

    def visitors(self, host: str, days: Sequence[str]) -> Deferred[int]:
        """Exact distinct IPs (Redis estimates them with a HyperLogLog)."""

        def visitors() -> int:
            ips: set[str] = set()
            for day in days:
                ips |= self.visitor_ips.get((host, day), set())
            return len(ips)

        return self.state.run(visitors)

    def recent(self, after: str | None, count: int) -> Deferred[tuple[list[RequestRecord], str]]:
        """Stream entries after the cursor (``"<n>-0"``), or the newest ``count``."""

        def recent() -> tuple[list[RequestRecord], str]:
            if after is None:
                entries = self.stream[-count:] if count else []
            else:
                position = parse_stream_id(after)
                entries = [e for e in self.stream if (e[0], 0) > position][:count]
            cursor = f"{entries[-1][0]}-0" if entries else (after or NO_EVENT_ID)
            return [record for _, record in entries], cursor

        return self.state.run(recent)
