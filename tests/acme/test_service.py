"""Tests for :class:`oauthproxy.acme.service.IssuingService` on a Clock and MemoryStorage.

The ACME side is :class:`tests.acme.fakes.FakeOrderClient`; the real protocol is
exercised against Pebble in ``tests/integration/test_acme_pebble.py``.
"""

from __future__ import annotations

from attrs import evolve
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.acme.certs import BACKOFF_BASE, parse_certificate
from oauthproxy.acme.client import AcmeOrderError
from oauthproxy.acme.service import IssuingService, make_issuing_service
from oauthproxy.config import Config
from oauthproxy.errors import Conflict, InvalidInput, NotFound
from oauthproxy.model import Certificate
from oauthproxy.testing import MemoryStorage
from tests.acme.fakes import EPOCH, FakeOrderClient, make_chain

PRODUCTION = "https://acme.test/dir"
STAGING = "https://staging.acme.test/dir"
#: the fake chain's validity: 90 days from EPOCH
NOT_BEFORE = EPOCH.timestamp()
NOT_AFTER = NOT_BEFORE + 90 * 86400


class ServiceTestCase(SynchronousTestCase):
    """A started service on a Clock at the fake chain's not-before time."""

    max_workers = 2

    def setUp(self) -> None:
        """Clock, store, fake CA and a running service."""
        self.clock = Clock()
        self.clock.advance(NOT_BEFORE)
        self.storage = MemoryStorage(self.clock)
        self.chain, _ = make_chain(["a.example.com"])
        self.orders = self.make_orders()
        self.addCleanup(self.assert_nothing_scheduled)
        self.service = self.make_service()
        self.service.startService()
        self.addCleanup(self.stop, self.service)

    def make_orders(self) -> FakeOrderClient:
        """The fake CA, completing orders with this test's chain."""
        return FakeOrderClient(chain=self.chain)

    def make_service(self) -> IssuingService:
        """A service on this test's clock, store and fake CA (not started)."""
        config = Config(
            acme_directory_url=PRODUCTION,
            acme_staging_url=STAGING,
            admin_email="admin@example.com",
            renewal_check_interval=3600.0,
            renewal_threshold_days=30.0,
            cert_gen_max_workers=self.max_workers,
        )
        return IssuingService(
            storage=self.storage,
            config=config,
            clock=self.clock,
            orders=self.orders,
            random=lambda: 0.0,
        )

    def stop(self, service: IssuingService) -> None:
        """Fail orders the test left open, then stop ``service`` (which waits for them)."""
        for completion in self.orders.completions:
            if not completion.called:
                completion.errback(AcmeOrderError("test over"))
        if service.running:
            self.successResultOf(service.stopService())

    def assert_nothing_scheduled(self) -> None:
        """Stopped services leave no timers behind."""
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def record(self, cert_name: str) -> Certificate:
        """The stored record."""
        record = self.successResultOf(self.storage.certificates.get(cert_name))
        assert record is not None
        return record

    def store(self, record: Certificate) -> None:
        """Create ``record`` in the store."""
        self.successResultOf(self.storage.certificates.create(record))

    def run_scans(self) -> None:
        """Let scheduled scans after finished attempts run."""
        self.clock.advance(0)


class RequestTests(ServiceTestCase):
    """Recording new certificates."""

    def test_request_stores_pending_record_with_defaults(self) -> None:
        """A request is stored pending, with ADMIN_EMAIL and the production directory."""
        self.orders.manual = True
        record = self.successResultOf(
            self.service.request_certificate("site", ["Site.Example.com"], owner="alice")
        )
        self.assertEqual(record.status, "pending")
        self.assertEqual(record.domains, ("site.example.com",))
        self.assertEqual(record.email, "admin@example.com")
        self.assertEqual(record.acme_directory_url, PRODUCTION)
        self.assertEqual(record.owner, "alice")
        # the order placed since then is remembered in the stored record
        stored = evolve(self.record("site"), order_url=None, order_account_url=None)
        self.assertEqual(stored, record)

    def test_staging_request_uses_staging_directory(self) -> None:
        """A staging certificate is ordered from ACME_STAGING_URL."""
        self.successResultOf(
            self.service.request_certificate("s", ["s.example.com"], email="", staging=True)
        )
        self.assertEqual([r.directory_url for r in self.orders.requests], [STAGING])
        self.assertEqual(self.orders.requests[0].email, "")

    def test_invalid_domain_is_refused_and_nothing_stored(self) -> None:
        """A wildcard is InvalidInput naming ``domains``; no record is written."""
        failure = self.failureResultOf(
            self.service.request_certificate("w", ["*.example.com"]), InvalidInput
        )
        self.assertEqual(failure.value.field, "domains")
        self.assertEqual(self.successResultOf(self.storage.certificates.list()), [])

    def test_invalid_name_is_refused(self) -> None:
        """A certificate name with a slash is InvalidInput naming ``cert_name``."""
        failure = self.failureResultOf(
            self.service.request_certificate("a/b", ["a.example.com"]), InvalidInput
        )
        self.assertEqual(failure.value.field, "cert_name")

    def test_duplicate_name_is_a_conflict(self) -> None:
        """Requesting an existing name fails with Conflict."""
        self.successResultOf(self.service.request_certificate("x", ["a.example.com"]))
        self.failureResultOf(self.service.request_certificate("x", ["b.example.com"]), Conflict)

    def test_get_unknown_is_not_found(self) -> None:
        """Reading an unknown certificate fails with NotFound."""
        self.failureResultOf(self.service.get("nope"), NotFound)


