"""One daemon's metrics: the registry, its instruments and the exposition.

:class:`Metrics` owns a private ``CollectorRegistry`` (not prometheus-client's
global one: several daemons in one test process must not share counters) with
process and Python runtime metrics, and the instruments of
:mod:`~oauthproxy.metrics.traffic`, :mod:`~oauthproxy.metrics.tls` and
:mod:`~oauthproxy.metrics.state`.  :meth:`Metrics.render` produces the text
exposition format, or OpenMetrics when the scraper asks for it.  In a worker
process (``--workers N``) :meth:`Metrics.exposition` describes the whole daemon:
every worker's families, gathered by the supervisor (:mod:`~oauthproxy.metrics.cluster`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from attrs import define, field
from prometheus_client import CollectorRegistry, Gauge, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from twisted.internet.interfaces import IReactorTime

import oauthproxy
from oauthproxy.interfaces import ISnapshotSource
from oauthproxy.metrics import cluster
from oauthproxy.metrics.state import AcmeMetrics, EventLag, Listeners, StateCollector
from oauthproxy.metrics.tls import TLSMetrics
from oauthproxy.metrics.traffic import TrafficMetrics


@define(eq=False)
class Metrics:
    """Every instrument of one daemon, in one registry."""

    snapshots: ISnapshotSource
    clock: IReactorTime
    registry: CollectorRegistry = field(factory=lambda: CollectorRegistry(auto_describe=True))
    traffic: TrafficMetrics = field(init=False)
    tls: TLSMetrics = field(init=False)
    acme: AcmeMetrics = field(init=False)
    event_lag: EventLag = field(init=False)
    #: in a worker process: every worker's families, merged (None: this process only)
    gather: Callable[[], Awaitable[list[cluster.Family]]] | None = None
    #: called before every exposition of this process' registry: the gateway's
    #: finished requests are counted in batches, and a scrape sees every one of them
    #: (:meth:`FinishedRequests.drain <oauthproxy.requestlog.finished.FinishedRequests.drain>`)
    before_scrape: Callable[[], None] | None = None

    def __attrs_post_init__(self) -> None:
        """Register the runtime collectors and build the instruments."""
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        info = Gauge(
            "oauthproxy_build_info", "The running version (value 1)", ["version"],
            registry=self.registry,
        )  # fmt: skip
        info.labels(oauthproxy.__version__).set(1)
        self.traffic = TrafficMetrics(self.registry, self.snapshots)
        self.tls = TLSMetrics(self.registry)
        self.acme = AcmeMetrics(self.registry)
        self.event_lag = EventLag(self.registry, self.clock)

    def watch_state(
        self,
        listeners: Listeners,
        redis_up: Callable[[], bool],
        request_log: Callable[[], Mapping[str, int]] | None,
    ) -> None:
        """Read these at every scrape: listeners' connections, Redis, the request log."""
        collector = StateCollector(self.snapshots, listeners, redis_up, request_log)
        self.registry.register(collector)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition for a scraper sending ``Accept: accept``: (body, content type)."""
        encoder, content_type = choose_encoder(accept or "")
        if self.before_scrape is not None:
            self.before_scrape()
        return encoder(self.registry), content_type

    def families(self) -> list[cluster.Family]:
        """This process' families as plain data (what a worker hands its supervisor)."""
        if self.before_scrape is not None:
            self.before_scrape()
        return cluster.export(self.registry)

    async def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The daemon's exposition: this process', or every worker's when gathered."""
        if self.gather is None:
            return self.render(accept)
        return cluster.render(await self.gather(), accept)
