"""Connection scale: N idle keep-alive connections held by one gateway process.

Starts a small origin (in this process), a daemon (``twistd -n oauthproxy``, fresh data
directory, one proxy ``127.0.0.1`` -> the origin, made by ``bench/configure_proxy.py``)
and then opens ``--connections`` connections to the gateway, ``--in-flight`` at a
time.  Meanwhile a probe (a process of its own, on a connection of its own) sends a request
every 10 ms that the gateway answers itself: its latency says whether accepting them
stalls everyone else.  Once all are connected, each
sends one proxied request and keeps the connection open (kept alive, idle), then each
sends a second one (all must be answered on the same connection).

Prints the daemon's RSS before, with the connections open, once each was answered
and after the second request (``/proc/PID/status``, the gateway process
only: its embedded redis-server is a separate process), the RSS per connection, how
long opening took and the probe's latency while it happened.  Everything it starts is
stopped by PID.  Needs a file-descriptor limit above ``--connections`` (``ulimit -n``).

    .venv/bin/python bench/idle_connections.py [--connections 10000] [--in-flight 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BODY = b"hello, world\n"


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A keep-alive origin that answers every request with ``BODY``."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


REQUEST = b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Send one request on a kept-alive connection; whether a 200 with the body came back."""
    writer.write(REQUEST)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length)
    return head.startswith(b"HTTP/1.1 200") and body == BODY


PROBE = b"GET /probe HTTP/1.1\r\nHost: probe.invalid\r\n\r\n"


def receive(conn: socket.socket) -> bytes:
    """The next bytes from ``conn``; SystemExit if it closed."""
    chunk = conn.recv(65536)
    if not chunk:
        raise SystemExit("the gateway closed the probe's connection")
    return chunk


def run_probe(port: int) -> None:
    """``--probe``: until stdin closes, a request every 10 ms that the gateway answers
    itself (an unknown host: 404), on a connection of its own; then the latencies (s),
    one per line.  A process of its own, so that neither this script's event loop nor
    its origin is in what it measures."""
    import threading

    latencies: list[float] = []
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        while not done.is_set():
            began = time.perf_counter()
            conn.sendall(PROBE)
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += receive(conn)
            head, _, body = answer.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += receive(conn)
            latencies.append(time.perf_counter() - began)
            time.sleep(0.01)
    print("\n".join(f"{x:.6f}" for x in latencies))


