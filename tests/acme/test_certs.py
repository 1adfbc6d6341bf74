"""Tests for :mod:`oauthproxy.acme.certs`: certificate facts and issuance timing (pure)."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.acme.certs import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    MIN_RENEWAL_INTERVAL,
    FailureBudget,
    backoff_delay,
    due_at_issuance,
    normalize_domains,
    parse_certificate,
    renewal_due,
)
from oauthproxy.errors import InvalidInput
from tests.acme.fakes import EPOCH, make_chain


class ParseCertificateTests(SynchronousTestCase):
    """Facts read from the leaf of a PEM chain."""

    def test_reads_names_validity_issuer_and_fingerprint(self) -> None:
        """The record's facts come from the leaf (first) certificate of the chain."""
        pem, der = make_chain(["a.example.com", "b.example.com"], days=90, issuer_cn="R11")
        info = parse_certificate(pem)
        self.assertEqual(info.domains, ("a.example.com", "b.example.com"))
        self.assertEqual(info.not_before, EPOCH.timestamp())
        self.assertEqual(info.not_after, EPOCH.timestamp() + 90 * 86400)
        self.assertEqual(info.issuer, "R11")
        self.assertEqual(info.fingerprint_sha256, hashlib.sha256(der).hexdigest())

    def test_garbage_is_invalid_input(self) -> None:
        """Text without a certificate raises InvalidInput naming the field."""
        error = self.assertRaises(InvalidInput, parse_certificate, "not a certificate")
        self.assertEqual(error.field, "fullchain_pem")


class RenewalDueTests(SynchronousTestCase):
    """When a certificate is due for renewal."""

    def test_long_lived_certificate_renews_threshold_before_expiry(self) -> None:
        """A 90-day certificate with a 30-day threshold is due 30 days before expiry."""
        self.assertEqual(renewal_due(0.0, 90 * 86400.0, 30 * 86400.0), 60 * 86400.0)

    def test_short_lived_certificate_renews_at_two_thirds(self) -> None:
        """A 60-second certificate is due at 40 seconds, not at once (threshold > lifetime)."""
        self.assertEqual(renewal_due(1000.0, 1060.0, 30 * 86400.0), 1040.0)

    def test_threshold_between_a_third_and_two_thirds_of_the_life_wins(self) -> None:
        """A 60-second certificate with a 30-second threshold is due after 30 seconds."""
        self.assertEqual(renewal_due(1000.0, 1060.0, 30.0), 1030.0)

    def test_certificate_is_kept_for_a_third_of_its_life(self) -> None:
        """A 60-second certificate with a 54-second threshold is due after 20 seconds, not 6."""
        self.assertEqual(renewal_due(1000.0, 1060.0, 54.0), 1020.0)

    def test_lifetime_counts_from_issuance_when_the_ca_backdates(self) -> None:
        """A 90-day certificate backdated by a day, received now, is due 60 days from now.

        Counted from its not_before it would be due after 59 days and 8 hours.
        """
        issued = 86400.0
        due = renewal_due(0.0, 91 * 86400.0, 30 * 86400.0, issued_at=issued)
        self.assertEqual(due, issued + 60 * 86400.0)

    def test_expiring_certificate_is_due_two_thirds_into_what_is_left(self) -> None:
        """A certificate with 9 days left when received (CA clock far behind) is due after 6."""
        issued = 81 * 86400.0
        due = renewal_due(0.0, 90 * 86400.0, 30 * 86400.0, issued_at=issued)
        self.assertEqual(due, issued + 6 * 86400.0)

    def test_expired_certificate_is_not_due_before_the_minimum_interval(self) -> None:
        """A certificate that expired before it was received is due no sooner than
        MIN_RENEWAL_INTERVAL after its issuance (the old code: at once, in a loop)."""
        issued = 100 * 86400.0
        due = renewal_due(0.0, 90 * 86400.0, 30 * 86400.0, issued_at=issued)
        self.assertEqual(due, issued + MIN_RENEWAL_INTERVAL)

    def test_six_day_certificate_renews_at_two_thirds(self) -> None:
        """A 6-day certificate with a 30-day threshold is due after 4 days."""
        self.assertEqual(renewal_due(0.0, 6 * 86400.0, 30 * 86400.0), 4 * 86400.0)

    @given(
        st.floats(0, 2e9),
        st.floats(1, 4e7),
        st.floats(0, 4e7),
    )
    def test_due_is_always_before_expiry(
        self, not_before: float, lifetime: float, threshold: float
    ) -> None:
        """Whatever the threshold, renewal is due after issuance and before expiry."""
        due = renewal_due(not_before, not_before + lifetime, threshold)
        self.assertLess(due, not_before + lifetime)
        self.assertGreater(due, not_before)

    @given(
        st.floats(0, 2e9),
        st.floats(-4e7, 4e7),
        st.floats(0, 4e7),
        st.floats(-4e7, 4e7),
    )
    def test_due_is_never_sooner_than_the_minimum_after_issuance(
        self, not_before: float, lifetime: float, threshold: float, issued_after: float
    ) -> None:
        """Whatever the dates (expired, backdated, future), renewal waits for the minimum."""
        issued = not_before + issued_after
        due = renewal_due(not_before, not_before + lifetime, threshold, issued_at=issued)
        self.assertGreaterEqual(due, issued + MIN_RENEWAL_INTERVAL)


