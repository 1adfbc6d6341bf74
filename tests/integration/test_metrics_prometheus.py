"""``/metrics`` scraped by a real Prometheus, and the numbers read back through its API.

The daemon (``twistd oauthproxy``, embedded Redis, an HTTP listener) proxies a
test backend; the test sends known traffic (successes delayed by the backend,
404s and 500s) and reads request counts by status class and latency quantiles
(``histogram_quantile`` over the duration histogram) back from Prometheus,
which scrapes the admin listener every second from loopback without a token.
"""

from __future__ import annotations

import json
from typing import Any

import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests.metrics.test_dashboard import DASHBOARD
from tests.support.backends import start_backend
from tests.support.daemon import DaemonProcess, free_port, start_daemon
from tests.support.prometheus import start_prometheus

_REACTOR: Any = reactor
HOST = "metrics.example.test"
SLOW, NOT_FOUND, FAILED = 20, 5, 3


async def send(daemon: DaemonProcess, port: int, path: str, host: str = HOST) -> int:
    """One GET through the gateway; its status."""
    response = await treq.get(
        f"http://127.0.0.1:{port}{path}", headers={"Host": [host]}, pool=daemon.pool, timeout=10
    )
    await treq.content(response)
    code: int = response.code
    return code


class PrometheusTests(TestCase):
    """The gateway's traffic as Prometheus sees it."""

    timeout = 120

    async def test_counts_and_latency_quantiles_match_the_traffic(self) -> None:
        """28 requests: counts by status class, p50/p90 of 60 ms answers, process metrics."""
        http = free_port()
        daemon = await start_daemon(self, args=["--http", f"tcp:{http}:interface=127.0.0.1"])
        token = daemon.admin_token
        backend = await start_backend(self, _REACTOR)
        status, _ = await daemon.post(
            "/proxy/targets/",
            {"hostname": HOST, "target_url": backend.url, "enable_https": False},
            token,
        )
        self.assertEqual(status, 201)
        prometheus = await start_prometheus(self, f"127.0.0.1:{daemon.api_port}")
        await prometheus.wait_for("up", lambda v: v == 1.0)
        for _ in range(SLOW):
            self.assertEqual(await send(daemon, http, "/delay?ms=60"), 200)
        for _ in range(NOT_FOUND):
            self.assertEqual(await send(daemon, http, "/status/404"), 404)
        for _ in range(FAILED):
            self.assertEqual(await send(daemon, http, "/status/500"), 500)
        self.assertEqual(await send(daemon, http, "/", host="nobody.example.test"), 404)

        selector = f'proxy="{HOST}"'
        total = SLOW + NOT_FOUND + FAILED
        await prometheus.wait_for(
            f"sum(oauthproxy_requests_total{{{selector}}})", lambda v: v == total
        )
        for status_class, expected in (("2xx", SLOW), ("4xx", NOT_FOUND), ("5xx", FAILED)):
            value = await prometheus.value(
                f'sum(oauthproxy_requests_total{{{selector},status_class="{status_class}"}})'
            )
            self.assertEqual(value, expected, status_class)
        # the unknown host is counted without creating a series of its own
        self.assertEqual(
            await prometheus.value('sum(oauthproxy_requests_total{proxy="(none)"})'), 1.0
        )
        count = await prometheus.value(
            f"sum(oauthproxy_request_duration_seconds_count{{{selector}}})"
        )
        self.assertEqual(count, total)
        # 20 answers took ~60 ms, 8 took ~1 ms: the median and p90 are in (50 ms, 100 ms]
        for quantile in (0.5, 0.9):
            value = await prometheus.value(
                f"histogram_quantile({quantile}, sum by (le) "
                f"(oauthproxy_request_duration_seconds_bucket{{{selector}}}))"
            )
            assert value is not None
            self.assertTrue(0.05 < value <= 0.1, f"p{int(quantile * 100)} = {value}")
        fast = await prometheus.value(
            f"histogram_quantile(0.2, sum by (le) "
            f"(oauthproxy_request_duration_seconds_bucket{{{selector}}}))"
        )
        assert fast is not None
        self.assertLess(fast, 0.05)
        upstream = await prometheus.value(
            f"histogram_quantile(0.5, sum by (le) "
            f"(oauthproxy_upstream_duration_seconds_bucket{{{selector}}}))"
        )
        assert upstream is not None
        self.assertTrue(0.05 < upstream <= 0.1, f"upstream p50 = {upstream}")
        self.assertEqual(await prometheus.value("oauthproxy_redis_up"), 1.0)
        self.assertEqual(await prometheus.value("oauthproxy_event_stream_connected"), 1.0)
        resident = await prometheus.value("process_resident_memory_bytes")
        assert resident is not None
        self.assertGreater(resident, 10_000_000)
        listeners = await prometheus.query("oauthproxy_open_connections")
        self.assertEqual({r["metric"]["listener"] for r in listeners}, {"api", "http"})
        await self.check_dashboard(prometheus)

    async def check_dashboard(self, prometheus: Any) -> None:
        """Every query of ``etc/grafana-dashboard.json`` runs in this Prometheus (with
        Grafana's variables filled in as its "All" would), and the traffic panels show
        this test's requests."""
        with open(DASHBOARD, encoding="utf-8") as f:
            panels = json.load(f)["panels"]
        filled = {"$job": ".*", "$instance": ".*", "$proxy": ".*", "$__rate_interval": "5m"}
        empty = []
        for panel in panels:
            for target in panel["targets"]:
                expr = target["expr"]
                for variable, value in filled.items():
                    expr = expr.replace(variable, value)
                if not await prometheus.query(expr):  # fails on a query Prometheus refuses
                    empty.append(panel["title"])
        with_data = {panel["title"] for panel in panels} - set(empty)
        # what this daemon has: plain HTTP traffic, no certificate, no OAuth, no errors
        expected = {
            "Redis up",
            "Event stream followed",
            "Requests per second",
            "Requests per second by status class",
            "Request latency",
            "Upstream response time (p99) by proxy",
            "Requests per second by proxy",
            "Bytes per second",
            "Open connections and streams by listener",
            "Request log",
            "Process",
        }
        self.assertEqual(expected - with_data, set(), f"panels without data: {empty}")


