"""What the request log costs per request: the hook, the flush, and Redis' share.

Runs the writer as the daemon does (the gateway's hook,
:class:`~oauthproxy.requestlog.finished.FinishedRequests`, on a finished ``twisted.web``
request with the writer as its one sink, then ``flush`` to a real redis-server it
starts on loopback and stops by PID) and prints, per record:

- the hook's CPU (keeping the request, making its row, queueing it);
- the flush's CPU in this process (encoding and sending a batch), and the longest
  flush of one ``flush_interval``'s worth of records at ``--rate`` requests a second
  (what one flush can hold the reactor for);
- the redis-server's CPU (``/proc``), which counts against the same cores.

Compare with the gateway's CPU per request (``bench/run_gateway.sh``).

    .venv/bin/python bench/request_log.py [--records N] [--rate R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from twisted.internet import defer, task

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.metrics_hook import finished_request
from oauthproxy.requestlog.finished import FinishedRequests
from oauthproxy.requestlog.writer import RequestLogWriter
from oauthproxy.storage.address import parse_redis_url
from oauthproxy.storage.crypto import SecretBox
from oauthproxy.storage.redis import connect_storage


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def measure(reactor: Any, args: argparse.Namespace, redis_pid: int, port: int) -> None:
    """Feed ``args.records`` requests through the hook and flush them as the timer would."""
    storage = connect_storage(
        parse_redis_url(f"redis://127.0.0.1:{port}/0"), SecretBox.generate(), 10.0, reactor
    )
    writer = RequestLogWriter(storage.request_log, reactor, max_buffer=args.records * 2)
    finished = FinishedRequests(reactor, [writer])
    request = finished_request()
    finished.access_log(request)
    finished.drain()
    await writer.flush()  # connected, script loaded: not part of the figures
    per_flush = max(1, int(args.rate * writer.flush_interval))
    hook = flush = 0.0
    flushes: list[float] = []
    redis_before = cpu_seconds(redis_pid)
    for start in range(0, args.records, per_flush):
        began = time.process_time()
        for _ in range(min(per_flush, args.records - start)):
            finished.access_log(request)
        finished.drain()
        hook += time.process_time() - began
        began, wall = time.process_time(), time.perf_counter()
        await writer.flush()
        flush += time.process_time() - began
        flushes.append(time.perf_counter() - wall)
    redis = cpu_seconds(redis_pid) - redis_before
    await storage.close()
    n = args.records
    print(f"records {n} (written {writer.written}), {per_flush} per flush")
    print(f"hook (request path)   {hook / n * 1e6:6.2f} us per record")
    print(f"flush (this process)  {flush / n * 1e6:6.2f} us per record")
    print(f"redis-server          {redis / n * 1e6:6.2f} us per record")
    print(f"total                 {(hook + flush + redis) / n * 1e6:6.2f} us per record")
    flushes.sort()
    median, longest = flushes[len(flushes) // 2] * 1e3, flushes[-1] * 1e3
    print(
        f"one flush (wall, with the Redis round trip): median {median:.2f} ms, max {longest:.2f} ms"
    )


def main() -> None:
    """Start a redis-server, measure, stop it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=6000.0, help="requests a second")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="rlog-bench-")
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", directory],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        task.react(lambda reactor: defer.ensureDeferred(measure(reactor, args, server.pid, port)))
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
