"""The batched request-log writer: the gateway hands records over, a timer writes them.

The data plane never waits for Redis (DESIGN.md, "The two planes"): :meth:`record` appends
to a bounded in-memory buffer and returns, and a full buffer drops the record and counts
it.  A ``LoopingCall`` on the injected clock flushes the buffer every ``flush_interval``
seconds through :meth:`IRequestLogStore.write_rows`, ``batch_size`` records per call, one
call after the other: the requests that arrive meanwhile are served between two batches,
so the reactor is never held for more than one batch's encoding (400 records: about
0.4 ms in the saturated daemon).  ``bench/run_gateway.sh`` put the p99 at c1 at +1.1 ms
over the log off with 1,000 per call and +0.4 ms with 200 while rows were encoded by
``json``; with orjson 400 kept it at +0.26 and +0.39 ms (two runs).  Each call costs
Redis and the daemon about 100 us whatever its size (the Lua write script, the
Deferreds), so 400 instead of 200 saved 0.7 us per request.  The Redis store writes a
batch as a few segments, not a key per record (:mod:`oauthproxy.storage.requestlog`).

The rows come from :class:`~oauthproxy.requestlog.finished.FinishedRequests`, which reads
each finished gateway request once, makes rows in batches and hands them to the metrics
and to :meth:`RequestLogWriter.take`; TCP relays hand over whole records (:meth:`record`).

While the store is unavailable the records stay buffered (one batch is retried per
tick), so a short Redis outage loses nothing until the buffer fills; the outage is
logged once when it starts and once when it ends, with the numbers, never per record.
A batch the store refuses for any other reason is dropped (and counted), so one bad
record cannot block the log.

Anonymous noise (requests the gateway marked with a reason: unknown host, refused
credentials...) goes through a :class:`~oauthproxy.requestlog.noise.NoiseBudget`: a
few become records each minute, every one is counted, and the counts are flushed
with the records, so a flood of such requests costs Redis a bounded amount.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from itertools import islice

from attrs import define, field
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from oauthproxy.errors import StorageUnavailable
from oauthproxy.interfaces import IRequestLogStore
from oauthproxy.requestlog.noise import NoiseBudget
from oauthproxy.requestlog.record import (
    ROW_HOST,
    ROW_TIME,
    RequestNotes,
    RequestRecord,
    Row,
    access_line,
    record_row,
)

_log = Logger()


@define(eq=False)
class RequestLogWriter(Service):
    """Buffers request-log records and writes them in batches (see the module docstring)."""

    store: IRequestLogStore
    clock: IReactorTime
    flush_interval: float = 0.25
    max_buffer: int = 10_000
    batch_size: int = 400
    #: also emit each record as an access-log line (twisted.logger, level info)
    emit_lines: bool = False
    #: records dropped because the buffer was full
    dropped: int = field(default=0, init=False)
    #: records the store accepted
    written: int = field(default=0, init=False)
    #: records lost: refused by the store, or still buffered when the service stopped
    lost: int = field(default=0, init=False)
    #: failed write attempts (each outage tick counts once)
    failures: int = field(default=0, init=False)
    #: anonymous noise: which requests become records, and the counts of all of them
    noise: NoiseBudget = field(factory=NoiseBudget)
    #: noise requests only counted, not recorded
    counted: int = field(default=0, init=False)
    #: the records waiting, as rows (``record_row``)
    _buffer: deque[Row] = field(factory=deque, init=False)
    _outage: bool = field(default=False, init=False)
    _dropped_at_outage: int = field(default=0, init=False)
    _loop: LoopingCall | None = field(default=None, init=False)
    #: one flush at a time (the timer's and the one at shutdown must not share a batch)
    _flushing: DeferredLock = field(factory=DeferredLock, init=False)

    @property
    def buffered(self) -> int:
        """Records waiting to be written."""
        return len(self._buffer)

    def stats(self) -> dict[str, int]:
        """The counters, for health and ``/logs/stats``."""
        return {
            "buffered": self.buffered,
            "dropped": self.dropped,
            "written": self.written,
            "lost": self.lost,
            "failures": self.failures,
            "noise_counted": self.counted,
        }

    def record(self, record: RequestRecord) -> None:
        """Queue ``record`` for the next flush; drop and count it if the buffer is full."""
        if len(self._buffer) >= self.max_buffer:
            self.dropped += 1
            return
        self._buffer.append(record_row(record))

    def take(self, rows: Sequence[Row], notes: Sequence[RequestNotes | None]) -> None:
        """Queue the records of finished requests (a
        :class:`~oauthproxy.requestlog.finished.RowSink`): ``notes`` are their requests'
        notes, in the same order.  Noise goes through the budget; a full buffer drops
        and counts the rest."""
        buffer, room = self._buffer, self.max_buffer - len(self._buffer)
        for row, note in zip(rows, notes, strict=True):
            reason = None if note is None else note.noise
            if reason is not None and not self.noise.admit(row[ROW_TIME], reason, row[ROW_HOST]):
                self.counted += 1
                continue
            if room <= 0:
                self.dropped += 1
                continue
            room -= 1
            buffer.append(row)
            if self.emit_lines:
                _log.info("{access_line}", access_line=access_line(RequestRecord(*row)))

    def startService(self) -> None:
        """Start flushing every ``flush_interval`` seconds."""
        super().startService()  # type: ignore[no-untyped-call]
        self._loop = LoopingCall(self.flush)
        self._loop.clock = self.clock
        self._loop.start(self.flush_interval, now=False)

    def stopService(self) -> Deferred[None]:
        """Stop the timer, then try once to write what is buffered (the rest is lost)."""
        super().stopService()  # type: ignore[no-untyped-call]
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

        async def drain() -> None:
            await self.flush()
            if self._buffer:
                self.lost += len(self._buffer)
                _log.warn(
                    "request log: {count} records not written at shutdown", count=len(self._buffer)
                )
                self._buffer.clear()

        return Deferred.fromCoroutine(drain())

    def flush(self) -> Deferred[None]:
        """Write the buffer in batches; never fails (failures are counted and logged)."""
        return self._flushing.run(lambda: Deferred.fromCoroutine(self._flush()))

    async def _flush(self) -> None:
        """The body of :meth:`flush`: noise counts, then batches until the buffer is empty
        or a write fails."""
        counts = self.noise.take()
        if counts:
            try:
                await self.store.count_noise(counts)
            except StorageUnavailable as e:
                self.noise.give_back(counts)
                self.failures += 1
                self._begin_outage(e.detail)
                return
            except Exception:
                self.failures += 1
                _log.failure("request log: the store refused the noise counts")
        # what came in while a batch was on its way waits for the next tick: one write
        # per tick, not a trickle of tiny ones behind it
        due = len(self._buffer)
        while due > 0 and self._buffer:
            batch = list(islice(self._buffer, min(due, self.batch_size)))
            due -= len(batch)
            try:
                await self.store.write_rows(batch)
            except StorageUnavailable as e:
                self.failures += 1
                self._begin_outage(e.detail)
                return  # keep the batch; retried on the next tick
            except Exception:
                self.failures += 1
                self._discard(len(batch))
                self.lost += len(batch)
                _log.failure("request log: the store refused {count} records", count=len(batch))
                continue
            self._discard(len(batch))
            self.written += len(batch)
            self._end_outage()

    def _discard(self, count: int) -> None:
        """Remove the oldest ``count`` records (the batch just handled)."""
        for _ in range(count):
            self._buffer.popleft()

    def _begin_outage(self, detail: str) -> None:
        """Log the first failure of an outage (later ones only count)."""
        if self._outage:
            return
        self._outage = True
        self._dropped_at_outage = self.dropped
        _log.warn(
            "request log: cannot write ({detail}); buffering up to {max_buffer} records",
            detail=detail,
            max_buffer=self.max_buffer,
        )

    def _end_outage(self) -> None:
        """Log the end of an outage with the records it cost."""
        if not self._outage:
            return
        self._outage = False
        _log.info(
            "request log: writing again; {dropped} records dropped during the outage",
            dropped=self.dropped - self._dropped_at_outage,
        )
