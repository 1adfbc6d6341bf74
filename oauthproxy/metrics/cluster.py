"""One exposition for a daemon with several worker processes (pure).

Each worker keeps its own registry (its requests, its connections, its Python
runtime); whichever worker a scrape reaches asks the supervisor, which collects
every worker's families as plain data (:func:`export`) and returns them merged
(:func:`merge`): each series gets a ``worker`` label naming the process it comes
from (``"0"``, ``"1"`` …, ``"supervisor"`` for the supervisor's own), so
``sum(rate(oauthproxy_requests_total[1m]))`` is the daemon's request rate and a
restarted worker's counters reset as one series of their own, which ``rate``
handles, instead of making a daemon-wide sum go backwards.  Families that
describe the daemon as a whole (``oauthproxy_workers*``) are exported without
that label.  :func:`render` writes the text or OpenMetrics exposition.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

#: families about the daemon as a whole: never labelled with a worker
DAEMON_WIDE_PREFIX = "oauthproxy_workers"

#: one family as plain data (JSON-compatible)
Family = dict[str, Any]


def export(registry: CollectorRegistry) -> list[Family]:
    """Every family of ``registry`` as plain data (name, help, type, unit, samples)."""
    return [
        {
            "name": metric.name,
            "documentation": metric.documentation,
            "type": metric.type,
            "unit": metric.unit,
            "samples": [[s.name, s.labels, s.value, s.timestamp] for s in metric.samples],
        }
        for metric in registry.collect()
    ]


def merge(sources: Iterable[tuple[str, Sequence[Family]]]) -> list[Family]:
    """The families of every ``(worker label, families)`` source as one list.

    Families of the same name are joined (their samples kept together, as the
    exposition format needs); each sample gains ``worker=<label>`` unless its
    family is daemon-wide.
    """
    merged: dict[str, Family] = {}
    for worker, families in sources:
        for family in families:
            name = family["name"]
            target = merged.setdefault(name, {**family, "samples": []})
            wide = name.startswith(DAEMON_WIDE_PREFIX)
            for sample_name, labels, value, timestamp in family["samples"]:
                if not wide:
                    labels = {**labels, "worker": worker}
                target["samples"].append([sample_name, labels, value, timestamp])
    return list(merged.values())


class _Families(Collector):
    """Hands out prepared families (for the encoders, which read a registry)."""

    def __init__(self, families: Sequence[Family]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        """The families as prometheus-client metrics."""
        for family in self._families:
            metric = Metric(family["name"], family["documentation"], family["type"], family["unit"])
            metric.samples = [
                Sample(name, labels, value, timestamp)
                for name, labels, value, timestamp in family["samples"]
            ]
            yield metric


def render(families: Sequence[Family], accept: str | None) -> tuple[bytes, str]:
    """The exposition of ``families`` for a scraper sending ``Accept: accept``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
