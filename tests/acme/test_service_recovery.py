"""Tests for :class:`oauthproxy.acme.service.IssuingService`: no loops, resumed orders.

Same setting as :mod:`tests.acme.test_service` (Clock, MemoryStorage, fake CA):

- a CA whose certificates are already expiring when they arrive (short lifetime or a
  clock far behind ours) must not be asked again and again (1,705 orders were once
  seen in one test);
- an order in flight is remembered in the record, so that the attempt after a daemon
  died mid-order resumes it instead of placing another.
"""

from __future__ import annotations

import datetime

from twisted.internet.defer import Deferred

from oauthproxy.acme.certs import BACKOFF_BASE, MIN_RENEWAL_INTERVAL
from oauthproxy.acme.client import OrderRequest, PendingOrder
from oauthproxy.model import Certificate
from tests.acme.fakes import ACCOUNT_URL, EPOCH, FakeOrderClient, make_chain
from tests.acme.test_service import NOT_BEFORE, PRODUCTION, STAGING, ServiceTestCase

DAY = 86400.0
#: orders the bounded fake CA accepts before it breaks the test's loop
ORDER_LIMIT = 50


class BoundedOrderClient(FakeOrderClient):
    """A fake CA that refuses orders past :data:`ORDER_LIMIT`.

    A regression to the hot loop would otherwise spin forever inside
    ``Clock.advance``: here it ends as a failed attempt and a failed assertion.
    """

    def begin(self, request: OrderRequest) -> Deferred[PendingOrder]:
        """Refuse past the limit (an unexpected error, recorded as a failure)."""
        if len(self.requests) >= ORDER_LIMIT:
            self.requests.append(request)
            raise RuntimeError("too many orders: the issuing service is looping")
        return super().begin(request)


class ExpiringCertificateTests(ServiceTestCase):
    """A CA handing out certificates that are due for renewal at once causes no loop."""

    def make_orders(self) -> FakeOrderClient:
        """The bounded fake CA, issuing 90-day certificates starting at EPOCH."""
        return BoundedOrderClient(chain=self.chain)

    def advance(self, seconds: float, step: float = 10.0) -> None:
        """Let ``seconds`` pass in steps, as a running reactor would."""
        for _ in range(int(seconds / step)):
            self.clock.advance(step)

    def test_certificate_expired_on_arrival_is_reordered_with_backoff_only(self) -> None:
        """Our clock is 100 days past the CA's: each certificate has expired on arrival.

        Within an hour it is ordered at 0, 300, 900 and 2100 seconds (the failure
        backoff), never in a loop; the chain is stored (better than nothing) with a
        readable reason and the next attempt's time.
        """
        self.clock.advance(100 * DAY)
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        self.advance(3600)
        self.assertEqual(len(self.orders.requests), 4)
        record = self.record("a")
        self.assertEqual((record.status, record.failures), ("ready", 4))
        self.assertEqual(record.fullchain_pem, self.chain)
        self.assertIn("due for renewal already", record.error or "")
        self.assertEqual(record.retry_at, NOT_BEFORE + 100 * DAY + 2100 + 8 * BACKOFF_BASE)
        self.assertEqual(self.flushLoggedErrors(RuntimeError), [])

    def test_certificate_within_the_threshold_on_arrival_is_renewed_later(self) -> None:
        """With 9 days left on arrival (< 30-day threshold) the next order is 6 days later.

        Two thirds of what is left, counted from our issuance; one order meanwhile.
        """
        self.clock.advance(81 * DAY)
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        record = self.record("a")
        self.assertEqual((record.error, record.retry_at, record.failures), (None, None, 0))
        self.assertEqual(record.issued_at, self.clock.seconds())
        self.advance(6 * DAY - 600, step=600.0)
        self.advance(590)
        self.assertEqual(len(self.orders.requests), 1)
        self.advance(20)
        self.assertEqual(len(self.orders.requests), 2)

    def test_short_lived_certificate_is_renewed_at_two_thirds_not_in_a_loop(self) -> None:
        """A one-hour certificate (threshold 30 days > lifetime) is renewed every 40 min."""
        self.orders.chain = short_chain(self.clock.seconds(), 3600)
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        self.orders.chain = short_chain(self.clock.seconds() + 2400, 3600)
        self.advance(3600)
        self.assertEqual(len(self.orders.requests), 2)
        self.assertEqual(self.record("a").issued_at, NOT_BEFORE + 2400)

    def test_good_certificate_after_expiring_ones_ends_the_backoff(self) -> None:
        """Once the CA issues a usable certificate again, failures and retry_at are cleared."""
        self.clock.advance(100 * DAY)
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        self.orders.chain, _ = make_chain(["a.example.com"], days=200)
        self.advance(BACKOFF_BASE)
        self.assertEqual(len(self.orders.requests), 2)
        record = self.record("a")
        self.assertEqual((record.failures, record.error, record.retry_at), (0, None, None))

    def test_renewal_waits_the_minimum_interval_after_a_forced_issuance(self) -> None:
        """A record whose dates say "due" but that was issued just now waits the minimum."""
        self.clock.advance(100 * DAY)
        now = self.clock.seconds()
        self.store(
            Certificate(
                cert_name="a",
                domains=("a.example.com",),
                status="ready",
                fullchain_pem=self.chain,
                not_before=NOT_BEFORE,
                not_after=NOT_BEFORE + 90 * DAY,
                issued_at=now,
            )
        )
        self.successResultOf(self.service.check_now())
        self.advance(MIN_RENEWAL_INTERVAL - 1, step=1.0)
        self.assertEqual(self.orders.requests, [])
        self.advance(2, step=1.0)
        self.assertEqual(len(self.orders.requests), 1)


