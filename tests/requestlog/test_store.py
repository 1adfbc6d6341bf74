"""The request-log store contract on the memory twin and on a real redis-server.

One redis-server is shared by the test process (``shared_redis_server``) and flushed
before each test; the Redis-only tests check what the contract cannot see: expiries,
the capped stream, and the writer across a Redis crash (on a server of its own).
"""

from __future__ import annotations

import json

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from oauthproxy.interfaces import IRequestLogStore
from oauthproxy.requestlog.record import ROW_DURATION, record_row
from oauthproxy.requestlog.writer import RequestLogWriter
from oauthproxy.storage.crypto import SecretBox
from oauthproxy.storage.redis import connect_storage
from oauthproxy.testing import MemoryRequestLogStore, MemoryStorage
from tests.requestlog import contract
from tests.requestlog.samples import sample
from tests.support.redis import RedisServer, shared_redis_server

#: seconds any Redis call may take in these tests
TIMEOUT = 5.0


class MemoryRequestLogStoreTests(contract.RequestLogStoreContract):
    """The contract on MemoryRequestLogStore."""

    def make_store(
        self, retention: float = contract.DAY, max_records: int = 100_000
    ) -> IRequestLogStore:
        """A fresh memory store."""
        state = MemoryStorage(reactor).state
        return MemoryRequestLogStore(state, retention=retention, max_records=max_records)


class RedisRequestLogStoreTests(contract.RequestLogStoreContract):
    """The contract on RedisRequestLogStore, plus key expiries."""

    def setUp(self) -> None:
        """Flush the shared redis-server."""
        self.server: RedisServer = shared_redis_server()
        self.server.flush()

    def make_store(
        self, retention: float = contract.DAY, max_records: int = 100_000
    ) -> IRequestLogStore:
        """A RedisStorage's request log on the shared server."""
        storage = connect_storage(
            self.server.address(),
            SecretBox.generate(),
            TIMEOUT,
            reactor,
            request_log_retention=retention,
            request_log_max_records=max_records,
        )
        self.addCleanup(storage.close)
        store: IRequestLogStore = storage.request_log
        return store

    async def test_every_key_expires(self) -> None:
        """Records and indexes expire after the retention; visitor counts a day later."""
        store = self.make_store(retention=3600)
        await store.write([sample(1, user="octocat")])
        keys = self.server.command("KEYS", "op:rlog:*")
        self.assertTrue(keys)
        for key in keys:
            ttl = self.server.command("TTL", key)
            limit = 3600 + 86400 if ":visitors:" in key else 3600
            self.assertTrue(0 < ttl <= limit, f"{key} expires in {ttl}")

    async def test_a_batch_is_a_few_keys_not_a_key_per_record(self) -> None:
        """1,000 records written together are one segment: Redis keeps a handful of keys
        for them (what makes the log cheap to write), and every one is found."""
        store = self.make_store()
        await store.write([sample(n % 2, client_ip=f"192.0.2.{n % 4}") for n in range(1000)])
        keys = self.server.command("KEYS", "op:rlog:*")
        self.assertLess(len(keys), 15, keys)
        self.assertEqual(await store.count("all", "", sample(0).time, sample(1).time), 1000)

    async def test_segments_written_with_times_in_their_rows_are_read(self) -> None:
        """Segments written before the rows left their times to ``T`` (time first, the
        duration in seconds) are still found, listed and read back unchanged."""
        store = self.make_store()
        record = sample(1, duration=0.0125, user="octocat")
        await store.write([record])
        (segment,) = self.server.command("KEYS", "op:rlog:seg:*")
        self.server.command("HSET", segment, "r", json.dumps([record_row(record)]))
        self.assertEqual(await store.get(record.correlation_id), record)
        self.assertEqual(
            await store.find("user", "octocat", record.time, record.time, 0, 5), [record]
        )
        self.assertEqual((await store.recent(None, 5))[0], [record])

    async def test_segments_with_durations_in_microseconds_are_read(self) -> None:
        """Segments whose rows keep the duration as whole microseconds (how the log was
        written before the rows went to orjson as they are) still read back."""
        store = self.make_store()
        record = sample(1, duration=0.0125, user="octocat")
        await store.write([record])
        (segment,) = self.server.command("KEYS", "op:rlog:seg:*")
        micros = [*record_row(record)[1:]]
        micros[ROW_DURATION - 1] = 12500
        self.server.command("HSET", segment, "r", json.dumps([micros]))
        self.assertEqual(await store.get(record.correlation_id), record)
        self.assertEqual((await store.recent(None, 5))[0], [record])

    async def test_a_length_beyond_64_bits_is_kept_exactly(self) -> None:
        """A client may declare any ``Content-Length``: a record with a byte count past
        what orjson writes is stored all the same, with its neighbours, and read back."""
        store = self.make_store()
        huge = sample(1, bytes_in=10**30, correlation_id="1735689601-https-caf\u00e9")
        await store.write([sample(0), huge])
        self.assertEqual(await store.get(huge.correlation_id), huge)
        self.assertEqual((await store.recent(None, 5))[0], [sample(0), huge])


class RedisOutageTests(TestCase):
    """The writer over a real Redis that goes away and comes back."""

    async def test_records_survive_a_redis_restart(self) -> None:
        """Killed Redis: records stay buffered, one failure per attempt; restarted: written."""
        server = RedisServer.for_test(self)
        storage = connect_storage(server.address(), SecretBox.generate(), 1.0, reactor)
        self.addCleanup(storage.close)
        writer = RequestLogWriter(storage.request_log, reactor)
        writer.record(sample(1))
        await writer.flush()
        self.assertEqual(writer.written, 1)
        server.kill()
        writer.record(sample(2))
        await writer.flush()
        await writer.flush()
        self.assertEqual((writer.buffered, writer.failures, writer.lost), (1, 2, 0))
        server.start()
        for _ in range(50):  # txredisapi reconnects by itself, with its own backoff
            await writer.flush()
            if not writer.buffered:
                break
            await deferLater(reactor, 0.1, lambda: None)
        self.assertEqual((writer.buffered, writer.written), (0, 2))
        self.assertEqual(await storage.request_log.get(sample(2).correlation_id), sample(2))
