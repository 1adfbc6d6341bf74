"""One exposition for several worker processes (:mod:`oauthproxy.metrics.cluster`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.metrics.cluster import export, merge, render


def worker_registry(requests: int) -> CollectorRegistry:
    """A registry like a worker's: a labelled counter and a daemon-wide gauge."""
    registry = CollectorRegistry(auto_describe=True)
    Counter("oauthproxy_requests", "Requests", ["proxy"], registry=registry).labels("a").inc(
        requests
    )
    Gauge("oauthproxy_workers_running", "Running", registry=registry).set(2)
    return registry


class MergeTests(SynchronousTestCase):
    """Each worker's series keep their values under a ``worker`` label."""

    def test_series_are_labelled_by_worker_and_kept_together(self) -> None:
        """Two workers' counters become two series of one family; the total is their sum."""
        families = merge([("0", export(worker_registry(3))), ("1", export(worker_registry(4)))])
        text = render(families, None)[0].decode()
        self.assertIn('oauthproxy_requests_total{proxy="a",worker="0"} 3.0', text)
        self.assertIn('oauthproxy_requests_total{proxy="a",worker="1"} 4.0', text)
        self.assertEqual(text.count("# TYPE oauthproxy_requests_total counter"), 1)

    def test_daemon_wide_families_get_no_worker_label(self) -> None:
        """``oauthproxy_workers*`` describe the daemon: no ``worker`` label is added."""
        families = merge([("supervisor", export(worker_registry(0)))])
        text = render(families, None)[0].decode()
        self.assertIn("oauthproxy_workers_running 2.0", text)

    def test_openmetrics_when_asked(self) -> None:
        """A scraper asking for OpenMetrics gets it, with its EOF marker."""
        families = merge([("0", export(worker_registry(1)))])
        body, content_type = render(families, "application/openmetrics-text; version=1.0.0")
        self.assertIn("openmetrics", content_type)
        self.assertTrue(body.endswith(b"# EOF\n"))
