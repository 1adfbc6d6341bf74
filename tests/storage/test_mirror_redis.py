"""The storage mirror on a real redis-server that is killed and restarted.

While the mirror tails the stream, redis-server is killed (SIGKILL, as a crash):
the mirror must keep serving its snapshot with ``connected`` False.  After the
restart (the append-only file brings the data back) a second storage writes,
partly while the mirror is still backing off; once the mirror is back, more
writes follow.  In the end the mirror must equal a fresh listing of the store,
having applied every event once, in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from oauthproxy.model import DockerService, Event, ExternalService, Proxy, Route, Snapshot
from oauthproxy.storage.crypto import SecretBox
from oauthproxy.storage.mirror import Mirror
from oauthproxy.storage.redis import RedisStorage, connect_storage
from tests.support.redis import RedisServer

#: seconds the test waits for any one condition
PATIENCE = 20.0


def sleep(seconds: float) -> Deferred[None]:
    """Wait on the real reactor."""
    return deferLater(reactor, seconds, lambda: None)


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after PATIENCE seconds."""
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await sleep(0.02)


class MirrorOnRedisTests(TestCase):
    """Mirror over RedisStorage across a redis-server crash and restart."""

    def setUp(self) -> None:
        """A private redis-server with an append-only file, and a secret box."""
        self.server = RedisServer.for_test(self, appendonly=True)
        self.box = SecretBox.generate()

    def connect(self, timeout: float = 5.0) -> RedisStorage:
        """A storage on the server, closed at the end of the test."""
        storage = connect_storage(self.server.address(), self.box, timeout, reactor)
        self.addCleanup(storage.close)
        return storage

    def start_mirror(self, storage: RedisStorage) -> Mirror:
        """A running mirror with short delays, stopped before its storage closes."""
        mirror = Mirror(storage, reactor, block=0.5, initial_delay=0.2, max_delay=1.0)
        mirror.startService()
        self.addCleanup(mirror.stopService)
        return mirror

    async def fresh_snapshot(self) -> Snapshot:
        """What a mirror started now would load."""
        storage = self.connect()
        probe = Mirror(storage, reactor)
        probe.startService()
        snapshot = await probe.when_loaded()
        await probe.stopService()
        return snapshot

    async def test_crash_restart_misses_no_event(self) -> None:
        """Snapshot served during the outage; after it, every write is mirrored exactly once."""
        writer = self.connect()
        await writer.proxies.create(Proxy("a.example", "http://a"))
        await writer.proxies.create(Proxy("b.example", "http://b"))
        mirror = self.start_mirror(self.connect(timeout=0.5))
        applied: list[Event] = []

        def record(snapshot: Snapshot, event: Event | None) -> None:
            if event is not None:
                applied.append(event)

        mirror.subscribe(record)
        await mirror.when_loaded()
        await writer.proxies.create(Proxy("c.example", "http://c"))
        await eventually(lambda: "c.example" in mirror.current.proxies, "c.example is mirrored")
        served = mirror.current

        self.server.kill()
        await eventually(lambda: not mirror.connected, "the mirror notices the crash")
        await sleep(0.3)
        self.assertIs(mirror.current, served)

        self.server.start()
        # a new writer connects at once, while the mirror's connections are still
        # in txredisapi's reconnect delay (about 1 s after the crash)
        writer = self.connect()
        await writer.proxies.update(Proxy("a.example", "http://a2"))
        await writer.proxies.delete("b.example")
        await writer.services.create(ExternalService("s1", "http://s1"))
        self.assertFalse(mirror.connected, "the mirror reconnected before the writes")
        self.assertIs(mirror.current, served)
        await eventually(lambda: mirror.connected, "the mirror reconnects")
        # Redis kept the stream (AOF): the tail goes on from the last id, no reload
        self.assertEqual(mirror.reloads, 1)
        await writer.proxies.create(Proxy("d.example", "http://d"))
        await writer.proxies.update(Proxy("c.example", "http://c2"))
        await writer.services.delete("s1")
        last = await writer.events.last_id()
        await eventually(lambda: mirror.last_id == last, "the mirror reaches the last event")

        expected = await self.fresh_snapshot()
        self.assertEqual(mirror.current, expected)
        self.assertEqual(
            {h: p.target_url for h, p in mirror.current.proxies.items()},
            {"a.example": "http://a2", "c.example": "http://c2", "d.example": "http://d"},
        )
        ids = [e.event_id for e in applied]
        self.assertEqual(len(ids), len(set(ids)), "an event was applied twice")
        self.assertEqual(ids, sorted(ids, key=lambda i: tuple(map(int, i.split("-")))))


