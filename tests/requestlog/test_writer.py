"""RequestLogWriter: buffered, batched, timer-driven writes that never block a request."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from oauthproxy.errors import StorageUnavailable
from oauthproxy.interfaces import IRequestLogStore
from oauthproxy.requestlog.finished import FinishedRequests
from oauthproxy.requestlog.noise import NoiseBudget
from oauthproxy.requestlog.record import RequestRecord, Row, notes_for, record_row
from oauthproxy.requestlog.writer import RequestLogWriter
from oauthproxy.testing import MemoryRequestLogStore, MemoryStorage
from tests.requestlog.samples import T0, finish_request, sample


@define
class WatchedStore:
    """The memory request log, with every ``write`` batch seen and optionally held or failed."""

    inner: MemoryRequestLogStore
    batches: list[list[RequestRecord]] = field(factory=list)
    #: when set, write fails with this error
    error: Exception | None = None
    #: when set, write returns this (unfired) Deferred instead of writing
    pending: Deferred[None] | None = None

    def __getattr__(self, name: str) -> Any:
        """Everything but ``write`` and ``write_rows`` goes to the memory store."""
        return getattr(self.inner, name)

    def write(self, records: Sequence[RequestRecord]) -> Deferred[None]:
        """Record the batch, then fail, hang or write as the test asked."""
        self.batches.append(list(records))
        if self.error is not None:
            return fail(self.error)
        if self.pending is not None:
            return self.pending
        return self.inner.write(records)

    def write_rows(self, rows: Sequence[Row]) -> Deferred[None]:
        """:meth:`write` of the records of ``rows`` (what the writer calls)."""
        return self.write([RequestRecord(*row) for row in rows])


class WriterTests(SynchronousTestCase):
    """Batching, bounded buffer, outages and shutdown."""

    def setUp(self) -> None:
        """A memory store behind a watched wrapper, a Clock, and captured log events."""
        self.clock = Clock()
        self.clock.advance(T0)
        self.storage = MemoryStorage(self.clock)
        self.store = WatchedStore(self.storage.request_log)
        self.events: list[LogEvent] = []
        observer = implementer(ILogObserver)(lambda event: self.events.append(event))
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def writer(self, **kwargs: Any) -> RequestLogWriter:
        """A started writer over the watched store (stopped in cleanup)."""
        writer = RequestLogWriter(self.store, self.clock, **kwargs)  # type: ignore[arg-type]
        writer.startService()
        self.addCleanup(lambda: writer.running and writer.stopService())
        return writer

    def hook(self, writer: RequestLogWriter) -> Any:
        """The gateway's access-log hook with ``writer`` as its one sink (as composed)."""
        finished = FinishedRequests(self.clock, [writer])
        finished.startService()
        self.addCleanup(lambda: finished.running and finished.stopService())
        return finished.access_log

    def stored(self) -> list[str]:
        """Correlation ids in the store, oldest first."""
        return sorted(self.storage.request_log.records)

    def messages(self, level: str) -> list[str]:
        """Formatted log messages of ``level`` (``warn``, ``info``...)."""
        return [
            str(e.get("log_format", ""))
            for e in self.events
            if getattr(e.get("log_level"), "name", "") == level
        ]

    def test_record_is_queued_not_written(self) -> None:
        """record() returns at once; nothing reaches the store before the timer fires."""
        writer = self.writer()
        writer.record(sample(1))
        self.assertEqual((self.store.batches, writer.buffered), ([], 1))
        self.clock.advance(1.0)
        self.assertEqual(self.stored(), [sample(1).correlation_id])
        self.assertEqual((writer.buffered, writer.written), (0, 1))

    def test_flush_writes_in_batches(self) -> None:
        """Five records with batch_size 2 go out as batches of 2, 2 and 1 in one tick."""
        writer = self.writer(batch_size=2)
        for n in range(5):
            writer.record(sample(n))
        self.clock.advance(1.0)
        self.assertEqual([len(b) for b in self.store.batches], [2, 2, 1])
        self.assertEqual(self.stored(), sorted(sample(n).correlation_id for n in range(5)))

    def test_full_buffer_drops_and_counts(self) -> None:
        """Past max_buffer, records are dropped and counted; the first ones are kept."""
        writer = self.writer(max_buffer=3)
        for n in range(5):
            writer.record(sample(n))
        self.assertEqual((writer.buffered, writer.dropped), (3, 2))
        self.clock.advance(1.0)
        self.assertEqual(self.stored(), sorted(sample(n).correlation_id for n in range(3)))

    def test_outage_keeps_records_and_logs_once(self) -> None:
        """While the store is down records stay buffered; one warning, then one recovery."""
        writer = self.writer()
        self.storage.set_available(False)
        writer.record(sample(1))
        self.clock.pump([1.0] * 5)
        writer.record(sample(2))
        self.assertEqual((writer.buffered, writer.failures), (2, 5))
        self.assertEqual(len(self.messages("warn")), 1)
        self.storage.set_available(True)
        self.clock.advance(1.0)
        self.assertEqual(self.stored(), [sample(1).correlation_id, sample(2).correlation_id])
        self.assertEqual(len(self.messages("warn")), 1)
        self.assertEqual(len([m for m in self.messages("info") if "writing again" in m]), 1)

    def test_outage_that_fills_the_buffer_drops_new_records(self) -> None:
        """A long outage fills the buffer; later records are dropped, earlier ones written."""
        writer = self.writer(max_buffer=2)
        self.storage.set_available(False)
        for n in range(4):
            writer.record(sample(n))
            self.clock.advance(1.0)
        self.storage.set_available(True)
        self.clock.advance(1.0)
        self.assertEqual(writer.dropped, 2)
        self.assertEqual(self.stored(), [sample(0).correlation_id, sample(1).correlation_id])

    def test_refused_batch_is_dropped_not_retried(self) -> None:
        """A store error other than unavailability loses that batch (counted, logged)."""
        writer = self.writer()
        self.store.error = ValueError("cannot encode")
        writer.record(sample(1))
        self.clock.advance(1.0)
        self.assertEqual((writer.buffered, writer.lost, writer.failures), (0, 1, 1))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.store.error = None
        self.clock.advance(1.0)
        self.assertEqual(len(self.store.batches), 1, "the refused batch was retried")

    def test_stop_writes_what_is_buffered(self) -> None:
        """stopService flushes the buffer once before it fires."""
        writer = self.writer()
        writer.record(sample(1))
        self.successResultOf(writer.stopService())
        self.assertEqual(self.stored(), [sample(1).correlation_id])

    def test_stop_during_outage_counts_the_rest_as_lost(self) -> None:
        """Records that cannot be written at shutdown are counted as lost."""
        writer = self.writer()
        self.storage.set_available(False)
        writer.record(sample(1))
        self.successResultOf(writer.stopService())
        self.assertEqual((writer.lost, writer.buffered), (1, 0))

    def test_stop_while_a_flush_is_pending_does_not_write_twice(self) -> None:
        """The shutdown flush waits for the timer's flush: no batch is written twice."""
        writer = self.writer()
        self.store.pending = Deferred()
        writer.record(sample(1))
        self.clock.advance(1.0)
        stopped = writer.stopService()
        self.assertNoResult(stopped)
        pending, self.store.pending = self.store.pending, None
        pending.callback(None)
        self.successResultOf(stopped)
        self.assertEqual(len(self.store.batches), 1)
        self.assertEqual(writer.written, 1)

    def test_finished_requests_are_recorded(self) -> None:
        """A finished request's row, taken from the gateway's hook, is recorded at the
        clock's time of its end."""
        writer = self.writer()
        hook = self.hook(writer)
        self.clock.advance(0.5)

        def started(request: Any) -> None:
            notes_for(request).started = self.clock.seconds() - 0.2

        finish_request(hook, b"/hello?token=SECRET", code=202, before=started)
        self.clock.pump([0.25] * 4)
        [record] = self.storage.request_log.records.values()
        self.assertEqual((record.path, record.status, record.time), ("/hello", 202, T0 + 0.5))
        self.assertAlmostEqual(record.duration or 0, 0.2)

    def test_noise_beyond_the_budget_is_counted_not_recorded(self) -> None:
        """Issue 10 defect 2: a flood of unknown-host requests keeps ``per_minute`` records
        a minute; every one of them is counted (per minute, reason and host)."""
        writer = self.writer(noise=NoiseBudget(per_minute=3))
        hook = self.hook(writer)

        def unknown(request: Any) -> None:
            notes_for(request).noise = "unknown_host"

        for n in range(150):
            host = f"h{n % 5}.example".encode()
            finish_request(hook, headers={b"host": host}, code=404, before=unknown)
        finish_request(hook)  # ordinary requests are not budgeted
        self.clock.pump([0.25] * 4)
        self.assertEqual(len(self.storage.request_log.records), 4)
        self.assertEqual(writer.counted, 147)
        counts = self.successResultOf(self.storage.request_log.noise(T0, T0 + 60))
        self.assertEqual(sum(c.count for c in counts), 150)
        self.assertEqual({c.host for c in counts}, {f"h{n}.example" for n in range(5)})

    def test_taking_rows_into_a_full_buffer_drops_and_counts_them(self) -> None:
        """Rows taken from the hook past ``max_buffer`` are dropped and counted."""
        writer = self.writer(max_buffer=3)
        writer.take([record_row(sample(n)) for n in range(5)], [None] * 5)
        self.assertEqual((writer.buffered, writer.dropped), (3, 2))

    def test_access_lines_only_when_asked(self) -> None:
        """With emit_lines the writer also logs each access line (without the query)."""
        writer = self.writer(emit_lines=True)
        finish_request(self.hook(writer), b"/x?access_token=SECRET")
        self.clock.advance(0.25)
        lines = [e["access_line"] for e in self.events if "access_line" in e]
        self.assertEqual(len(lines), 1)
        self.assertIn('"GET /x"', lines[0])
        self.assertNotIn("SECRET", lines[0])


class StoreFailureKindsTests(SynchronousTestCase):
    """The writer tells an unavailable store from a refusing one."""

    def test_unavailable_is_retried(self) -> None:
        """StorageUnavailable keeps the batch for the next tick."""
        clock = Clock()
        store = WatchedStore(MemoryStorage(clock).request_log)
        store.error = StorageUnavailable("Redis did not answer")
        writer = RequestLogWriter(store, clock)  # type: ignore[arg-type]
        writer.record(sample(1))
        self.successResultOf(writer.flush())
        self.successResultOf(writer.flush())
        self.assertEqual((len(store.batches), writer.buffered, writer.lost), (2, 1, 0))

    def test_writer_provides_nothing_but_takes_a_store(self) -> None:
        """The memory twin provides IRequestLogStore (what the writer is typed against)."""
        self.assertTrue(IRequestLogStore.providedBy(MemoryStorage(Clock()).request_log))