async def start_probe(port: int) -> asyncio.subprocess.Process:
    """The probe process (see :func:`run_probe`)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, os.path.abspath(__file__), "--probe", str(port),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def probe_latencies(process: asyncio.subprocess.Process) -> list[float]:
    """Stop the probe; its latencies in seconds."""
    out, _ = await process.communicate(b"")
    return [float(line) for line in out.split()]


async def gated(calls: list[Any], at_once: int) -> list[Any]:
    """Await ``calls`` (coroutines), at most ``at_once`` at a time; their results in order."""
    gate = asyncio.Semaphore(at_once)

    async def one(call: Any) -> Any:
        async with gate:
            return await call

    return await asyncio.gather(*(one(c) for c in calls))


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """A new connection (None if refused)."""
    try:
        return await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return None


async def answered(pair: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> bool:
    """Whether a request on ``pair`` was answered."""
    if pair is None:
        return False
    try:
        return await ask(*pair)
    except (OSError, asyncio.IncompleteReadError):
        return False


async def measure(args: argparse.Namespace, port: int, pid: int) -> None:
    """Open the connections, have each ask once, then again; take the figures."""
    for _ in range(100):  # warm-up on one connection
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await ask(reader, writer)
        writer.close()
    await asyncio.sleep(6.0)  # the daemon's start-up work is over (its heap freeze: 5 s)
    before = rss_kb(pid)
    before_probe = await start_probe(port)
    await asyncio.sleep(0.5)
    idle = sorted(await probe_latencies(before_probe))
    during_probe = await start_probe(port)
    await asyncio.sleep(0.1)
    began = time.perf_counter()
    pairs = await gated([connect(port) for _ in range(args.connections)], args.in_flight)
    opening = time.perf_counter() - began
    await asyncio.sleep(0.1)
    during = sorted(await probe_latencies(during_probe))
    connected = [p for p in pairs if p is not None]
    opened = rss_kb(pid)
    began = time.perf_counter()
    first = sum(await gated([answered(p) for p in connected], args.in_flight))
    asking = time.perf_counter() - began
    await asyncio.sleep(1.0)
    after = rss_kb(pid)
    second = sum(await gated([answered(p) for p in connected], args.in_flight))
    await asyncio.sleep(1.0)
    after_second = rss_kb(pid)
    for _, writer in connected:
        writer.close()
    n = len(connected)
    print(f"connections accepted: {n} of {args.connections} in {opening:.2f} s"
          f" ({args.in_flight} connecting at a time)")  # fmt: skip
    if during:
        print(
            f"probe latency while they were accepted: {len(during)} requests, median "
            f"{statistics.median(during) * 1e3:.2f} ms, max {during[-1] * 1e3:.2f} ms "
            f"(before: median {statistics.median(idle or [0]) * 1e3:.2f} ms,"
            f" max {max(idle or [0]) * 1e3:.2f} ms)"
        )
    print(f"a request on each: {first} answered in {asking:.2f} s; again: {second} answered")
    print(
        f"gateway RSS: {before / 1024:.1f} MiB before, {opened / 1024:.1f} MiB with them"
        f" connected, {after / 1024:.1f} MiB once each was answered,"
        f" {after_second / 1024:.1f} MiB after a second request on each"
    )
    if n:
        print(
            f"RSS per idle keep-alive connection (answered once): "
            f"{(after - before) / n:.2f} KiB; {args.connections} of them: "
            f"{(after - before) * args.connections / n / 1024:.1f} MiB"
        )


def main() -> None:
    """Start the origin and the daemon, measure, stop both."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--in-flight", type=int, default=500)
    parser.add_argument("--request-log", default="on", choices=("on", "off"))
    parser.add_argument("--probe", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        run_probe(args.probe)
        return
    directory = tempfile.mkdtemp(prefix="idle-bench-")
    port, api = free_port(), free_port()
    env = dict(
        os.environ,
        PYTHONPATH=REPO,
        OAUTHPROXY_REQUEST_LOG=args.request_log,
        OAUTHPROXY_IDLE_TIMEOUT="300",
        ACME_DIRECTORY_URL="https://127.0.0.1:1/directory",
        ACME_STAGING_URL="https://127.0.0.1:1/directory",
    )
    bindir = os.path.dirname(sys.executable)
    data = os.path.join(directory, "data")

    async def run() -> None:
        server = await asyncio.start_server(origin, "127.0.0.1", 0, backlog=4096)
        origin_port = server.sockets[0].getsockname()[1]
        configure = await asyncio.create_subprocess_exec(
            sys.executable, os.path.join(REPO, "bench", "configure_proxy.py"),
            "--api", f"http://127.0.0.1:{api}", "--data-dir", data,
            "--origin", f"http://127.0.0.1:{origin_port}", env=env, cwd=directory,
        )  # fmt: skip
        daemon = subprocess.Popen(
            [os.path.join(bindir, "twistd"), "-n", "--pidfile=", "oauthproxy",
             "--http", f"tcp:{port}:interface=127.0.0.1", "--https", "off",
             "--api", f"tcp:{api}:interface=127.0.0.1", "--data-dir", data, "--log-level", "warn"],
            env=env, cwd=directory, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            if await configure.wait() != 0:
                raise SystemExit("the daemon could not be configured")
            await measure(args, port, daemon.pid)
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
            server.close()

    try:
        asyncio.run(run())
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
