"""The issuing service against a real Pebble CA with real HTTP-01 validation.

Pebble (started for each test by :mod:`tests.support.pebble`) resolves every name to
127.0.0.1 and validates HTTP-01 against a real loopback listener where the test serves
:class:`~oauthproxy.acme.responder.ChallengeResource` from the shared store, exactly as
the gateway mounts it.  No ``PEBBLE_VA_ALWAYS_VALID``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store
from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IReactorFromThreads, IReactorTCP, IReactorTime
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from oauthproxy.acme.client import OrderRequest, PendingOrder, ThreadedOrderClient
from oauthproxy.acme.responder import ChallengeResource
from oauthproxy.acme.service import IssuingService, make_issuing_service
from oauthproxy.config import Config
from oauthproxy.interfaces import IStorage
from oauthproxy.model import Certificate
from oauthproxy.storage.crypto import SecretBox
from oauthproxy.storage.redis import connect_storage
from oauthproxy.testing import MemoryStorage
from tests.support.pebble import free_port, start_pebble
from tests.support.redis import RedisServer

reactor: IReactorTime = _reactor
#: seconds a test waits for an outcome before failing
WAIT = 45.0


class PebbleTestCase(TestCase):
    """Per test: a Pebble, a store, a challenge listener and issuing services."""

    validity_seconds = 3600
    nonce_reject_percent = 0

    def setUp(self) -> None:
        """Pebble (and its DNS) plus a fresh shared store per test.

        trial has no per-class fixtures, and Pebble starts in about half a second.
        """
        self.workdir = Path(tempfile.mkdtemp(prefix="oauthproxy-pebble-"))
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.http_port = free_port()
        self.pebble = start_pebble(
            self.workdir, self.http_port, self.validity_seconds, self.nonce_reject_percent
        )
        self.addCleanup(self.pebble.stop)
        self.storage: IStorage = MemoryStorage(reactor)

    def config(self, **overrides: object) -> Config:
        """Settings pointing at this class's Pebble."""
        settings: dict[str, object] = {
            "acme_directory_url": self.pebble.directory_url,
            "acme_staging_url": self.pebble.directory_url,
            "acme_ca_bundle": self.pebble.ca_bundle,
            "admin_email": "admin@example.test",
            "cert_gen_max_workers": 2,
        }
        settings.update(overrides)
        return Config(**settings)  # type: ignore[arg-type]

    def serve_challenges(self, storage: IStorage | None = None) -> None:
        """Serve the store's HTTP-01 answers on the port Pebble validates against."""
        root = Resource()
        well_known = Resource()
        root.putChild(b".well-known", well_known)
        challenges = (storage or self.storage).challenges
        well_known.putChild(b"acme-challenge", ChallengeResource(challenges))
        tcp: IReactorTCP = _reactor
        port = tcp.listenTCP(self.http_port, Site(root), interface="127.0.0.1")
        self.addCleanup(port.stopListening)

    def start_service(
        self, lock_ttl: float = 60.0, storage: IStorage | None = None, **overrides: object
    ) -> IssuingService:
        """A started issuing service (on the test's store by default), stopped in cleanup."""
        threads: IReactorFromThreads = _reactor
        service = make_issuing_service(
            threads, reactor, storage or self.storage, self.config(**overrides), lock_ttl
        )
        service.startService()
        self.addCleanup(service.stopService)
        return service

    async def wait_for(self, cert_name: str, done: object) -> Certificate:
        """Poll the store until ``done(record)`` holds (bounded by WAIT seconds)."""
        for _ in range(int(WAIT / 0.1)):
            record = await self.storage.certificates.get(cert_name)
            if record is not None and done(record):  # type: ignore[operator]
                return record
            await deferLater(reactor, 0.1, lambda: None)
        self.fail(f"{cert_name} never reached the expected state: {record!r}")

    def assert_issued_by_pebble(self, record: Certificate, domains: tuple[str, ...]) -> None:
        """The chain verifies against Pebble's root for every name and matches the key."""
        self.assertEqual(record.status, "ready")
        assert record.fullchain_pem is not None and record.private_key_pem is not None
        chain = x509.load_pem_x509_certificates(record.fullchain_pem.encode("ascii"))
        root = x509.load_pem_x509_certificate(self.pebble.root_pem().encode("ascii"))
        for name in domains:
            verifier = (
                PolicyBuilder().store(Store([root])).build_server_verifier(x509.DNSName(name))
            )
            verifier.verify(chain[0], chain[1:])
        key = serialization.load_pem_private_key(record.private_key_pem.encode("ascii"), None)
        self.assertEqual(
            key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            chain[0]
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )


