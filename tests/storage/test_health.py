"""The storage probe, the fail-fast outage and the key check, on a real redis-server."""

from __future__ import annotations

import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from oauthproxy.errors import StorageUnavailable
from oauthproxy.storage.crypto import SecretBox
from oauthproxy.storage.health import StorageState, StorageWatch
from oauthproxy.storage.redis import RedisStorage, SecretKeyMismatch, connect_storage
from tests.support.redis import RedisServer
from tests.support.tls import TestAuthority


class ProbeOnRedisTests(TestCase):
    """``RedisStorage.probe``: reads, writes, and the outage it opens and closes."""

    def setUp(self) -> None:
        """A private redis-server; storage with the daemon's 5 s call timeout."""
        self.server = RedisServer.for_test(self)
        self.storage: RedisStorage = connect_storage(
            self.server.address(), SecretBox.generate(), 5.0, reactor
        )
        self.addCleanup(self.storage.close)

    async def test_healthy_redis_takes_reads_and_writes(self) -> None:
        """A running Redis: reachable and writable, no outage."""
        self.assertEqual(await self.storage.probe(1.0), StorageState())
        self.assertIsNone(self.storage.connection.outage)

    async def test_frozen_redis_fails_the_probe_within_its_deadline_then_calls_fail_fast(
        self,
    ) -> None:
        """SIGSTOP: the probe gives up after its own deadline (not the 5 s call timeout);
        ordinary calls then fail at once; after SIGCONT the next probe ends the outage."""
        await self.storage.proxies.list()
        self.server.freeze()
        started = time.monotonic()
        state = await self.storage.probe(0.5)
        self.assertLess(time.monotonic() - started, 2.0)
        self.assertEqual((state.reachable, state.writable), (False, False))
        started = time.monotonic()
        with self.assertRaises(StorageUnavailable) as raised:
            await self.storage.proxies.list()
        self.assertLess(time.monotonic() - started, 0.5)
        self.assertIn("unreachable", raised.exception.detail)
        self.server.thaw()
        self.assertEqual(await self.storage.probe(2.0), StorageState())
        self.assertEqual(await self.storage.proxies.list(), [])

    async def test_full_redis_refuses_the_probe_write(self) -> None:
        """Out of memory with nothing to evict: reachable, not writable, the reason kept."""
        self.server.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.server.command("CONFIG", "SET", "maxmemory", "1")
        state = await self.storage.probe(1.0)
        self.assertEqual((state.reachable, state.writable), (True, False))
        self.assertIn("OOM", state.detail)


class StorageWatchTests(SynchronousTestCase):
    """``StorageWatch`` probes on a timer and reports changes."""

    def test_probes_now_and_on_every_interval_and_reports_changes(self) -> None:
        """State follows the probe; ``on_change`` hears about each change once."""
        clock = Clock()
        answers = [
            StorageState(),
            StorageState(False, False, "gone"),
            StorageState(False, False, "gone"),
        ]
        answers.append(StorageState())
        changes: list[StorageState] = []

        def probe(deadline: float) -> Deferred[StorageState]:
            return succeed(answers.pop(0))

        watch = StorageWatch(probe, clock, interval=0.5, on_change=changes.append)
        watch.startService()
        self.assertTrue(watch.state.healthy)
        clock.advance(0.5)
        self.assertEqual(watch.state.detail, "gone")
        clock.advance(0.5)
        clock.advance(0.5)
        self.assertTrue(watch.state.healthy)
        self.assertEqual([state.reachable for state in changes], [False, True])
        watch.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])


class KeyCheckTests(TestCase):
    """``RedisStorage.check_key``: daemons sharing a Redis must share the secret key."""

    def setUp(self) -> None:
        """A private redis-server."""
        self.server = RedisServer.for_test(self)

    def connect(self, box: SecretBox) -> RedisStorage:
        """A storage with ``box``, closed at the end."""
        storage = connect_storage(self.server.address(), box, 5.0, reactor)
        self.addCleanup(storage.close)
        return storage

    async def test_first_key_is_recorded_and_others_refused(self) -> None:
        """The first check stores a sealed value; the same key passes, another fails."""
        key = SecretBox.generate()
        await self.connect(key).check_key()
        await self.connect(SecretBox(key.key)).check_key()
        with self.assertRaises(SecretKeyMismatch) as raised:
            await self.connect(SecretBox.generate()).check_key()
        self.assertEqual(raised.exception.field, "OAUTHPROXY_SECRET_KEY")

    async def test_data_stored_before_the_check_value_is_checked_itself(self) -> None:
        """Without a check value, a sealed certificate key that does not open fails too."""
        first = self.connect(SecretBox.generate())
        await first.certificates.create(TestAuthority.create().issue("a.example"))
        with self.assertRaises(SecretKeyMismatch):
            await self.connect(SecretBox.generate()).check_key()
