"""``/logs/timeline`` and ``/logs/top``: the aggregates behind the console's charts."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.admin.harness import Harness
from tests.requestlog.samples import T0, sample

NOW = T0 + 60


class ChartTests(SynchronousTestCase):
    """A minute of traffic: 2xx, a 404 and two errors, in known seconds."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.h.clock.advance(NOW - self.h.clock.seconds())
        records = [
            sample(1, duration=0.010),
            sample(2, duration=0.020, host="b.example"),
            sample(3, duration=0.030, client_ip="192.0.2.99"),
            sample(31, status=404, duration=0.040),
            sample(32, status=502, duration=1.0, error="upstream refused the connection"),
            sample(33, status=502, duration=2.0, error="upstream refused the connection"),
            sample(34, status=503, duration=None, client_ip="192.0.2.99"),
        ]
        self.successResultOf(self.h.storage.request_log.write(records))

    def get(self, path: str) -> Any:
        """GET ``path`` as the admin; the JSON answer."""
        answer = self.h.call("GET", path, token=self.h.admin_token)
        self.assertEqual(answer.status, 200, answer.body)
        return answer.json()

    def test_timeline_counts_each_bucket_by_status_class(self) -> None:
        """Two 30-second buckets: three 2xx in the first; 4xx and 5xx in the second."""
        found = self.get(f"/logs/timeline?since={T0}&until={T0 + 60}&buckets=2")
        self.assertEqual(found["step"], 30.0)
        first, second = found["buckets"]
        self.assertEqual((first["start"], second["start"]), (T0, T0 + 30))
        self.assertEqual(first["by_status"], {"1xx": 0, "2xx": 3, "3xx": 0, "4xx": 0, "5xx": 0})
        self.assertEqual(second["by_status"], {"1xx": 0, "2xx": 0, "3xx": 0, "4xx": 1, "5xx": 3})
        self.assertEqual(first["per_second"], 0.1)

    def test_timeline_percentiles_per_bucket(self) -> None:
        """p50 and p99 of each bucket's durations, in milliseconds; null without any."""
        first, second = self.get(f"/logs/timeline?since={T0}&until={T0 + 60}&buckets=2")["buckets"]
        self.assertEqual((first["p50_ms"], first["p99_ms"], first["sample"]), (20.0, 30.0, 3))
        self.assertEqual((second["p50_ms"], second["p99_ms"]), (1000.0, 2000.0))
        empty = self.get(f"/logs/timeline?since={T0 + 40}&until={T0 + 60}&buckets=1")
        self.assertEqual(empty["buckets"][0]["p50_ms"], None)

    def test_a_record_on_a_bucket_boundary_counts_once(self) -> None:
        """Buckets are half-open: the record at T0+30 is in the second bucket only."""
        self.successResultOf(self.h.storage.request_log.write([sample(30)]))
        found = self.get(f"/logs/timeline?since={T0}&until={T0 + 60}&buckets=2")
        total = sum(b["requests"] for b in found["buckets"])
        self.assertEqual(total, 8)

    def test_top_lists(self) -> None:
        """Hosts by requests, client IPs by requests, errors grouped by reason."""
        found = self.get(f"/logs/top?since={T0}&until={T0 + 60}")
        self.assertEqual((found["requests"], found["errors"]), (7, 3))
        self.assertEqual(
            found["hosts"],
            [{"host": "api.example.com", "requests": 6}, {"host": "b.example", "requests": 1}],
        )
        self.assertEqual(
            found["client_ips"],
            [
                {"client_ip": "192.0.2.10", "requests": 5},
                {"client_ip": "192.0.2.99", "requests": 2},
            ],
        )
        self.assertEqual(
            found["error_reasons"],
            [
                {"reason": "upstream refused the connection", "requests": 2},
                {"reason": "HTTP 503", "requests": 1},
            ],
        )

    def test_charts_are_admin_only(self) -> None:
        """A non-admin token gets 403."""
        bob = self.h.add_token("bob")
        for path in ("/logs/timeline", "/logs/top"):
            self.h.assert_error(self.h.call("GET", path, token=bob), 403, "forbidden")

    def test_empty_window_is_refused(self) -> None:
        """since == until is a 422 naming since."""
        answer = self.h.call("GET", f"/logs/top?since={T0}&until={T0}", token=self.h.admin_token)
        self.h.assert_error(answer, 422, "invalid_input", "since")

    def test_search_by_status_class(self) -> None:
        """``/logs/search?status_class=5xx`` finds the three 5xx answers."""
        found = self.get(f"/logs/search?since={T0}&until={T0 + 60}&status_class=5xx")
        self.assertEqual(sorted(r["status"] for r in found["items"]), [502, 502, 503])
