"""Tests for :mod:`oauthproxy.oauth.limits`: per-source token buckets (ATK-37)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.oauth.limits import Rate, SourceLimiter, source_key


class SourceKeyTests(SynchronousTestCase):
    """Whose bucket an address uses (ATK-37)."""

    def test_ipv4_is_per_address(self) -> None:
        """ATK-37: each IPv4 address has its own bucket."""
        self.assertEqual(source_key("192.0.2.7"), "192.0.2.7")
        self.assertNotEqual(source_key("192.0.2.7"), source_key("192.0.2.8"))

    def test_ipv6_is_per_64(self) -> None:
        """ATK-37: addresses of one /64 share a bucket, so rotating within it gains nothing."""
        self.assertEqual(source_key("2001:db8::1"), source_key("2001:db8::ffff:1"))
        self.assertEqual(source_key("2001:db8::1"), "2001:db8::/64")
        self.assertNotEqual(source_key("2001:db8::1"), source_key("2001:db8:0:1::1"))

    def test_mapped_ipv4_is_the_ipv4_address(self) -> None:
        """ATK-37: a dual-stack listener's ``::ffff:a.b.c.d`` counts as ``a.b.c.d``."""
        self.assertEqual(source_key("::ffff:192.0.2.7"), "192.0.2.7")

    def test_no_address_is_one_bucket(self) -> None:
        """A connection without an IP (a unix socket) shares one bucket."""
        self.assertEqual(source_key(None), "unknown")


class LimiterTests(SynchronousTestCase):
    """A token bucket per source (ATK-37)."""

    def setUp(self) -> None:
        """Three per minute."""
        self.clock = Clock()
        self.limits = SourceLimiter(Rate(3, 60.0), self.clock)

    def test_burst_then_wait(self) -> None:
        """ATK-37: a full bucket allows ``count`` at once, then says how long to wait."""
        self.assertEqual([self.limits.take("a") for _ in range(3)], [None, None, None])
        self.assertEqual(self.limits.take("a"), 20)
        self.assertIsNone(self.limits.take("b"))

    def test_bucket_refills(self) -> None:
        """ATK-37: one request comes back every period / count seconds."""
        for _ in range(3):
            self.limits.take("a")
        self.clock.advance(19)
        self.assertIsNotNone(self.limits.retry_after("a"))
        self.clock.advance(1)
        self.assertIsNone(self.limits.take("a"))

    def test_asking_spends_nothing(self) -> None:
        """ATK-37: ``retry_after`` only looks; ``spend`` counts (failures, after the fact)."""
        for _ in range(10):
            self.assertIsNone(self.limits.retry_after("a"))
        for _ in range(3):
            self.limits.spend("a")
        self.assertEqual(self.limits.retry_after("a"), 20)

    def test_no_rate_means_no_limit(self) -> None:
        """Limits switched off (``off``) never refuse."""
        limits = SourceLimiter(None, self.clock)
        self.assertTrue(all(limits.take("a") is None for _ in range(1000)))

    def test_memory_is_bounded(self) -> None:
        """ATK-28: at most ``max_sources`` buckets; the least recently used goes first."""
        limits = SourceLimiter(Rate(1, 60.0), self.clock, max_sources=2)
        limits.take("a")
        limits.take("b")
        limits.take("c")
        self.assertEqual(len(limits._buckets), 2)
        self.assertIsNone(limits.retry_after("a"))  # forgotten: a full bucket again

    @given(st.lists(st.floats(min_value=0, max_value=30), max_size=60))
    def test_never_more_than_the_rate_allows(self, gaps: list[float]) -> None:
        """ATK-37: over any run, accepted <= count + elapsed * rate."""
        clock = Clock()
        limits = SourceLimiter(Rate(3, 60.0), clock)
        accepted = 0
        for gap in gaps:
            clock.advance(gap)
            if limits.take("a") is None:
                accepted += 1
        self.assertLessEqual(accepted, 3 + clock.seconds() * 3 / 60.0 + 1e-9)