class IssueTests(ServiceTestCase):
    """Successful orders."""

    def test_successful_order_stores_ready_certificate_with_facts(self) -> None:
        """The chain, key and facts parsed from the leaf are stored with status ready."""
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        record = self.record("a")
        info = parse_certificate(self.chain)
        self.assertEqual(record.status, "ready")
        self.assertEqual(record.fullchain_pem, self.chain)
        self.assertEqual(record.private_key_pem, "certificate-key-2")
        self.assertEqual((record.not_before, record.not_after), (NOT_BEFORE, NOT_AFTER))
        self.assertEqual(record.fingerprint_sha256, info.fingerprint_sha256)
        self.assertEqual(record.issuer, "Test CA")

    def test_ready_event_is_published(self) -> None:
        """Storing the issued certificate publishes ``certificate_ready``."""
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        types = [e.type for e in self.storage.state.events if e.key == "a"]
        self.assertEqual(types[-1], "certificate_ready")

    def test_account_key_is_created_once_per_directory(self) -> None:
        """The account key is stored for the directory and reused by the next order."""
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        self.successResultOf(self.service.request_certificate("b", ["b.example.com"]))
        self.assertEqual(self.orders.keys, ["account", "certificate", "certificate"])
        self.assertEqual(self.storage.state.accounts, {PRODUCTION: "account-key-1"})
        self.assertEqual({r.account_key_pem for r in self.orders.requests}, {"account-key-1"})

    def test_challenges_are_published_during_the_order_and_withdrawn_after(self) -> None:
        """HTTP-01 answers are in the shared store while the CA validates, gone afterwards."""
        self.orders.manual = True
        self.successResultOf(
            self.service.request_certificate("m", ["a.example.com", "b.example.com"])
        )
        self.assertEqual(
            {t: v for t, (v, _) in self.storage.state.challenges.items()},
            {"token1-0": "token1-0.thumb", "token1-1": "token1-1.thumb"},
        )
        self.orders.completions[0].callback(self.chain)
        self.assertEqual(self.storage.state.challenges, {})

    def test_concurrent_orders_are_bounded_by_max_workers(self) -> None:
        """With CERT_GEN_MAX_WORKERS=2 a third order waits for a free slot."""
        self.orders.manual = True
        for name in ("a", "b", "c"):
            self.successResultOf(self.service.request_certificate(name, [f"{name}.example.com"]))
        self.assertEqual(len(self.orders.requests), 2)
        self.orders.completions[0].callback(self.chain)
        self.assertEqual(len(self.orders.requests), 3)

    def test_stop_abandons_the_order_in_flight_without_recording_a_failure(self) -> None:
        """stopService cancels orders waiting for the CA; their records stay due, unfailed."""
        self.orders.manual = True
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        self.successResultOf(self.service.stopService())
        self.assertTrue(self.orders.cancelled)
        record = self.record("a")
        self.assertEqual((record.status, record.failures, record.error), ("pending", 0, None))
        self.assertEqual(self.storage.state.locks, {})
        self.assertEqual(self.storage.state.challenges, {})


