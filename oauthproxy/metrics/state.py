"""Metrics read from the daemon's live state when Prometheus scrapes.

:class:`StateCollector` asks, at scrape time and without any I/O: the open
connections and in-flight requests (HTTP/1 requests, HTTP/2 streams) of each
listener, the certificates of the snapshot (expiry, status), whether Redis
answers and the event stream is followed, and the request-log writer's
counters.  :class:`EventLag` observes, for each event the mirror applies, how
long after its creation (the stream id's milliseconds) it was applied.
:class:`AcmeMetrics` counts the issuing service's attempts by outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from attrs import define, field
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from oauthproxy.gateway.sni import FALLBACK_CERT_NAME
from oauthproxy.interfaces import ISnapshotSource
from oauthproxy.model import Certificate, Event, Snapshot

#: how deep a listener's protocol wrappers go (tracking, PROXY, TLS, HTTP generic, channel)
_MAX_WRAPPERS = 8
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)


def in_flight(protocol: Any) -> int:
    """Requests in flight on one connection: an HTTP/1 channel's queue, an HTTP/2's streams."""
    for _ in range(_MAX_WRAPPERS):
        requests = getattr(protocol, "requests", None)
        if isinstance(requests, list):
            return len(requests)
        streams = getattr(protocol, "streams", None)
        if isinstance(streams, dict):
            return len(streams)
        inner = getattr(protocol, "_channel", None) or getattr(protocol, "wrappedProtocol", None)
        if inner is None or inner is protocol:
            return 0
        protocol = inner
    return 0


#: (listener name, its open connections)
Listeners = Callable[[], Iterable[tuple[str, Iterable[Any]]]]


@define(eq=False)
class StateCollector(Collector):
    """Gauges and counters read at scrape time (see the module docstring)."""

    snapshots: ISnapshotSource
    listeners: Listeners
    redis_up: Callable[[], bool]
    #: the request-log writer's counters (None: the request log is off)
    request_log: Callable[[], Mapping[str, int]] | None = None

    def collect(self) -> Iterator[Metric]:
        """The current values."""
        connections = GaugeMetricFamily(
            "oauthproxy_open_connections", "Open connections by listener", labels=["listener"]
        )
        streams = GaugeMetricFamily(
            "oauthproxy_open_streams",
            "Requests in flight (HTTP/1 requests, HTTP/2 streams) by listener",
            labels=["listener"],
        )
        for name, open_connections in self.listeners():
            current = list(open_connections)
            connections.add_metric([name], len(current))
            streams.add_metric([name], sum(in_flight(c) for c in current))
        yield connections
        yield streams
        yield from _certificates(self.snapshots.current)
        up = GaugeMetricFamily("oauthproxy_redis_up", "1 when Redis answers pings, else 0")
        up.add_metric([], 1.0 if self.redis_up() else 0.0)
        yield up
        connected = GaugeMetricFamily(
            "oauthproxy_event_stream_connected", "1 when this daemon follows the event stream"
        )
        connected.add_metric([], 1.0 if self.snapshots.connected else 0.0)
        yield connected
        if self.request_log is not None:
            yield from _request_log(self.request_log())


def _certificates(snapshot: Snapshot) -> Iterator[Metric]:
    """Expiry of each certificate with a chain, and how many there are by status."""
    expiry = GaugeMetricFamily(
        "oauthproxy_certificate_expiry_timestamp_seconds",
        "When each certificate expires (POSIX seconds; subtract time() for what is left)",
        labels=["cert_name"],
    )
    by_status = GaugeMetricFamily(
        "oauthproxy_certificates", "Certificates by status", labels=["status"]
    )
    counts = {"pending": 0, "ready": 0, "failed": 0}
    for certificate in snapshot.certificates.values():
        if certificate.cert_name == FALLBACK_CERT_NAME:
            continue
        counts[certificate.status] = counts.get(certificate.status, 0) + 1
        if certificate.not_after is not None:
            expiry.add_metric([certificate.cert_name], certificate.not_after)
    for status, count in sorted(counts.items()):
        by_status.add_metric([status], count)
    yield expiry
    yield by_status


def _request_log(stats: Mapping[str, int]) -> Iterator[Metric]:
    """The writer's counters as Prometheus counters, its buffer as a gauge."""
    for key, help_text in (
        ("dropped", "Request-log records dropped because the buffer was full"),
        ("written", "Request-log records written to Redis"),
        ("lost", "Request-log records refused by Redis or unwritten at shutdown"),
    ):
        family = CounterMetricFamily(f"oauthproxy_request_log_{key}", help_text)
        family.add_metric([], stats.get(key, 0))
        yield family
    buffered = GaugeMetricFamily(
        "oauthproxy_request_log_buffered", "Request-log records waiting to be written"
    )
    buffered.add_metric([], stats.get("buffered", 0))
    yield buffered


@define(eq=False)
class EventLag:
    """Seconds from an event's creation (its stream id) to this daemon applying it."""

    registry: CollectorRegistry
    clock: IReactorTime
    lag: Histogram = field(init=False)

    def __attrs_post_init__(self) -> None:
        """Register the histogram."""
        self.lag = Histogram(
            "oauthproxy_event_stream_lag_seconds",
            "Delay between a configuration event and this daemon applying it",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )

    def __call__(self, snapshot: Snapshot, event: Event | None = None) -> None:
        """A snapshot listener: observe the applied event's age (loads have no event)."""
        if event is None:
            return
        try:
            created_ms = int(event.event_id.partition("-")[0])
        except ValueError:
            return
        self.lag.observe(max(0.0, self.clock.seconds() - created_ms / 1000.0))


@define(eq=False)
class AcmeMetrics:
    """ACME order attempts by outcome (the issuing service's ``on_attempt`` hook)."""

    registry: CollectorRegistry
    orders: Counter = field(init=False)

    def __attrs_post_init__(self) -> None:
        """Register the counter."""
        self.orders = Counter(
            "oauthproxy_acme_orders",
            "ACME order attempts by result (success, failure, error)",
            ["result"],
            registry=self.registry,
        )

    def __call__(self, result: Certificate | Failure | None) -> None:
        """Count one finished attempt (None: nothing was ordered, e.g. another daemon did)."""
        if result is None:
            return
        if isinstance(result, Failure):
            self.orders.labels("error").inc()
        elif result.status == "failed" or result.error:
            self.orders.labels("failure").inc()
        elif result.status == "ready":
            self.orders.labels("success").inc()
