"""The metrics instruments, fed as their seams feed them, read back from the exposition."""

from __future__ import annotations

import contextlib
from typing import Any

from attrs import evolve
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.gateway.sni import CertificateMap
from oauthproxy.gateway.tls import _thd_generate_fallback
from oauthproxy.metrics.registry import Metrics
from oauthproxy.metrics.state import in_flight
from oauthproxy.metrics.traffic import error_reason
from oauthproxy.model import Certificate, Event, Proxy, Snapshot
from oauthproxy.requestlog.finished import FinishedRequests
from oauthproxy.requestlog.record import notes_for
from tests.admin.harness import StandInSnapshots
from tests.requestlog.samples import finish_request, sample
from tests.support.tls import handshake_in_memory


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition: (name, sorted labels) -> value."""
    body, _ = metrics.render(None)
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


class MetricsTestCase(SynchronousTestCase):
    """Metrics over a stand-in snapshot with one proxy."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        proxies = {"app.example.test": Proxy("app.example.test", "http://127.0.0.1:1")}
        self.snapshots = StandInSnapshots(Snapshot(proxies=proxies))
        self.metrics = Metrics(self.snapshots, self.clock)  # type: ignore[arg-type]

    def value(self, name: str, **labels: str) -> float | None:
        """One sample's value (None if absent)."""
        return samples(self.metrics).get((name, tuple(sorted(labels.items()))))


class TrafficTests(MetricsTestCase):
    """Requests, latency, bytes and upstream errors from finished requests."""

    def test_requests_by_proxy_method_and_class(self) -> None:
        """A known proxy is its own label; an unknown host and odd methods are bounded."""
        t = self.metrics.traffic
        t.observe(sample(1, host="app.example.test", status=200, duration=0.02), 0.015)
        t.observe(
            sample(2, host="app.example.test", status=503, error="upstream refused the connection")
        )
        t.observe(sample(3, host="random-123.example", method="BREW", status=404))
        self.assertEqual(
            self.value(
                "oauthproxy_requests_total",
                proxy="app.example.test",
                method="GET",
                status_class="2xx",
            ),
            1.0,
        )
        self.assertEqual(
            self.value(
                "oauthproxy_requests_total", proxy="(none)", method="OTHER", status_class="4xx"
            ),
            1.0,
        )
        self.assertEqual(
            self.value(
                "oauthproxy_upstream_errors_total",
                proxy="app.example.test",
                reason="connection_refused",
            ),
            1.0,
        )
        self.assertEqual(
            self.value(
                "oauthproxy_request_duration_seconds_bucket", proxy="app.example.test", le="0.025"
            ),
            2.0,
        )
        self.assertEqual(
            self.value("oauthproxy_upstream_duration_seconds_count", proxy="app.example.test"), 1.0
        )

    def test_a_finished_request_is_counted_from_its_row(self) -> None:
        """A real finished request, through the gateway's hook, is counted with its notes
        once its batch is handed over, which every scrape does first."""
        finished = FinishedRequests(self.clock, [self.metrics.traffic])

        def notes(request: Any) -> None:
            n = notes_for(request)
            self.clock.advance(0)  # started "now"; the answer takes 30 ms below
            n.started, n.upstream_seconds, n.error = self.clock.seconds() - 0.03, 0.02, None

        request = finish_request(
            finished.access_log,
            b"/items?x=1",
            method=b"POST",
            headers={b"host": b"APP.example.test", b"content-length": b"0"},
            code=201,
            body=b"created",
            before=notes,
        )
        self.assertEqual(request.code, 201)
        labels = {"proxy": "app.example.test"}
        self.assertIsNone(
            self.value("oauthproxy_requests_total", method="POST", status_class="2xx", **labels)
        )
        self.metrics.before_scrape = finished.drain  # as tap.compose wires it
        self.assertEqual(
            self.value("oauthproxy_requests_total", method="POST", status_class="2xx", **labels),
            1.0,
        )
        self.assertEqual(self.value("oauthproxy_response_body_bytes_total", **labels), 7.0)
        self.assertEqual(
            self.value("oauthproxy_request_duration_seconds_bucket", le="0.05", **labels), 1.0
        )
        self.assertEqual(
            self.value("oauthproxy_upstream_duration_seconds_bucket", le="0.025", **labels), 1.0
        )

    def test_error_reasons_are_a_bounded_set(self) -> None:
        """Gateway error texts map onto a few reasons."""
        self.assertEqual(error_reason("upstream timed out after 60 s"), "timeout")
        self.assertEqual(error_reason("connection reset by peer"), "connection_reset")
        self.assertEqual(error_reason("TLS handshake with the upstream failed"), "tls")
        self.assertEqual(error_reason("something new"), "other")

    def test_oauth_endpoint_answers(self) -> None:
        """Token grants by type, refusals by status, registrations and revocations."""

        class Request:
            def __init__(self, path: bytes, code: int, grant: bytes = b"") -> None:
                self.method, self.path, self.code = b"POST", path, code
                self.args = {b"grant_type": [grant]} if grant else {}

        t = self.metrics.traffic
        t.admin_log(Request(b"/token", 200, b"authorization_code"))
        t.admin_log(Request(b"/token", 200, b"refresh_token"))
        t.admin_log(Request(b"/token", 400, b"refresh_token"))
        t.admin_log(Request(b"/register", 201))
        t.admin_log(Request(b"/revoke", 200))
        t.admin_log(Request(b"/health", 200))
        self.assertEqual(
            self.value("oauthproxy_oauth_tokens_issued_total", grant_type="refresh_token"), 1.0
        )
        self.assertEqual(self.value("oauthproxy_oauth_token_refusals_total", status="400"), 1.0)
        self.assertEqual(self.value("oauthproxy_oauth_registrations_total"), 1.0)
        self.assertEqual(self.value("oauthproxy_oauth_revocations_total"), 1.0)


