"""Tests for :mod:`oauthproxy.requestlog.noise` (pure)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.requestlog.noise import OTHER_HOSTS, NoiseBudget, NoiseCount, minute_of


class NoiseBudgetTests(SynchronousTestCase):
    """A few records per minute; everything counted; counters bounded."""

    def test_budget_is_per_minute(self) -> None:
        """``per_minute`` admissions, then none until the next minute starts."""
        budget = NoiseBudget(per_minute=2)
        self.assertEqual(
            [budget.admit(60.0 + n, "unknown_host", "x") for n in range(4)],
            [True, True, False, False],
        )
        self.assertTrue(budget.admit(120.0, "unknown_host", "x"))

    def test_every_request_is_counted(self) -> None:
        """Admitted or not, each request adds one to its (minute, reason, host) counter."""
        budget = NoiseBudget(per_minute=0)
        for host in ("a", "a", "b"):
            self.assertFalse(budget.admit(61.0, "misdirected", host))
        self.assertEqual(
            budget.take(),
            [NoiseCount(60, "misdirected", "a", 2), NoiseCount(60, "misdirected", "b", 1)],
        )
        self.assertEqual(budget.take(), [])

    def test_hosts_past_the_limit_share_one_counter(self) -> None:
        """Random Host values cannot make counters without bound: the rest count as ``*``."""
        budget = NoiseBudget(per_minute=0, max_hosts=3)
        for n in range(100):
            budget.admit(0.0, "unknown_host", f"h{n}")
        counts = budget.take()
        self.assertEqual(len(counts), 4)
        self.assertEqual([c.count for c in counts if c.host == OTHER_HOSTS], [97])

    def test_counts_given_back_are_kept_for_the_next_take(self) -> None:
        """A failed write loses no count."""
        budget = NoiseBudget()
        budget.admit(0.0, "bad_request", "x")
        taken = budget.take()
        budget.admit(1.0, "bad_request", "x")
        budget.give_back(taken)
        self.assertEqual(budget.take(), [NoiseCount(0, "bad_request", "x", 2)])

    def test_minute_of(self) -> None:
        """The start of the minute."""
        self.assertEqual((minute_of(119.9), minute_of(120.0)), (60, 120))