class DueAtIssuanceTests(SynchronousTestCase):
    """Which new certificates count as due already (an issuance that must back off)."""

    def test_fresh_certificate_is_not_due(self) -> None:
        """A 90-day certificate received at its not_before is not due."""
        self.assertFalse(due_at_issuance(0.0, 90 * 86400.0, 30 * 86400.0, 0.0))

    def test_sixty_second_certificate_is_not_due(self) -> None:
        """Pebble's 60-second certificates are renewed after 20-40 s, not treated as failures."""
        self.assertFalse(due_at_issuance(1000.0, 1060.0, 57.0, 1000.5))

    def test_expired_certificate_is_due(self) -> None:
        """A certificate that expired before it was received is due already."""
        self.assertTrue(due_at_issuance(0.0, 3600.0, 30 * 86400.0, 7200.0))

    def test_certificate_expiring_within_the_minimum_interval_is_due(self) -> None:
        """A certificate with a few seconds left when received is due already."""
        self.assertTrue(due_at_issuance(0.0, 3600.0, 30 * 86400.0, 3595.0))


class BackoffTests(SynchronousTestCase):
    """Spacing of retries after failures."""

    def test_doubles_from_the_base(self) -> None:
        """Without jitter the delays are base, 2 base, 4 base, ..."""
        delays = [backoff_delay(n, lambda: 0.0) for n in (1, 2, 3, 4)]
        self.assertEqual(
            delays, [BACKOFF_BASE, 2 * BACKOFF_BASE, 4 * BACKOFF_BASE, 8 * BACKOFF_BASE]
        )

    def test_is_capped(self) -> None:
        """After many failures retries are still at least daily."""
        self.assertEqual(backoff_delay(1000, lambda: 0.0), BACKOFF_CAP)

    def test_jitter_only_adds_up_to_a_quarter(self) -> None:
        """Jitter lengthens the delay by at most 25 %, never shortens it."""
        self.assertEqual(backoff_delay(1, lambda: 0.999999), BACKOFF_BASE * (1 + 0.25 * 0.999999))

    @given(st.integers(1, 50), st.lists(st.floats(0, 0.999999), min_size=5, max_size=5))
    def test_no_more_than_four_retries_per_hour(self, first: int, draws: list[float]) -> None:
        """Any four consecutive retry delays add up to more than an hour (CA limit: 5/hour)."""
        total = sum(backoff_delay(first + i, lambda d=d: d) for i, d in enumerate(draws[:4]))
        self.assertGreater(total, 3600.0)


