"""Tests for :class:`oauthproxy.acme.service.IssuingService`: failures, backoff and locks.

Same setting as :mod:`tests.acme.test_service` (Clock, MemoryStorage, fake CA).
"""

from __future__ import annotations

from oauthproxy.acme.certs import BACKOFF_BASE
from oauthproxy.acme.client import AcmeOrderError
from oauthproxy.errors import Conflict
from oauthproxy.model import Certificate
from tests.acme.test_service import ServiceTestCase


class FailureTests(ServiceTestCase):
    """Failed orders: readable reason, backoff, no hot loop, CA budget."""

    def fail_next(self, detail: str = "validation failed for a.example.com: 404") -> None:
        """Fail the oldest outstanding order."""
        pending = [d for d in self.orders.completions if not d.called]
        pending[0].errback(AcmeOrderError(detail, ("a.example.com",)))

    def test_failure_is_recorded_with_reason_and_retry_time(self) -> None:
        """The record becomes failed with the reason, one failure and retry_at = now + base."""
        self.orders.manual = True
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        self.fail_next()
        record = self.record("a")
        self.assertEqual(record.status, "failed")
        self.assertEqual(record.error, "validation failed for a.example.com: 404")
        self.assertEqual(record.failures, 1)
        self.assertEqual(record.retry_at, self.clock.seconds() + BACKOFF_BASE)

    def test_no_retry_before_retry_at_then_one(self) -> None:
        """Nothing is ordered until retry_at; then exactly one retry, with a doubled backoff."""
        self.orders.manual = True
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        self.fail_next()
        self.clock.advance(BACKOFF_BASE - 1)
        self.assertEqual(len(self.orders.requests), 1)
        self.clock.advance(1)
        self.assertEqual(len(self.orders.requests), 2)
        self.fail_next()
        record = self.record("a")
        self.assertEqual(record.failures, 2)
        self.assertEqual(record.retry_at, self.clock.seconds() + 2 * BACKOFF_BASE)

    def test_retry_schedule_survives_a_restart(self) -> None:
        """A new daemon reading a failed record waits for its retry_at too."""
        self.store(
            Certificate(
                cert_name="a",
                domains=("a.example.com",),
                status="failed",
                error="earlier failure",
                failures=3,
                retry_at=self.clock.seconds() + 100,
            )
        )
        restarted = self.make_service()
        restarted.startService()
        self.addCleanup(self.stop, restarted)
        self.clock.advance(99)
        self.assertEqual(self.orders.requests, [])
        self.clock.advance(1)
        self.assertEqual(len(self.orders.requests), 1)
        self.run_scans()

    def test_unexpected_error_is_recorded_without_hot_loop(self) -> None:
        """An unexpected exception ends as a failure with a retry time, not an instant retry."""

        self.orders.begin_error = ValueError("boom")
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        self.run_scans()
        record = self.record("a")
        self.assertEqual(record.status, "failed")
        self.assertIn("boom", record.error or "")
        self.assertGreaterEqual(record.retry_at or 0, self.clock.seconds() + BACKOFF_BASE)
        self.flushLoggedErrors(ValueError)

    def test_renew_refused_when_failure_budget_is_spent(self) -> None:
        """After 5 failed authorizations of a name within the hour, renew() is a Conflict."""
        self.orders.manual = True
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        self.fail_next()
        for _ in range(4):
            self.service.renew("a")
            self.fail_next()
        self.assertEqual(self.record("a").failures, 5)
        failure = self.failureResultOf(self.service.renew("a"), Conflict)
        self.assertIn("a.example.com", failure.value.detail)
        self.assertEqual(len(self.orders.requests), 5)

    def test_failed_authorizations_are_kept_in_the_record(self) -> None:
        """The failed identifiers and their times are stored for every daemon to see."""
        self.orders.manual = True
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        self.fail_next()
        self.assertEqual(
            self.record("a").failed_authorizations, (("a.example.com", self.clock.seconds()),)
        )

    def test_budget_spent_elsewhere_holds_back_another_certificate(self) -> None:
        """Five recent failures for a name in one record delay a new certificate for it.

        The budget comes from the shared records, so it holds across daemons and restarts.
        """
        now = self.clock.seconds()
        self.store(
            Certificate(
                cert_name="old",
                domains=("a.example.com",),
                status="failed",
                failures=5,
                retry_at=now + 86400,
                failed_authorizations=tuple(("a.example.com", now - 50 + i) for i in range(5)),
            )
        )
        self.successResultOf(self.service.request_certificate("new", ["a.example.com"]))
        self.run_scans()
        self.assertEqual(self.orders.requests, [])
        self.failureResultOf(self.service.renew("new"), Conflict)
        self.clock.advance(3600 - 50)
        self.assertEqual([r.domains for r in self.orders.requests], [("a.example.com",)])

    def test_store_outage_does_not_stop_the_schedule(self) -> None:
        """A scan that fails because the store is down is logged; the next one works."""
        self.storage.set_available(False)
        self.clock.advance(3600)
        self.storage.set_available(True)
        self.store(Certificate(cert_name="a", domains=("a.example.com",)))
        self.clock.advance(3600)
        self.assertEqual(self.record("a").status, "ready")
        self.assertTrue(self.flushLoggedErrors())


class LockTests(ServiceTestCase):
    """Cluster safety through the store's locks."""

    def test_certificate_locked_elsewhere_is_not_ordered_until_the_lock_expires(self) -> None:
        """A lock held by another (dead) daemon defers the order until its TTL has passed."""
        token = self.successResultOf(self.storage.locks.acquire("acme:a", 60.0))
        self.assertIsNotNone(token)
        self.store(Certificate(cert_name="a", domains=("a.example.com",)))
        self.successResultOf(self.service.check_now())
        self.run_scans()
        self.assertEqual(self.orders.requests, [])
        self.clock.advance(60)
        self.assertEqual(len(self.orders.requests), 1)
        self.assertEqual(self.record("a").status, "ready")

    def test_result_is_not_stored_after_the_lock_was_lost(self) -> None:
        """If the lock expired and another daemon took it, the finished order is not written."""
        self.orders.manual = True
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        del self.storage.state.locks["acme:a"]
        self.successResultOf(self.storage.locks.acquire("acme:a", 600.0))
        self.orders.completions[0].callback(self.chain)
        self.assertEqual(self.record("a").status, "pending")

    def test_lock_is_released_after_the_order(self) -> None:
        """A finished order leaves no lock behind."""
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        self.assertEqual(self.storage.state.locks, {})

    def test_second_service_finds_the_certificate_ready(self) -> None:
        """A daemon scanning after another issued the certificate orders nothing."""
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        other = self.make_service()
        other.startService()
        self.addCleanup(self.stop, other)
        self.run_scans()
        self.assertEqual(len(self.orders.requests), 1)