class ReadYourWritesOnRedisTests(TestCase):
    """A write through a storage returns once that storage's mirror applied it (defect 12)."""

    def setUp(self) -> None:
        """A private redis-server and a secret box."""
        self.server = RedisServer.for_test(self)
        self.box = SecretBox.generate()

    def connect(self) -> RedisStorage:
        """A storage on the server (one daemon's connection), closed at the end."""
        storage = connect_storage(self.server.address(), self.box, 5.0, reactor)
        self.addCleanup(storage.close)
        return storage

    async def start_mirror(self, storage: RedisStorage) -> Mirror:
        """A loaded mirror whose tail blocks for a long time (so only catch-up can help)."""
        mirror = Mirror(storage, reactor, block=5.0)
        mirror.startService()
        self.addCleanup(mirror.stopService)
        await mirror.when_loaded()
        return mirror

    async def test_write_is_in_the_writers_snapshot_when_it_returns(self) -> None:
        """Fifty creates, updates and deletes: each is in the mirror the moment it returns."""
        storage = self.connect()
        mirror = await self.start_mirror(storage)
        for n in range(50):
            host = f"h{n}.example"
            await storage.proxies.create(Proxy(host, "http://a"))
            self.assertIn(host, mirror.current.proxies)
            await storage.proxies.update(Proxy(host, "http://b"))
            self.assertEqual(mirror.current.proxies[host].target_url, "http://b")
            await storage.proxies.delete(host)
            self.assertNotIn(host, mirror.current.proxies)

    async def test_a_kind_with_its_own_write_script_is_visible_too(self) -> None:
        """Docker services reserve ports in their own script; their writes wait all the same."""
        storage = self.connect()
        mirror = await self.start_mirror(storage)
        for n in range(10):
            await storage.docker_services.create(DockerService(f"svc{n}", "local/busybox:1"))
            self.assertIn(f"svc{n}", mirror.current.docker_services)

    async def test_earlier_writes_of_another_instance_are_applied_in_order(self) -> None:
        """Catching up applies the other daemon's earlier events too, in stream order, once."""
        mine, theirs = self.connect(), self.connect()
        mirror = await self.start_mirror(mine)
        applied: list[str] = []
        mirror.subscribe(lambda snapshot, event: event and applied.append(event.event_id))
        for n in range(20):
            await theirs.routes.create(Route(f"r{n}", "/", "url", "http://x"))
            await mine.services.create(ExternalService(f"s{n}", "http://s"))
            self.assertIn(f"r{n}", mirror.current.routes)
            self.assertIn(f"s{n}", mirror.current.services)
        last = await mine.events.last_id()
        await eventually(lambda: mirror.last_id == last, "the tail has nothing left")
        self.assertEqual(len(applied), 40)
        self.assertEqual(len(set(applied)), 40, "an event was applied twice")
        self.assertEqual(applied, sorted(applied, key=lambda i: tuple(map(int, i.split("-")))))

    async def test_writes_of_another_instance_do_not_wait_for_this_mirror(self) -> None:
        """Only the writer's own mirror is caught up: another daemon's mirror gets the tail."""
        mine, theirs = self.connect(), self.connect()
        mirror = await self.start_mirror(mine)
        await theirs.proxies.create(Proxy("far.example", "http://a"))
        await eventually(lambda: "far.example" in mirror.current.proxies, "the tail brings it")