class StateTests(MetricsTestCase):
    """Gauges read at scrape time; the event lag; ACME outcomes."""

    def test_listeners_certificates_redis_and_request_log(self) -> None:
        """Connections and streams per listener, expiry per certificate, Redis, the writer."""

        class Channel:
            requests = [object(), object()]

        class Wrapper:
            wrappedProtocol = Channel()

        self.snapshots.current = evolve(
            self.snapshots.current,
            certificates={
                "a": Certificate(
                    "a", ("a.example.test",), status="ready", not_after=1_900_000_000.0
                ),
                "b": Certificate("b", ("b.example.test",), status="pending"),
            },
        )
        self.metrics.watch_state(
            listeners=lambda: [("http", [Wrapper(), Wrapper()]), ("api", [])],
            redis_up=lambda: True,
            request_log=lambda: {"dropped": 3, "written": 10, "lost": 0, "buffered": 2},
        )
        self.assertEqual(self.value("oauthproxy_open_connections", listener="http"), 2.0)
        self.assertEqual(self.value("oauthproxy_open_streams", listener="http"), 4.0)
        self.assertEqual(self.value("oauthproxy_open_connections", listener="api"), 0.0)
        self.assertEqual(
            self.value("oauthproxy_certificate_expiry_timestamp_seconds", cert_name="a"),
            1_900_000_000.0,
        )
        self.assertEqual(self.value("oauthproxy_certificates", status="pending"), 1.0)
        self.assertEqual(self.value("oauthproxy_redis_up"), 1.0)
        self.assertEqual(self.value("oauthproxy_request_log_dropped_total"), 3.0)
        self.assertEqual(self.value("oauthproxy_request_log_buffered"), 2.0)

    def test_in_flight_reads_http2_streams(self) -> None:
        """An HTTP/2 connection's streams count as requests in flight."""

        class H2:
            streams = {1: object(), 3: object(), 5: object()}

        class Generic:
            _channel = H2()

        self.assertEqual(in_flight(Generic()), 3)
        self.assertEqual(in_flight(object()), 0)

    def test_event_lag_is_the_age_of_the_applied_event(self) -> None:
        """An event created 0.2 s before it is applied is observed as 0.2 s."""
        created_ms = int((self.clock.seconds() - 0.2) * 1000)
        event = Event(f"{created_ms}-0", "proxy_updated", "proxy", "app.example.test", None)
        self.metrics.event_lag(self.snapshots.current, event)
        self.metrics.event_lag(self.snapshots.current, None)
        self.assertEqual(self.value("oauthproxy_event_stream_lag_seconds_count"), 1.0)
        self.assertEqual(self.value("oauthproxy_event_stream_lag_seconds_bucket", le="0.1"), 0.0)
        self.assertEqual(self.value("oauthproxy_event_stream_lag_seconds_bucket", le="0.5"), 1.0)

    def test_acme_attempts_by_result(self) -> None:
        """Ready, failed and crashed attempts count; an attempt that ordered nothing does not."""
        acme = self.metrics.acme
        acme(Certificate("a", ("a.example.test",), status="ready"))
        acme(Certificate("a", ("a.example.test",), status="ready", error="renewal failed"))
        acme(Certificate("b", ("b.example.test",), status="failed", error="no"))
        acme(Failure(RuntimeError("boom")))
        acme(None)
        self.assertEqual(self.value("oauthproxy_acme_orders_total", result="success"), 1.0)
        self.assertEqual(self.value("oauthproxy_acme_orders_total", result="failure"), 2.0)
        self.assertEqual(self.value("oauthproxy_acme_orders_total", result="error"), 1.0)

    def test_process_and_build_metrics_are_there(self) -> None:
        """Process metrics and the version come with every scrape."""
        found = samples(self.metrics)
        self.assertIn(("process_resident_memory_bytes", ()), found)
        self.assertEqual(
            self.value("oauthproxy_build_info", version=__import__("oauthproxy").__version__), 1.0
        )


class TLSTests(MetricsTestCase):
    """Handshakes through the certificate map's per-connection hook."""

    def test_handshakes_and_failures_are_counted(self) -> None:
        """Two handshakes count two; a client offering no common protocol is a failure."""
        certificates = CertificateMap(on_connection=self.metrics.tls.watch)
        certificates.set_fallback(_thd_generate_fallback(1_800_000_000.0))
        handshake_in_memory(certificates, "a.example.test")
        handshake_in_memory(certificates, None)
        self.assertEqual(self.value("oauthproxy_tls_handshakes_total"), 2.0)
        outcome: Any = None
        with contextlib.suppress(AssertionError):
            outcome = handshake_in_memory(certificates, "a.example.test", protocols=(b"nope/9",))
        failures = sum(
            v
            for (name, _), v in samples(self.metrics).items()
            if name == "oauthproxy_tls_handshake_failures_total"
        )
        self.assertEqual(failures, 1.0, outcome)
