"""Behaviour of :class:`RedisStorage` that only Redis has: encryption at rest,
timeouts while Redis is down, lazy start, races, authentication, isolation.

Uses real redis-server processes (the shared one, or a private one for tests
that stop, kill or password-protect it).
"""

from __future__ import annotations

import os
import time

from attrs import evolve
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from oauthproxy.errors import Conflict, StorageUnavailable
from oauthproxy.interfaces import IStorage
from oauthproxy.model import Certificate, DockerService, ExternalService, Proxy
from oauthproxy.storage.address import RedisAddress
from oauthproxy.storage.codec import decode, encode
from oauthproxy.storage.crypto import DecryptionError, SecretBox
from oauthproxy.storage.redis import RedisStorage, connect_storage
from tests.support import redis as support_redis
from tests.support.redis import RedisServer, shared_redis_server

PEM = "-----BEGIN PRIVATE KEY-----\nTOP-SECRET-KEY-MATERIAL\n-----END PRIVATE KEY-----\n"


def sleep(seconds: float) -> Deferred[None]:
    """Wait on the real reactor."""
    return deferLater(reactor, seconds, lambda: None)


class RedisStorageTests(TestCase):
    """RedisStorage on the shared, flushed redis-server."""

    def setUp(self) -> None:
        """Flush the shared server."""
        self.server = shared_redis_server()
        self.server.flush()
        self.box = SecretBox.generate()

    def connect(self, box: SecretBox | None = None, key_prefix: str = "op:") -> RedisStorage:
        """A storage on the shared server, closed at the end of the test."""
        storage = connect_storage(
            self.server.address(), box or self.box, 5.0, reactor, key_prefix=key_prefix
        )
        self.addCleanup(storage.close)
        return storage

    def test_provides_istorage(self) -> None:
        """RedisStorage provides IStorage."""
        self.assertTrue(IStorage.providedBy(self.connect()))

    async def test_private_keys_are_encrypted_at_rest(self) -> None:
        """Neither the record hash, the event stream nor the account hash holds a key in clear."""
        storage = self.connect()
        await storage.certificates.create(Certificate("c1", ("a.example",), private_key_pem=PEM))
        await storage.accounts.put("https://acme.example/dir", PEM)
        raw = [
            self.server.command("HGETALL", "op:records:certificate"),
            self.server.command("XRANGE", "op:events", "-", "+"),
            self.server.command("HGETALL", "op:acme_accounts"),
        ]
        self.assertNotIn("TOP-SECRET", repr(raw))
        self.assertIn('"private_key_pem":"v1.', repr(raw[0]))

    async def test_service_environments_are_encrypted_at_rest(self) -> None:
        """A Docker service's environment (and the one kept in ``previous`` during an
        update) is sealed in the record hash and the events, and reads back whole."""
        storage = self.connect()
        service = DockerService("web", "i:1", environment=(("DB_PASSWORD", "TOP-SECRET-1"),))
        await storage.docker_services.create(service)
        updated = evolve(
            service,
            environment=(("DB_PASSWORD", "TOP-SECRET-2"), ("MODE", "x")),
            previous=encode(service),
        )
        await storage.docker_services.update(updated)
        raw = [
            self.server.command("HGETALL", "op:records:docker_service"),
            self.server.command("XRANGE", "op:events", "-", "+"),
        ]
        self.assertNotIn("TOP-SECRET", repr(raw))
        self.assertIn("=sealed", repr(raw[0]))
        got = await storage.docker_services.get("web")
        assert got is not None
        self.assertEqual(got.environment, (("DB_PASSWORD", "TOP-SECRET-2"), ("MODE", "x")))
        assert got.previous is not None
        self.assertEqual(decode(DockerService, got.previous).environment, service.environment)
        events = await storage.events.read("0-0", 0)
        self.assertIn("TOP-SECRET-2", events[-1].record or "")

    async def test_a_plain_environment_stored_earlier_still_reads(self) -> None:
        """Records written before the environment was sealed read back as they are."""
        plain = DockerService("old", "i:1", environment=(("A", "1"),))
        self.server.command("HSET", "op:records:docker_service", "old", encode(plain))
        got = await self.connect().docker_services.get("old")
        assert got is not None
        self.assertEqual(got.environment, (("A", "1"),))

    async def test_another_secret_key_cannot_read_private_keys(self) -> None:
        """A daemon with a different OAUTHPROXY_SECRET_KEY fails to open the key."""
        await self.connect().certificates.create(Certificate("c1", ("a",), private_key_pem=PEM))
        with self.assertRaises(DecryptionError):
            await self.connect(box=SecretBox.generate()).certificates.get("c1")

    async def test_key_prefix_isolates_stores(self) -> None:
        """Stores with different key prefixes do not see each other's records or events."""
        one, two = self.connect(key_prefix="one:"), self.connect(key_prefix="two:")
        await one.services.create(ExternalService("s", "http://a"))
        self.assertEqual(await two.services.list(), [])
        self.assertEqual(await two.events.last_id(), "0-0")
        await two.services.create(ExternalService("s", "http://b"))

    async def test_racing_creates_have_one_winner(self) -> None:
        """Of many concurrent creates of one key exactly one succeeds and one event is written."""
        storage = self.connect()

        async def attempt(i: int) -> str:
            try:
                await storage.proxies.create(Proxy("race.example", f"http://{i}"))
            except Conflict:
                return "conflict"
            return "created"

        outcomes = await gatherResults([Deferred.fromCoroutine(attempt(i)) for i in range(20)])
        self.assertEqual(sorted(outcomes), ["conflict"] * 19 + ["created"])
        self.assertEqual(len(await storage.events.read("0-0", 0)), 1)

    async def test_racing_updates_and_deletes_stay_consistent(self) -> None:
        """Concurrent updates and one delete: the store ends deleted, with one delete event."""
        storage = self.connect()
        await storage.proxies.create(Proxy("race.example", "http://0"))
        writes = [storage.proxies.update(Proxy("race.example", f"http://{i}")) for i in range(10)]
        writes.insert(5, storage.proxies.delete("race.example"))
        await DeferredList(writes, consumeErrors=True)
        events = await storage.events.read("0-0", 0)
        self.assertIsNone(await storage.proxies.get("race.example"))
        self.assertEqual([e.type for e in events].count("proxy_deleted"), 1)
        self.assertEqual(events[-1].type, "proxy_deleted")

    async def test_blocking_read_does_not_stall_other_calls(self) -> None:
        """A read blocked on the event stream does not delay ordinary calls."""
        storage = self.connect()
        reading = storage.events.read("0-0", 2.0)
        started = time.monotonic()
        await gatherResults([storage.proxies.list() for _ in range(8)])
        self.assertLess(time.monotonic() - started, 1.0)
        await storage.services.create(ExternalService("s", "http://a"))
        self.assertEqual(len(await reading), 1)

    async def test_closed_storage_fails_fast(self) -> None:
        """After close(), calls fail with StorageUnavailable and ping is False."""
        storage = self.connect()
        await storage.ping()
        await storage.close()
        with self.assertRaises(StorageUnavailable):
            await storage.proxies.list()
        self.assertFalse(await storage.ping())