class RenewalTests(ServiceTestCase):
    """Scheduled renewal of ready certificates."""

    def issue(self) -> Certificate:
        """Issue ``a`` and return its record."""
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        return self.record("a")

    def test_not_renewed_before_due(self) -> None:
        """Up to 30 days before expiry nothing is ordered."""
        self.issue()
        self.clock.advance(60 * 86400 - 3600)
        self.assertEqual(len(self.orders.requests), 1)

    def test_renewed_when_due(self) -> None:
        """Past 30 days before expiry the periodic check orders a new certificate."""
        first = self.issue()
        self.orders.chain, _ = make_chain(["a.example.com"], days=120)
        self.clock.advance(60 * 86400 + 3600)
        self.assertEqual(len(self.orders.requests), 2)
        renewed = self.record("a")
        self.assertNotEqual(renewed.fingerprint_sha256, first.fingerprint_sha256)
        self.assertEqual(renewed.status, "ready")

    def test_failed_renewal_keeps_the_certificate_and_schedules_a_retry(self) -> None:
        """A renewal failure records the reason but keeps serving the valid certificate."""
        first = self.issue()
        self.orders.manual = True
        self.clock.advance(60 * 86400 + 3600)
        self.orders.completions[0].errback(AcmeOrderError("validation failed for a", ("a",)))
        record = self.record("a")
        self.assertEqual(record.status, "ready")
        self.assertEqual(record.fullchain_pem, first.fullchain_pem)
        self.assertEqual(record.error, "validation failed for a")
        self.assertEqual(record.retry_at, self.clock.seconds() + BACKOFF_BASE)

    def test_renew_orders_at_once(self) -> None:
        """renew() orders now, whatever the schedule, and fires with the new record."""
        self.issue()
        renewed = self.successResultOf(self.service.renew("a"))
        assert renewed is not None
        self.assertEqual(len(self.orders.requests), 2)
        self.assertEqual(renewed.status, "ready")

    def test_renew_unknown_is_not_found(self) -> None:
        """renew() of an unknown certificate fails with NotFound."""
        self.failureResultOf(self.service.renew("nope"), NotFound)


class ConvertTests(ServiceTestCase):
    """Moving certificates between the staging and production directories."""

    def test_staging_certificate_is_reordered_from_production(self) -> None:
        """Converting a ready staging certificate orders it from production, keeping it served."""
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"], staging=True))
        self.orders.manual = True
        moved = self.successResultOf(self.service.convert("a", staging=False))
        self.assertEqual((moved.staging, moved.acme_directory_url), (False, PRODUCTION))
        self.assertEqual(moved.status, "ready")
        self.assertEqual([r.directory_url for r in self.orders.requests], [STAGING, PRODUCTION])
        self.orders.completions[0].callback(self.chain)
        self.assertEqual(self.record("a").acme_directory_url, PRODUCTION)
        self.assertEqual(self.record("a").status, "ready")

    def test_convert_during_a_renewal_wins(self) -> None:
        """Issue 10 defect 10: a renewal in flight when convert comes in stores nothing;
        the certificate is then ordered from the new directory (the later request wins)."""
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"], staging=True))
        self.orders.manual = True
        self.service.renew("a")
        self.successResultOf(self.service.convert("a", staging=False))
        [renewal] = self.orders.completions
        renewal.callback(self.chain)  # the staging renewal finishes after the convert
        self.run_scans()
        self.assertEqual(
            [r.directory_url for r in self.orders.requests], [STAGING, STAGING, PRODUCTION]
        )
        record = self.record("a")
        self.assertEqual((record.staging, record.acme_directory_url), (False, PRODUCTION))
        self.assertIsNotNone(record.retry_at, "still due until the production order is in")
        self.orders.completions[1].callback(self.chain)
        record = self.record("a")
        self.assertEqual((record.acme_directory_url, record.retry_at), (PRODUCTION, None))

    def test_convert_unknown_is_not_found(self) -> None:
        """Converting an unknown certificate fails with NotFound."""
        self.failureResultOf(self.service.convert("nope", staging=False), NotFound)


class WiringTests(SynchronousTestCase):
    """The production wiring of :func:`make_issuing_service`."""

    def test_thread_pool_starts_and_stops_with_the_service(self) -> None:
        """The dedicated ACME pool runs only while the service does."""
        clock = Clock()
        service = make_issuing_service(
            MemoryReactor(), clock, MemoryStorage(clock), Config(cert_gen_max_workers=3)
        )
        assert service.pool is not None
        self.assertEqual((service.pool.max, service.pool.name), (3, "acme"))
        service.startService()
        self.assertTrue(service.pool.started)
        self.successResultOf(service.stopService())
        self.assertTrue(service.pool.joined)
        self.assertEqual(clock.getDelayedCalls(), [])


class EmptyRecordTests(ServiceTestCase):
    """Records written by older versions or by hand."""

    def test_ready_record_without_dates_is_renewed(self) -> None:
        """A ready record whose validity is unknown is ordered at the next check."""
        self.store(
            evolve(
                Certificate(cert_name="a", domains=("a.example.com",)),
                status="ready",
            )
        )
        self.successResultOf(self.service.check_now())
        self.assertEqual(len(self.orders.requests), 1)