class IssuanceTests(PebbleTestCase):
    """Orders that validate over real HTTP-01 end with a stored, verifiable certificate."""

    async def test_single_name_certificate_is_issued_and_stored_ready(self) -> None:
        """A one-name certificate is issued by Pebble and stored ready with its facts."""
        self.serve_challenges()
        service = self.start_service()
        await service.request_certificate("one", ["one.example.test"])
        record = await self.wait_for("one", lambda r: r.status != "pending")
        self.assert_issued_by_pebble(record, ("one.example.test",))
        self.assertEqual(record.domains, ("one.example.test",))
        self.assertIsNotNone(record.fingerprint_sha256)
        self.assertIn("Pebble", record.issuer or "")
        self.assertEqual((record.error, record.retry_at, record.failures), (None, None, 0))
        assert isinstance(self.storage, MemoryStorage)
        self.assertEqual(self.storage.state.challenges, {}, "answers are withdrawn")
        ready = [e for e in self.storage.state.events if e.type == "certificate_ready"]
        self.assertEqual([e.key for e in ready], ["one"])

    async def test_three_name_certificate_is_issued_for_every_name(self) -> None:
        """A three-name certificate validates each name and covers all three."""
        self.serve_challenges()
        service = self.start_service()
        names = ("a.example.test", "b.example.test", "c.example.test")
        await service.request_certificate("multi", list(names))
        record = await self.wait_for("multi", lambda r: r.status != "pending")
        self.assert_issued_by_pebble(record, names)
        self.assertEqual(record.domains, names)
        self.assertEqual(self.pebble.log_text().count("set VALID by completed challenge"), 3)

    async def test_order_that_cannot_validate_fails_with_reason_and_backoff(self) -> None:
        """Without a challenge listener the order fails readably, is retried later, not now.

        The service keeps working: once challenges are served, another order succeeds.
        """
        service = self.start_service(renewal_check_interval=0.2)
        before = self.pebble.order_count()
        await service.request_certificate("broken", ["broken.example.test"])
        record = await self.wait_for("broken", lambda r: r.status != "pending")
        self.assertEqual(record.status, "failed")
        self.assertIn("broken.example.test", record.error or "")
        self.assertIn("validation failed", record.error or "")
        self.assertEqual(record.failures, 1)
        assert record.retry_at is not None
        self.assertGreaterEqual(record.retry_at - record.updated_at, 300.0)
        # a second of scans (every 0.2 s) orders nothing more
        await deferLater(reactor, 1.0, lambda: None)
        self.assertEqual(self.pebble.order_count() - before, 1)
        self.assertTrue(service.running)
        self.serve_challenges()
        await service.request_certificate("healthy", ["healthy.example.test"])
        healthy = await self.wait_for("healthy", lambda r: r.status != "pending")
        self.assertEqual(healthy.status, "ready")

    async def test_two_services_sharing_a_store_place_one_order(self) -> None:
        """Two daemons asked for the same certificate: exactly one order reaches Pebble."""
        self.serve_challenges()
        await self.storage.certificates.create(
            Certificate(
                cert_name="shared",
                domains=("shared.example.test",),
                acme_directory_url=self.pebble.directory_url,
            )
        )
        before = self.pebble.order_count()
        first = self.start_service()
        second = self.start_service()
        await first.check_now()
        await second.check_now()
        record = await self.wait_for("shared", lambda r: r.status != "pending")
        self.assertEqual(record.status, "ready")
        await deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(self.pebble.order_count() - before, 1)

    async def test_order_abandoned_by_a_dead_daemon_is_retried_after_the_lock_ttl(self) -> None:
        """A lock left by a daemon killed mid-order expires; another daemon then orders."""
        self.serve_challenges()
        await self.storage.certificates.create(
            Certificate(cert_name="orphan", domains=("orphan.example.test",))
        )
        dead_token = await self.storage.locks.acquire("acme:orphan", 1.0)
        self.assertIsNotNone(dead_token)
        self.start_service(lock_ttl=1.0)
        record = await self.wait_for("orphan", lambda r: r.status != "pending")
        self.assertEqual(record.status, "ready")


