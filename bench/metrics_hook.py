"""What the metrics and the request log cost a gateway request in the access-log hook.

Prints microseconds per finished request for the gateway's one hook
(:class:`~oauthproxy.requestlog.finished.FinishedRequests`, rows made 64 at a time)
with the metrics as its only sink (the request log off) and with the metrics and the
request-log writer (on, as ``tap.compose`` wires them; the writer's flush to Redis is
not included), over a finished ``twisted.web`` request with the notes the gateway
attaches.  Compare with the gateway's own cost per request (``bench/run_gateway.sh``:
about 1e6 / req/s microseconds of one core).

    .venv/bin/python bench/metrics_hook.py [--calls N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from twisted.internet.task import Clock

from oauthproxy.metrics.registry import Metrics
from oauthproxy.model import Proxy, Snapshot
from oauthproxy.requestlog.finished import FinishedRequests
from oauthproxy.requestlog.record import notes_for
from oauthproxy.requestlog.writer import RequestLogWriter
from oauthproxy.testing import MemoryStorage

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.requestlog.samples import finish_request


class _Snapshots:
    """A fixed snapshot with the benchmarked proxy."""

    connected = True
    current = Snapshot(
        proxies={"app.example.test": Proxy("app.example.test", "http://127.0.0.1:1")}
    )


def finished_request() -> Any:
    """A real ``twisted.web`` request as the gateway leaves it when it finishes."""
    captured: list[Any] = []

    def notes(request: Any) -> None:
        notes_for(request).started, notes_for(request).upstream_seconds = 99.99, 0.004

    finish_request(
        captured.append, b"/api/items", headers={b"host": b"app.example.test"}, before=notes
    )
    return captured[0]


def per_call(hook: Any, request: Any, calls: int) -> float:
    """Microseconds per call of ``hook(request)``."""
    start = time.perf_counter()
    for _ in range(calls):
        hook(request)
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    """Print the costs, the request log off and on."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    calls = parser.parse_args().calls
    clock = Clock()
    clock.advance(100)
    metrics = Metrics(_Snapshots(), clock)  # type: ignore[arg-type]
    writer = RequestLogWriter(MemoryStorage(clock).request_log, clock, max_buffer=calls * 3)
    request = finished_request()
    for name, sinks in (
        ("metrics (log off)", [metrics.traffic]),
        ("metrics and log (on)", [metrics.traffic, writer]),
    ):
        hook = FinishedRequests(clock, sinks).access_log
        print(f"{name:22s} {per_call(hook, request, calls):6.2f} us per request")


if __name__ == "__main__":
    main()