class MetricsAccessTests(TestCase):
    """Who may read ``/metrics``."""

    timeout = 60

    async def test_open_on_loopback_and_closed_through_a_proxy(self) -> None:
        """Loopback needs no token; via the gateway (X-Forwarded-For) a token; a rule decides."""
        http = free_port()
        daemon = await start_daemon(self, args=["--http", f"tcp:{http}:interface=127.0.0.1"])
        token = daemon.admin_token
        status, body = await daemon.get("/metrics")
        self.assertEqual(status, 200)
        self.assertIn("oauthproxy_build_info", body)
        # the admin API behind its own gateway: the forwarded request needs a token
        status, _ = await daemon.post(
            "/proxy/targets/",
            {"hostname": "admin.example.test", "target_url": daemon.api_url, "enable_https": False},
            token,
        )
        self.assertEqual(status, 201)
        for _ in range(50):
            code = await send(daemon, http, "/metrics", host="admin.example.test")
            if code != 404:
                break
        self.assertEqual(code, 401)
        # an auth rule for /metrics replaces the default: admin only, even on loopback
        status, _ = await daemon.post(
            "/auth/endpoints",
            {"path_pattern": "/metrics", "auth_type": "admin", "config_id": "metrics"},
            token,
        )
        self.assertEqual(status, 201)
        for _ in range(50):
            status, _ = await daemon.get("/metrics")
            if status == 401:
                break
        self.assertEqual(status, 401)
        status, _ = await daemon.get("/metrics", token)
        self.assertEqual(status, 200)