class ResumeTests(PebbleTestCase):
    """An order left behind by a daemon killed mid-order is resumed, not placed again."""

    async def leave_order(self, name: str, answer: bool) -> Certificate:
        """Place an order for ``name`` as a daemon that is then killed; its pending record.

        ``answer`` also publishes and answers the challenges (Pebble validates them, the
        order becomes ``ready``) before the "daemon" dies without finalizing.
        """
        pool = ThreadPool(minthreads=1, maxthreads=1, name="killed-daemon")
        pool.start()
        self.addCleanup(pool.stop)
        threads: IReactorFromThreads = _reactor
        killed = ThreadedOrderClient(threads, reactor, pool, self.pebble.ca_bundle)
        directory = self.pebble.directory_url
        account_key = await killed.generate_key("account")
        await self.storage.accounts.put(directory, account_key)
        request = OrderRequest(
            directory, (name,), "", account_key, await killed.generate_key("certificate")
        )
        pending = await killed.begin(request)
        if answer:
            for challenge in pending.challenges:
                await self.storage.challenges.put(challenge.token, challenge.key_authorization, 60)
            await deferToThreadPool(threads, pool, _thd_answer, pending)
            for _ in range(int(WAIT / 0.1)):
                if "set VALID by completed challenge" in self.pebble.log_text():
                    break
                await deferLater(reactor, 0.1, lambda: None)
        record = Certificate(
            cert_name="left",
            domains=(name,),
            acme_directory_url=directory,
            order_url=pending.order_url,
            order_account_url=pending.account_url,
        )
        await self.storage.certificates.create(record)
        return record

    async def test_pending_order_is_resumed(self) -> None:
        """An order whose challenges were never answered is answered and finished."""
        self.serve_challenges()
        left = await self.leave_order("pending.example.test", answer=False)
        self.assertEqual(self.pebble.order_count(), 1)
        self.start_service()
        record = await self.wait_for("left", lambda r: r.status != "pending")
        self.assert_issued_by_pebble(record, ("pending.example.test",))
        self.assertEqual(self.pebble.order_count(), 1, "no second order")
        self.assertIsNone(record.order_url)
        order_id = (left.order_url or "").rsplit("/", 1)[-1]
        self.assertIn(f"for order {order_id}", self.pebble.log_text(), "the order left behind")

    async def test_validated_order_is_finalized(self) -> None:
        """An order validated before the daemon died is only finalized, with a new key."""
        self.serve_challenges()
        await self.leave_order("ready.example.test", answer=True)
        self.start_service()
        record = await self.wait_for("left", lambda r: r.status != "pending")
        self.assert_issued_by_pebble(record, ("ready.example.test",))
        self.assertEqual(self.pebble.order_count(), 1, "no second order")
        self.assertEqual(self.pebble.log_text().count("set VALID by completed challenge"), 1)

    async def test_order_the_ca_no_longer_has_is_placed_anew(self) -> None:
        """An order URL the CA does not know (expired, CA restarted) means a new order."""
        self.serve_challenges()
        await self.storage.certificates.create(
            Certificate(
                cert_name="gone",
                domains=("gone.example.test",),
                acme_directory_url=self.pebble.directory_url,
                order_url=self.pebble.directory_url.replace("/dir", "/my-order/no-such-order"),
            )
        )
        self.start_service()
        record = await self.wait_for("gone", lambda r: r.status != "pending")
        self.assert_issued_by_pebble(record, ("gone.example.test",))
        self.assertEqual(self.pebble.order_count(), 1)


