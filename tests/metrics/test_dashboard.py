"""``etc/grafana-dashboard.json``: valid, and every series it queries is one the daemon exposes."""

from __future__ import annotations

import json
import os
import re

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.metrics.registry import Metrics
from tests.admin.harness import StandInSnapshots

DASHBOARD = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "etc",
    "grafana-dashboard.json",
)
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exposed_series() -> set[str]:
    """Every series name a daemon's /metrics can carry (families with their suffixes)."""
    metrics = Metrics(StandInSnapshots(), Clock())  # type: ignore[arg-type]
    metrics.watch_state(lambda: [], lambda: True, lambda: {})
    body, _ = metrics.render(None)
    names = set()
    for family in text_string_to_metric_families(body.decode()):
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
        names.update(sample.name for sample in family.samples)
    return names


class DashboardTests(SynchronousTestCase):
    """The example Grafana dashboard stays in step with the metrics."""

    def setUp(self) -> None:
        with open(DASHBOARD, encoding="utf-8") as f:
            self.dashboard = json.load(f)

    def test_every_queried_series_is_exposed(self) -> None:
        """No panel queries a metric name the daemon does not have."""
        exposed = exposed_series()
        queried = {
            name
            for panel in self.dashboard["panels"]
            for target in panel["targets"]
            for name in re.findall(r"\b(?:oauthproxy|process)_[a-z_]+", target["expr"])
        }
        self.assertGreater(len(queried), 20)
        self.assertEqual(queried - exposed, set())

    def test_panels_have_unique_ids_and_a_datasource_variable(self) -> None:
        """Importable: ids unique, queries through the chosen Prometheus data source."""
        ids = [panel["id"] for panel in self.dashboard["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        variables = {v["name"] for v in self.dashboard["templating"]["list"]}
        self.assertLessEqual({"datasource", "job", "instance", "proxy"}, variables)
        for panel in self.dashboard["panels"]:
            self.assertEqual(panel["datasource"]["uid"], "${datasource}", panel["title"])
