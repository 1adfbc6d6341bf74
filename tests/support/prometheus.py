"""A real Prometheus server (``/usr/bin/prometheus``) scraping a daemon, for metrics tests.

:func:`start_prometheus` writes a scrape configuration (every second, one
target), starts ``prometheus`` on a free loopback port with its data in the
test's temp directory, waits until ``/-/ready`` answers, and stops it by PID in
a cleanup.  :meth:`Prometheus.query` runs an instant PromQL query through the
HTTP API; :meth:`Prometheus.wait_for` polls one until it has a value that
satisfies a predicate (bounded).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import treq
from attrs import define
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.support.daemon import child_environment, free_port
from tests.support.processes import tied_to_test

PROMETHEUS = "/usr/bin/prometheus"
_REACTOR: Any = reactor


class _Output(ProcessProtocol):
    """Keeps Prometheus' log; fires ``ended`` when it exits."""

    def __init__(self) -> None:
        self.log = bytearray()
        self.running = True
        self.ended: Deferred[None] = Deferred()

    def errReceived(self, data: bytes) -> None:
        """Prometheus logs on stderr."""
        self.log += data[-100_000:]

    def processEnded(self, reason: Failure) -> None:
        """Note the exit."""
        self.running = False
        self.ended.callback(None)


@define
class Prometheus:
    """A running Prometheus and its HTTP API."""

    url: str
    output: _Output

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """The result vector of an instant query."""
        response = await treq.get(
            self.url + "/api/v1/query", params={"query": promql}, timeout=10, persistent=False
        )
        answer = await treq.json_content(response)
        if answer.get("status") != "success":
            raise AssertionError(f"query {promql!r} failed: {answer}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    async def value(self, promql: str) -> float | None:
        """The single value of a query (None when the vector is empty)."""
        result = await self.query(promql)
        if not result:
            return None
        if len(result) != 1:
            raise AssertionError(f"{promql!r} gave {len(result)} series: {result}")
        return float(result[0]["value"][1])

    async def wait_for(
        self, promql: str, ok: Callable[[float], bool], seconds: float = 30.0
    ) -> float:
        """Poll ``promql`` until its value satisfies ``ok``; that value (fails on timeout)."""
        last = None
        for _ in range(int(seconds / 0.5)):
            last = await self.value(promql)
            if last is not None and ok(last):
                return last
            await deferLater(_REACTOR, 0.5, lambda: None)
        log = bytes(self.output.log[-2000:]).decode("utf-8", "replace")
        raise AssertionError(f"{promql!r} never matched; last value {last!r}\n{log}")


async def start_prometheus(test: TestCase, target: str, interval: int = 1) -> Prometheus:
    """Start Prometheus scraping ``target`` (``host:port``, path ``/metrics``)."""
    folder = os.path.abspath(test.mktemp())
    os.makedirs(folder)
    config = os.path.join(folder, "prometheus.yml")
    with open(config, "w") as f:
        f.write(
            f"global: {{scrape_interval: {interval}s, evaluation_interval: {interval}s}}\n"
            "scrape_configs:\n"
            "  - job_name: oauthproxy\n"
            "    metrics_path: /metrics\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
        )
    port = free_port()
    output = _Output()
    argv = tied_to_test(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={os.path.join(folder, 'data')}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
    )
    transport = _REACTOR.spawnProcess(output, argv[0], argv, env=child_environment(), path=folder)

    async def stop() -> None:
        if output.running:
            os.kill(transport.pid, 15)
        await output.ended

    test.addCleanup(stop)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        if not output.running:
            break
        try:
            response = await treq.get(url + "/-/ready", timeout=2, persistent=False)
            await treq.content(response)
            if response.code == 200:
                return Prometheus(url, output)
        except Exception:  # not listening yet
            pass
        await deferLater(_REACTOR, 0.1, lambda: None)
    raise AssertionError(
        "prometheus did not start:\n" + bytes(output.log).decode("utf-8", "replace")
    )