def short_chain(start: float, seconds: int) -> str:
    """A chain whose leaf is valid for ``seconds`` from POSIX time ``start``."""
    offset = datetime.timedelta(seconds=start - EPOCH.timestamp())
    pem, _ = make_chain(["a.example.com"], days=0, start=EPOCH + offset, seconds=seconds)
    return pem


class ResumeTests(ServiceTestCase):
    """The order in flight is kept in the record and resumed after a crash."""

    order_url = "https://acme.test/order/77"

    def pending_with_order(self) -> Certificate:
        """A pending record whose order (placed by a dead daemon) the CA still has."""
        record = Certificate(
            cert_name="a",
            domains=("a.example.com",),
            acme_directory_url=PRODUCTION,
            order_url=self.order_url,
            order_account_url=ACCOUNT_URL,
        )
        self.orders.resumable.add(self.order_url)
        return record

    def test_order_url_is_stored_while_the_order_runs(self) -> None:
        """Once the CA created the order, its URL and account are in the record."""
        self.orders.manual = True
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        record = self.record("a")
        self.assertEqual(
            (record.order_url, record.order_account_url),
            ("https://acme.test/order/1", ACCOUNT_URL),
        )

    def test_order_url_is_cleared_when_the_certificate_is_issued(self) -> None:
        """A finished order is not resumed by the next renewal."""
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        record = self.record("a")
        self.assertEqual(
            (record.status, record.order_url, record.order_account_url), ("ready", None, None)
        )

    def test_order_url_is_cleared_after_a_failure(self) -> None:
        """A failed order is not resumed: the retry places a new one."""
        self.orders.manual = True
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        self.orders.completions[0].errback(ValueError("boom"))
        self.assertEqual(self.record("a").order_url, None)
        self.flushLoggedErrors(ValueError)

    def test_attempt_after_a_crash_resumes_the_stored_order(self) -> None:
        """The next attempt asks the CA for the stored order (same account) and finishes it."""
        self.store(self.pending_with_order())
        self.successResultOf(self.service.check_now())
        [request] = self.orders.requests
        self.assertEqual(
            (request.resume_url, request.resume_account_url), (self.order_url, ACCOUNT_URL)
        )
        record = self.record("a")
        self.assertEqual((record.status, record.order_url), ("ready", None))

    def test_order_abandoned_at_shutdown_is_resumed_by_the_next_daemon(self) -> None:
        """Stopping mid-order keeps the order URL; the next daemon resumes that order."""
        self.orders.manual = True
        self.successResultOf(self.service.request_certificate("a", ["a.example.com"]))
        self.successResultOf(self.service.stopService())
        self.assertEqual(self.record("a").order_url, "https://acme.test/order/1")
        self.orders.manual = False
        self.orders.cancelled = False
        restarted = self.make_service()
        restarted.startService()
        self.addCleanup(self.stop, restarted)
        self.assertEqual(
            [r.resume_url for r in self.orders.requests], [None, "https://acme.test/order/1"]
        )
        self.assertEqual(self.record("a").status, "ready")

    def test_convert_forgets_the_order_in_flight(self) -> None:
        """An order at the old directory is not resumed after a move to the other one."""
        self.orders.manual = True
        self.store(self.pending_with_order())
        self.successResultOf(self.service.convert("a", staging=True))
        [request] = self.orders.requests
        self.assertEqual((request.directory_url, request.resume_url), (STAGING, None))
