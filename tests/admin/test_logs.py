"""``/logs/``: the request-log query API, through the in-memory admin API harness."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.errors import StorageUnavailable
from oauthproxy.requestlog.record import RequestRecord, record_json
from tests.admin.harness import Harness
from tests.requestlog.samples import T0, sample

NOW = T0 + 100


class LogApiTestCase(SynchronousTestCase):
    """A harness whose clock reads NOW, with a few records in the log."""

    def setUp(self) -> None:
        """Records 1..6 (one second apart, ending well before NOW)."""
        self.h = Harness(self)
        self.h.clock.advance(NOW - self.h.clock.seconds())
        self.records = [
            sample(1),
            sample(2, method="POST", path="/api/items", status=201, host="b.example"),
            sample(3, client_ip="2001:db8::7", status=404),
            sample(4, path="/api/users", status=502, duration=0.5),
            sample(5, user="octocat", client_id="mcp-1"),
            sample(6, error="upstream reset"),
        ]
        self.successResultOf(self.h.storage.request_log.write(self.records))

    def get(self, path: str, token: str | None = "admin") -> Any:
        """GET ``path`` (with the admin token by default)."""
        return self.h.call("GET", path, token=self.h.admin_token if token == "admin" else token)

    def items(self, path: str) -> list[int]:
        """GET ``path`` successfully; the sample numbers of its items, in order."""
        answer = self.get(path)
        self.assertEqual(answer.status, 200, answer.body)
        return [
            int(item["correlation_id"].rsplit("-", 1)[1], 16) for item in answer.json()["items"]
        ]


class AccessTests(LogApiTestCase):
    """Only the admin token reads the request log."""

    PATHS = (
        "/logs/ip/192.0.2.10", "/logs/host/api.example.com", "/logs/client/mcp-1",
        "/logs/user/octocat", "/logs/correlation/1735689601-https-00000001", "/logs/search",
        "/logs/errors", "/logs/stats", "/logs/recent",
    )  # fmt: skip

    def test_no_token_is_401(self) -> None:
        """Without a token every /logs endpoint answers 401."""
        for path in self.PATHS:
            self.h.assert_error(self.get(path, token=None), 401, "unauthorized")

    def test_other_tokens_are_403(self) -> None:
        """A valid non-admin token gets 403 (records tell who called what)."""
        other = self.h.add_token("ci")
        for path in self.PATHS:
            self.h.assert_error(self.get(path, token=other), 403, "forbidden")


class LookupTests(LogApiTestCase):
    """The index lookups and one request by id."""

    def test_by_ip(self) -> None:
        """Requests from one IP, newest first (IPv6 too)."""
        self.assertEqual(self.items("/logs/ip/192.0.2.10"), [6, 5, 4, 2, 1])
        self.assertEqual(self.items("/logs/ip/2001:db8::7"), [3])

    def test_by_host_ignores_case(self) -> None:
        """Hostnames are matched lower-cased."""
        self.assertEqual(self.items("/logs/host/B.Example"), [2])

    def test_by_client_and_user(self) -> None:
        """The OAuth client and the authenticated user each find their request."""
        self.assertEqual(self.items("/logs/client/mcp-1"), [5])
        self.assertEqual(self.items("/logs/user/octocat"), [5])

    def test_list_body_has_window_and_count(self) -> None:
        """A list answer says how many and over which window (default: 24 hours)."""
        body = self.get("/logs/ip/192.0.2.10?limit=2").json()
        self.assertEqual((body["count"], body["since"], body["until"]), (2, NOW - 86400, NOW))
        self.assertEqual(body["items"][0], record_json(self.records[5]))

    def test_hours_narrows_the_window(self) -> None:
        """``hours`` counts back from now: 95 seconds ago leaves only records 5 and 6."""
        self.assertEqual(self.items(f"/logs/ip/192.0.2.10?hours={95 / 3600}"), [6, 5])

    def test_correlation_id_finds_one_request(self) -> None:
        """``/logs/correlation/{id}`` answers the record itself."""
        record: RequestRecord = self.records[3]
        answer = self.get(f"/logs/correlation/{record.correlation_id}")
        self.assertEqual((answer.status, answer.json()), (200, record_json(record)))

    def test_unknown_correlation_id_is_404(self) -> None:
        """An id not (or no longer) in the log is 404."""
        self.h.assert_error(self.get("/logs/correlation/1-http-ffffffff"), 404, "not_found")


class SearchTests(LogApiTestCase):
    """``/logs/search`` filters and ``/logs/errors``."""

    def test_filters(self) -> None:
        """status, method, path prefix, host, errors; combined with AND."""
        self.assertEqual(self.items("/logs/search?status=404"), [3])
        self.assertEqual(self.items("/logs/search?method=post"), [2])
        self.assertEqual(self.items("/logs/search?path=/api/"), [4, 2])
        self.assertEqual(self.items("/logs/search?path=/api/&status=502"), [4])
        self.assertEqual(self.items("/logs/search?host=b.example&status=404"), [])
        self.assertEqual(self.items("/logs/search?errors=true"), [6, 4])

    def test_since_until(self) -> None:
        """Absolute bounds replace ``hours``."""
        self.assertEqual(self.items(f"/logs/search?since={T0 + 2}&until={T0 + 4}"), [4, 3, 2])

    def test_errors(self) -> None:
        """``/logs/errors``: 5xx answers and gateway errors, newest first."""
        self.assertEqual(self.items("/logs/errors"), [6, 4])

    def test_since_after_until_is_refused(self) -> None:
        """A window that ends before it starts is a 422 naming ``since``."""
        answer = self.get(f"/logs/search?since={T0 + 5}&until={T0 + 1}")
        self.h.assert_error(answer, 422, "invalid_input", field="since")

    def test_bounds_are_enforced(self) -> None:
        """Out-of-range hours, limit, status or time, or an unknown parameter: 422."""
        for query, field in (
            ("hours=721", "hours"),
            ("limit=1001", "limit"),
            ("status=99", "status"),
            ("access_token=x", "access_token"),
            ("since=99999999999", "since"),
        ):
            answer = self.get(f"/logs/search?{query}")
            self.h.assert_error(answer, 422, "invalid_input", field=field)

    def test_store_outage_is_503(self) -> None:
        """With the store down the query answers 503, not 500."""
        self.h.storage.set_available(False)
        self.h.assert_error(self.get("/logs/errors"), 503, "storage_unavailable")
        self.flushLoggedErrors(StorageUnavailable)


class StatsAndRecentTests(LogApiTestCase):
    """``/logs/stats`` and ``/logs/recent``."""

    def test_stats(self) -> None:
        """Counts by class, p50/p95 in ms, per-host requests and unique visitors."""
        body = self.get("/logs/stats").json()
        self.assertEqual(body["total"], 6)
        self.assertEqual(body["by_status"], {"1xx": 0, "2xx": 4, "3xx": 0, "4xx": 1, "5xx": 1})
        self.assertEqual(body["response_time"], {"sample": 6, "p50_ms": 10.0, "p95_ms": 500.0})
        hosts = {h["host"]: h for h in body["hosts"]}
        self.assertEqual(hosts["api.example.com"]["unique_visitors"], 2)
        self.assertEqual(hosts["b.example"]["requests"], 1)

    def test_stats_at_the_edges_of_time(self) -> None:
        """The earliest and latest times a query may name still give an answer, not a 500."""
        for query in ("until=10000000000", "until=0", "since=0&until=1"):
            self.assertEqual(self.get(f"/logs/stats?{query}").status, 200, query)

    def test_recent_then_after_cursor(self) -> None:
        """Without ``after`` the newest records; with the cursor only newer ones."""
        body = self.get("/logs/recent?limit=2").json()
        self.assertEqual([i["status"] for i in body["items"]], [200, 200])
        cursor = body["cursor"]
        self.assertEqual(self.get(f"/logs/recent?after={cursor}").json()["items"], [])
        self.successResultOf(self.h.storage.request_log.write([sample(7, status=418)]))
        later = self.get(f"/logs/recent?after={cursor}").json()
        self.assertEqual([i["status"] for i in later["items"]], [418])

    def test_bad_cursor_is_422(self) -> None:
        """A cursor that is not ``<n>-<n>`` is refused before the store sees it."""
        self.h.assert_error(self.get("/logs/recent?after=zzz"), 422, "invalid_input", "after")