class FailureBudgetTests(SynchronousTestCase):
    """Failed authorizations per identifier stay within the CA's limit."""

    def test_fresh_identifier_may_be_ordered_now(self) -> None:
        """With no failures an order is allowed at once."""
        self.assertEqual(FailureBudget().next_allowed(["a.example"], 100.0), 100.0)

    def test_fifth_failure_in_the_hour_blocks_until_the_oldest_leaves(self) -> None:
        """After 5 failures within the hour the next order waits for the first to age out."""
        budget = FailureBudget()
        for t in (0.0, 10.0, 20.0, 30.0, 40.0):
            budget = budget.record(["a.example"], t)
        self.assertEqual(budget.next_allowed(["a.example"], 50.0), 3600.0)
        self.assertEqual(budget.next_allowed(["b.example"], 50.0), 50.0)

    def test_any_identifier_of_the_order_counts(self) -> None:
        """An order for several names waits for the most constrained one."""
        budget = FailureBudget()
        for t in range(5):
            budget = budget.record(["b.example"], float(t))
        self.assertEqual(budget.next_allowed(["a.example", "b.example"], 10.0), 3600.0)

    def test_from_entries_merges_records_in_time_order(self) -> None:
        """Entries from several records combine per identifier, sorted by time."""
        budget = FailureBudget.from_entries([("a", 30.0), ("b", 5.0), ("a", 10.0)])
        self.assertEqual(budget.failures, {"a": (10.0, 30.0), "b": (5.0,)})

    def test_prune_forgets_failures_outside_the_window(self) -> None:
        """Pruning drops failures older than the window."""
        budget = FailureBudget().record(["a.example"], 0.0).record(["a.example"], 3000.0)
        self.assertEqual(budget.prune(3700.0).failures, {"a.example": (3000.0,)})

    @given(st.lists(st.floats(0, 20000), min_size=1, max_size=40))
    def test_obeying_the_budget_never_exceeds_five_per_hour(self, wishes: list[float]) -> None:
        """Orders started no earlier than next_allowed never fail 6 times in one hour."""
        budget = FailureBudget()
        times: list[float] = []
        now = 0.0
        for wish in sorted(wishes):
            now = max(now, wish, budget.next_allowed(["a.example"], max(now, wish)))
            budget = budget.record(["a.example"], now)
            times.append(now)
        for i, start in enumerate(times):
            in_window = [t for t in times[i:] if t < start + 3600.0]
            self.assertLessEqual(len(in_window), 5)


class NormalizeDomainsTests(SynchronousTestCase):
    """Validation of the names a certificate is ordered for."""

    def test_lowercases_and_deduplicates_in_order(self) -> None:
        """Names are lower-cased, trailing dots dropped, duplicates removed, order kept."""
        self.assertEqual(
            normalize_domains(["B.Example.com", "a.example.com.", "b.example.com"]),
            ("b.example.com", "a.example.com"),
        )

    def test_rejects_wildcards(self) -> None:
        """HTTP-01 cannot validate a wildcard."""
        error = self.assertRaises(InvalidInput, normalize_domains, ["*.example.com"])
        self.assertEqual(error.field, "domains")

    def test_rejects_ip_addresses(self) -> None:
        """An IPv4 address is not a DNS name."""
        self.assertRaises(InvalidInput, normalize_domains, ["127.0.0.1"])

    def test_rejects_empty_list(self) -> None:
        """A certificate needs at least one name."""
        self.assertRaises(InvalidInput, normalize_domains, [])

    def test_rejects_bad_labels(self) -> None:
        """Underscores, empty labels and single-label names are refused."""
        for bad in ["a_b.example.com", "a..example.com", "localhost", "-a.example.com"]:
            self.assertRaises(InvalidInput, normalize_domains, [bad])
