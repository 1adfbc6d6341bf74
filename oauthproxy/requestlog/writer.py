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

The hook itself only keeps references to what the finished request holds
(:func:`~oauthproxy.requestlog.record.finished_request`); their rows are made
``make_rows_every`` requests at a time by a
:class:`~oauthproxy.requestlog.record.RowMaker`, which decodes each repeating host,
method and path once.  In the saturated daemon that halved the hook's share of the
log's cost (``bench/run_gateway.sh``): the rows are made while what they are made
from is still in the CPU's caches, and little of it is held for long.

While the store is unavailable the records stay buffered (one batch is retried per
tick), so a short Redis outage loses nothing until the buffer fills; the outage is
logged once when it starts and once when it ends, with the numbers, never per record.
A batch the store refuses for any other reason is dropped (and counted), so one bad
record cannot block the log.

Anonymous noise (requests the gateway marked with a reason: unknown host, refused
credentials...) goes through a :class:`~oauthproxy.requestlog.noise.NoiseBudget`: a
few become records each minute, every one is counted, and the counts are flushed
with the records, so a flood of such requests costs Redis a bounded amount.

:meth:`access_log` is the hook for ``GatewaySite(..., access_log=writer.access_log)``.
"""

from __future__ import annotations

import os
import random
import secrets
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Any

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
    Finished,
    RequestRecord,
    Row,
    RowMaker,
    access_line,
    finished_request,
    notes_for,
    record_row,
)

_log = Logger()


#: correlation ids need to be unique, not secret (they are shown to operators and are
#: no credential): a generator seeded from the OS, once per process (a forked worker
#: reseeds, so workers never repeat each other), is far cheaper per request than
#: reading the OS's randomness each time
_tokens = random.Random(secrets.randbits(128))
#: tokens made ahead, ``_TOKENS_AHEAD`` at a time: one ``getrandbits`` and one ``hex``
#: for all of them costs a third of making each on its own
_ahead: list[str] = []
_TOKENS_AHEAD = 256


def _reseed() -> None:
    """In a forked child: a seed of its own, and none of the parent's tokens made ahead."""
    _tokens.seed(secrets.randbits(128))
    _ahead.clear()


os.register_at_fork(after_in_child=_reseed)


def _random_token() -> str:
    """The random part of a correlation id: 8 hex digits."""
    if not _ahead:
        digits = _tokens.getrandbits(32 * _TOKENS_AHEAD).to_bytes(4 * _TOKENS_AHEAD).hex()
        _ahead.extend(digits[i : i + 8] for i in range(0, 8 * _TOKENS_AHEAD, 8))
    return _ahead.pop()


@define(eq=False)
class RequestLogWriter(Service):
    """Buffers request-log records and writes them in batches (see the module docstring)."""

    store: IRequestLogStore
    clock: IReactorTime
    flush_interval: float = 0.25
    max_buffer: int = 10_000
    batch_size: int = 400
    #: finished requests kept before their rows are made (see the module docstring)
    make_rows_every: int = 64
    #: also emit each record as an access-log line (twisted.logger, level info)
    emit_lines: bool = False
    new_token: Callable[[], str] = _random_token
    #: records dropped because the buffer was full
    dropped: int = field(default=0, init=False)
    #: records the store accepted
    written: int = field(default=0, init=False)
    #: records lost: refused by the store, or still buffered when the service stopped
    lost: int = field(default=0, init=False)
    #: failed write attempts (each outage tick counts once)
    failures: int = field(default=0, init=False)
    #: requests whose record could not be built (a bug; logged)
    unrecordable: int = field(default=0, init=False)
    #: anonymous noise: which requests become records, and the counts of all of them
    noise: NoiseBudget = field(factory=NoiseBudget)
    #: noise requests only counted, not recorded
    counted: int = field(default=0, init=False)
    #: the records waiting, as rows (``record_row``)
    _buffer: deque[Row] = field(factory=deque, init=False)
    #: finished requests whose rows are not made yet
    _finished: list[Finished] = field(factory=list, init=False)
    _rows: RowMaker = field(init=False)
    _outage: bool = field(default=False, init=False)
    _dropped_at_outage: int = field(default=0, init=False)
    _loop: LoopingCall | None = field(default=None, init=False)
    #: one flush at a time (the timer's and the one at shutdown must not share a batch)
    _flushing: DeferredLock = field(factory=DeferredLock, init=False)

    def __attrs_post_init__(self) -> None:
        """Make rows with this writer's correlation-id tokens."""
        self._rows = RowMaker(self.new_token)

    @property
    def buffered(self) -> int:
        """Records waiting to be written."""
        return len(self._buffer) + len(self._finished)

    def stats(self) -> dict[str, int]:
        """The counters, for health and ``/logs/stats``."""
        return {
            "buffered": self.buffered,
            "dropped": self.dropped,
            "written": self.written,
            "lost": self.lost,
            "failures": self.failures,
            "unrecordable": self.unrecordable,
            "noise_counted": self.counted,
        }

    def record(self, record: RequestRecord) -> None:
        """Queue ``record`` for the next flush; drop and count it if the buffer is full."""
        self._queue(record_row(record))

    def _queue(self, row: Row) -> None:
        """Queue the record ``row``; drop and count it if the buffer is full."""
        if self.buffered >= self.max_buffer:
            self.dropped += 1
            return
        self._buffer.append(row)

    def access_log(self, request: Any) -> None:
        """The gateway's access-log hook: record the finished ``request``.

        Keeps what the record is made of; every ``make_rows_every`` requests (and at
        each flush) their rows are made together (:meth:`_make_rows`).  Noise (the
        budget needs its host now) and records also logged as access-log lines get
        their row at once.  Never raises into twisted.web: a request whose record
        cannot be built is counted and logged (that is a bug, not an expected condition).
        """
        try:
            if self.emit_lines or notes_for(request).noise is not None:
                self._access_log_now(request)
            elif self.buffered >= self.max_buffer:
                self.dropped += 1
            else:
                finished = self._finished
                finished.append(finished_request(request, self.clock.seconds()))
                if len(finished) >= self.make_rows_every:
                    self._make_rows()
        except Exception:
            self._unrecordable()

    def _access_log_now(self, request: Any) -> None:
        """Make the row of ``request`` now: noise (admitted or only counted) or a record
        also logged as an access-log line."""
        made = self._rows.rows(
            [finished_request(request, self.clock.seconds())], self._unrecordable
        )
        if not made:
            return
        row = made[0]
        reason = notes_for(request).noise
        if reason is not None and not self.noise.admit(row[ROW_TIME], reason, row[ROW_HOST]):
            self.counted += 1
            return
        self._queue(row)
        if self.emit_lines:
            _log.info("{access_line}", access_line=access_line(RequestRecord(*row)))

    def _unrecordable(self) -> None:
        """Count and log a request whose record could not be built."""
        self.unrecordable += 1
        _log.failure("could not build the request-log record of a request")

    def _make_rows(self) -> None:
        """Turn the finished requests into rows, queued after the rows already waiting."""
        finished, self._finished = self._finished, []
        self._buffer.extend(self._rows.rows(finished, self._unrecordable))

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
        self._make_rows()
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