class RedisOutageTests(TestCase):
    """RedisStorage against a private redis-server that is stopped or not yet started."""

    def connect(self, server: RedisServer, timeout: float) -> RedisStorage:
        """A storage on ``server`` closed at the end of the test."""
        storage = connect_storage(server.address(), SecretBox.generate(), timeout, reactor)
        self.addCleanup(storage.close)
        return storage

    async def test_calls_time_out_while_redis_is_down(self) -> None:
        """With Redis killed, a call fails with StorageUnavailable after the timeout, not never."""
        server = RedisServer.for_test(self)
        storage = self.connect(server, timeout=0.3)
        self.assertTrue(await storage.ping())
        server.kill()
        started = time.monotonic()
        with self.assertRaises(StorageUnavailable):
            await storage.proxies.list()
        with self.assertRaises(StorageUnavailable):
            await storage.proxies.list()
        self.assertFalse(await storage.ping())
        self.assertLess(time.monotonic() - started, 2.0)

    async def test_storage_created_before_redis_starts_connects_later(self) -> None:
        """The daemon may start first: calls fail until Redis is up, then succeed."""
        server = RedisServer.for_test(self, start=False)
        storage = self.connect(server, timeout=0.3)
        self.assertFalse(await storage.ping())
        server.start()
        for _ in range(100):
            if await storage.ping():
                break
            await sleep(0.1)
        await storage.services.create(ExternalService("s", "http://a"))
        self.assertEqual(len(await storage.services.list()), 1)

    async def test_password_protected_redis(self) -> None:
        """The right password or ACL user works; a wrong password fails with StorageUnavailable."""
        server = RedisServer.for_test(self, password="s3cret pw")
        good = connect_storage(server.address(unix=True), SecretBox.generate(), 2.0, reactor)
        self.addCleanup(good.close)
        await good.services.create(ExternalService("s", "http://a"))
        self.assertEqual([s.name for s in await good.services.list()], ["s"])
        server.command("ACL", "SETUSER", "app", "on", ">app pw", "~op:*", "+@all")
        as_user = RedisAddress(unix_path=server.unix_path, username="app", password="app pw")
        acl = connect_storage(as_user, SecretBox.generate(), 2.0, reactor)
        self.addCleanup(acl.close)
        self.assertEqual([s.name for s in await acl.services.list()], ["s"])
        wrong = RedisAddress(host="127.0.0.1", port=server.port, password="nope")
        bad = connect_storage(wrong, SecretBox.generate(), 0.5, reactor)
        self.addCleanup(bad.close)
        with self.assertRaises(StorageUnavailable):
            await bad.services.list()


class RedisServerFixtureTests(TestCase):
    """The ``RedisServer`` test fixture itself."""

    def test_missing_binary_fails_loudly(self) -> None:
        """Without redis-server on PATH, start() raises instead of skipping."""
        self.patch(support_redis.shutil, "which", lambda name: None)
        server = RedisServer.for_test(self, start=False)
        with self.assertRaises(RuntimeError) as raised:
            server.start()
        self.assertIn("redis-server is not installed", str(raised.exception))

    def test_restart_keeps_port_socket_and_data(self) -> None:
        """stop() then start() serves the same port and socket, with AOF data kept."""
        server = RedisServer.for_test(self, appendonly=True)
        port = server.port
        server.command("SET", "k", "007")
        server.stop()
        with self.assertRaises(OSError):
            server.command("PING")
        server.start()
        self.assertEqual((server.port, server.command("GET", "k")), (port, "007"))
        self.assertTrue(os.path.exists(server.unix_path))