def _thd_answer(order: PendingOrder) -> None:
    """Answer every challenge of ``order`` (blocking, in the test's thread pool)."""
    client, _order, todo = order.state
    for _identifier, challenge, response in todo:
        client.answer_challenge(challenge, response)


class RenewalTests(PebbleTestCase):
    """Short-lived certificates are renewed automatically before they expire."""

    validity_seconds = 60

    async def test_sixty_second_certificate_is_renewed_before_expiry(self) -> None:
        """A 60-second certificate is replaced by a new one while still valid.

        The threshold (57 s before expiry) would make it due 3 s after issuance; a
        certificate is kept for a third of its lifetime, so it is renewed after 20 s.
        """
        self.serve_challenges()
        service = self.start_service(renewal_threshold_days=57 / 86400, renewal_check_interval=0.5)
        await service.request_certificate("short", ["short.example.test"])
        first = await self.wait_for("short", lambda r: r.status == "ready")
        assert first.not_after is not None
        self.assertLessEqual(first.not_after - (first.not_before or 0), 60)
        renewed = await self.wait_for(
            "short", lambda r: r.fingerprint_sha256 != first.fingerprint_sha256
        )
        self.assert_issued_by_pebble(renewed, ("short.example.test",))
        self.assertGreater(renewed.not_after or 0, first.not_after)
        self.assertLess(renewed.updated_at, first.not_after, "renewed before expiry")


class BadNonceTests(PebbleTestCase):
    """Issuance survives a CA that rejects a fifth of all nonces."""

    nonce_reject_percent = 20

    async def test_issuance_succeeds_despite_bad_nonces(self) -> None:
        """With PEBBLE_WFE_NONCEREJECT=20 a two-name certificate is still issued."""
        self.serve_challenges()
        service = self.start_service()
        names = ("nonce1.example.test", "nonce2.example.test")
        await service.request_certificate("nonces", list(names))
        record = await self.wait_for("nonces", lambda r: r.status != "pending")
        self.assert_issued_by_pebble(record, names)


class SharedRedisTests(PebbleTestCase):
    """Two daemons, each with its own connection to one real redis-server."""

    def setUp(self) -> None:
        """Pebble, a redis-server and two connections sharing the secret key."""
        super().setUp()
        server = RedisServer.for_test(self)
        box = SecretBox.generate()
        self.daemons = [connect_storage(server.address(), box, 5.0, reactor) for _ in range(2)]
        for storage in self.daemons:
            self.addCleanup(storage.close)
        self.storage = self.daemons[0]

    async def test_two_daemons_on_one_redis_place_one_order(self) -> None:
        """Both daemons scan the same pending record; one order reaches Pebble.

        The challenges are served from the other daemon's connection, as when the
        CA's request lands on a daemon that did not place the order.
        """
        first, second = self.daemons
        self.serve_challenges(second)
        await first.certificates.create(
            Certificate(cert_name="shared", domains=("redis.example.test",))
        )
        before = self.pebble.order_count()
        services = [self.start_service(storage=storage) for storage in self.daemons]
        await services[0].check_now()
        await services[1].check_now()
        record = await self.wait_for("shared", lambda r: r.status != "pending")
        self.assert_issued_by_pebble(record, ("redis.example.test",))
        seen_by_second = await second.certificates.get("shared")
        assert seen_by_second is not None
        self.assertEqual(seen_by_second.private_key_pem, record.private_key_pem)
        await deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(self.pebble.order_count() - before, 1)

    async def test_lock_of_a_killed_daemon_expires_and_the_order_completes(self) -> None:
        """A lock left in Redis by a daemon killed mid-order expires; the other daemon orders."""
        first, second = self.daemons
        self.serve_challenges(second)
        await first.certificates.create(
            Certificate(cert_name="orphan", domains=("orphan.example.test",))
        )
        self.assertIsNotNone(await first.locks.acquire("acme:orphan", 1.0))
        self.start_service(lock_ttl=1.0, storage=second)
        record = await self.wait_for("orphan", lambda r: r.status != "pending")
        self.assert_issued_by_pebble(record, ("orphan.example.test",))
