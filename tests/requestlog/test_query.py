"""Searches and statistics over the request log (memory store, no reactor)."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.requestlog import query
from oauthproxy.requestlog.query import LogFilter, Window, days, percentile, window
from oauthproxy.testing import MemoryRequestLogStore, MemoryStorage
from tests.requestlog.samples import T0, sample

T = TypeVar("T")
ALL = Window(T0 - 3600, T0 + 3600)


class QueryTestCase(SynchronousTestCase):
    """A memory request log and a way to run coroutines against it."""

    def setUp(self) -> None:
        """An empty memory store."""
        self.store: MemoryRequestLogStore = MemoryStorage(Clock()).request_log

    def run_(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """The result of ``coroutine`` (the memory store answers at once)."""
        return self.successResultOf(Deferred.fromCoroutine(coroutine))

    def ids(self, where: LogFilter, limit: int = 50, span: Window = ALL) -> list[int]:
        """The sample numbers ``search`` returns (correlation ids end in the number)."""
        found = self.run_(query.search(self.store, where, span, limit))
        return [int(r.correlation_id.rsplit("-", 1)[1], 16) for r in found]


class SearchTests(QueryTestCase):
    """query.search: every filter, newest first, bounded."""

    def setUp(self) -> None:
        """Six varied records."""
        super().setUp()
        self.successResultOf(
            self.store.write(
                [
                    sample(1),
                    sample(2, method="POST", path="/api/items", status=201),
                    sample(3, host="b.example", status=404),
                    sample(4, path="/api/users", status=500),
                    sample(5, client_ip="198.51.100.4", user="octocat", client_id="c1"),
                    sample(6, status=200, error="upstream reset"),
                ]
            )
        )

    def test_no_filter_is_everything_newest_first(self) -> None:
        """An empty filter lists all records, newest first."""
        self.assertEqual(self.ids(LogFilter()), [6, 5, 4, 3, 2, 1])

    def test_each_filter(self) -> None:
        """host, ip, user, client, exact status, method, path prefix, errors."""
        cases = {
            LogFilter(host="B.Example"): [3],
            LogFilter(ip="198.51.100.4"): [5],
            LogFilter(user="octocat"): [5],
            LogFilter(client_id="c1"): [5],
            LogFilter(status=201): [2],
            LogFilter(method="post"): [2],
            LogFilter(path_prefix="/api/"): [4, 2],
            LogFilter(errors_only=True): [6, 4],
        }
        for where, expected in cases.items():
            self.assertEqual(self.ids(where), expected, where)

    def test_filters_combine(self) -> None:
        """Every filter given must match."""
        self.assertEqual(self.ids(LogFilter(path_prefix="/api/", status=500)), [4])
        self.assertEqual(self.ids(LogFilter(host="b.example", status=200)), [])

    def test_limit_and_window(self) -> None:
        """At most ``limit`` records, inside the window only."""
        self.assertEqual(self.ids(LogFilter(), limit=2), [6, 5])
        self.assertEqual(self.ids(LogFilter(), span=Window(T0 + 2, T0 + 3)), [3, 2])

    def test_scan_is_bounded(self) -> None:
        """A filter that matches nothing stops after MAX_SCAN records, not the whole log."""
        reads: list[tuple[int, int]] = []
        find = self.store.find

        def counting(*args: Any) -> Deferred[Any]:
            reads.append((args[4], args[5]))
            return find(*args)

        self.store.find = counting  # type: ignore[method-assign]
        self.successResultOf(
            self.store.write([sample(n) for n in range(10, 10 + query.MAX_SCAN + 600)])
        )
        self.assertEqual(self.ids(LogFilter(method="DELETE"), span=Window(0, T0 * 2)), [])
        self.assertEqual(sum(count for _, count in reads), query.MAX_SCAN)


class StatsTests(QueryTestCase):
    """query.stats: counts, percentiles, visitors."""

    def test_counts_percentiles_and_visitors(self) -> None:
        """Status classes, errors, p50/p95 in ms, per-host requests and unique IPs."""
        records = [
            sample(n, duration=(n + 1) / 1000, client_ip=f"192.0.2.{n % 3}") for n in range(20)
        ]
        records.append(sample(20, host="b.example", status=503, duration=None))
        self.successResultOf(self.store.write(records))
        stats = self.run_(query.stats(self.store, ALL))
        self.assertEqual((stats["total"], stats["errors"]), (21, 1))
        self.assertEqual(stats["by_status"], {"1xx": 0, "2xx": 20, "3xx": 0, "4xx": 0, "5xx": 1})
        self.assertEqual(stats["response_time"], {"sample": 20, "p50_ms": 10.0, "p95_ms": 19.0})
        hosts = {h["host"]: h for h in stats["hosts"]}  # type: ignore[attr-defined]
        self.assertEqual(
            (hosts["api.example.com"]["requests"], hosts["b.example"]["requests"]), (20, 1)
        )
        self.assertEqual(hosts["api.example.com"]["unique_visitors"], 3)
        self.assertEqual(hosts["b.example"]["response_time"]["sample"], 0)

    def test_empty_log(self) -> None:
        """No records: zeros, no percentiles, no hosts."""
        stats = self.run_(query.stats(self.store, ALL))
        self.assertEqual((stats["total"], stats["hosts"]), (0, []))
        self.assertEqual(stats["response_time"], {"sample": 0, "p50_ms": None, "p95_ms": None})


class PureTests(SynchronousTestCase):
    """window, days, percentile."""

    def test_window_from_hours_or_bounds(self) -> None:
        """The last ``hours`` up to now, unless since/until say otherwise."""
        self.assertEqual(window(T0, 2, None, None), Window(T0 - 7200, T0))
        self.assertEqual(window(T0, 2, T0 - 60, None), Window(T0 - 60, T0))
        self.assertEqual(window(T0, 1, None, T0 - 60), Window(T0 - 3660, T0 - 60))

    def test_days_of_a_window(self) -> None:
        """Every UTC day the window touches."""
        self.assertEqual(days(Window(T0 - 1, T0 + 1)), ["2024-12-31", "2025-01-01"])
        self.assertEqual(days(Window(T0, T0 + 3600)), ["2025-01-01"])

    def test_percentile_nearest_rank(self) -> None:
        """Nearest rank: p50 of 1..10 is 5, p95 is 10; nothing gives None."""
        values = [float(v) for v in range(10, 0, -1)]
        self.assertEqual((percentile(values, 0.5), percentile(values, 0.95)), (5.0, 10.0))
        self.assertIsNone(percentile([], 0.5))

    @given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=50))
    def test_percentile_is_one_of_the_values(self, values: list[float]) -> None:
        """A percentile is always a member, between min and max, and p50 <= p95."""
        p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
        assert p50 is not None and p95 is not None
        self.assertIn(p50, values)
        self.assertLessEqual(p50, p95)
