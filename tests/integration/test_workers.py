"""``--workers N`` through the real ``twistd oauthproxy`` (issue 13).

A supervisor process prepares Redis (the embedded redis-server stays its single
child), prints the admin token once, opens the listening sockets and runs N worker
processes on them.  These tests check what a user sees: both workers answer on the
shared ports (plain, TLS, PROXY-protocol and systemd-activated listeners), a write
confirmed by one worker is served at once by the other (the read-your-writes suite
runs again with two workers), ``/metrics`` and ``/health`` describe the whole daemon,
a killed worker is replaced, and SIGTERM drains every worker.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

import treq
from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from tests.integration import test_read_your_writes
from tests.support.backends import start_backend
from tests.support.daemon import TOKEN, DaemonProcess, free_port, run_twistd, start_daemon
from tests.support.haproxy import start_haproxy
from tests.support.tls import probe_tls

WORKERS = ("--workers", "2")
HOST = "app.test"


async def start_workers(test: TestCase, args: tuple[str, ...] = (), **kw: Any) -> DaemonProcess:
    """A daemon with two workers, once both are ready."""
    daemon = await start_daemon(test, args=[*WORKERS, *args], **kw)
    await daemon.wait_for(lambda body: body.get("workers", {}).get("running") == 2)
    return daemon


async def add_proxy(
    daemon: DaemonProcess, target: str, host: str = HOST, token: str | None = None
) -> None:
    """Create the proxy ``host`` -> ``target`` (plain HTTP), as the admin by default."""
    code, body = await daemon.post(
        "/proxy/targets/",
        {"hostname": host, "target_url": target, "enable_https": False},
        token=token or daemon.admin_token,
    )
    assert code == 201, body


async def get(port: int, host: str = HOST, path: str = "/") -> int:
    """``GET`` on a new connection to ``127.0.0.1:port``; the status."""
    pool = HTTPConnectionPool(reactor, persistent=False)
    response = await treq.get(
        f"http://127.0.0.1:{port}{path}", headers={"Host": [host]}, pool=pool, timeout=15
    )
    await treq.content(response)
    code: int = response.code
    return code


def metric_values(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of every sample named ``name`` in an exposition."""
    values = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            series, _, value = line.rpartition(" ")
            values[series[len(name) :]] = float(value)
    return values


class WorkersReadYourWritesTests(test_read_your_writes.ReadYourWritesTests):
    """The read-your-writes suite against two workers: every use is a new connection,
    which either worker may accept, so each write must be live on both when confirmed."""

    daemon_args = WORKERS
    #: the window is a sibling's event tail (about a millisecond): many tries show it
    rounds = 100


class WorkerProcessTests(TestCase):
    """One daemon, two worker processes."""

    timeout = 120

    async def test_two_workers_answer_and_health_counts_them(self) -> None:
        """Both workers answer on the shared API port; ``/health`` says two run."""
        daemon = await start_workers(self)
        seen = set()
        for _ in range(40):
            code, body = await daemon.health()
            self.assertEqual(code, 200)
            self.assertEqual(body["workers"]["configured"], 2)
            self.assertEqual(body["workers"]["running"], 2)
            seen.add(body["workers"]["this"])
        self.assertEqual(seen, {0, 1}, "40 new connections all reached the same worker")
        self.assertEqual(len(daemon.worker_pids), 2)

    async def test_one_embedded_redis_and_one_admin_token(self) -> None:
        """The embedded redis-server is the supervisor's single child; the token is shown once."""
        daemon = await start_workers(self)
        redis = daemon.embedded_redis_pids
        self.assertEqual(len(redis), 1)
        with open(f"/proc/{redis[0]}/stat", "rb") as f:
            parent = int(f.read().rsplit(b")", 1)[1].split()[1])
        self.assertEqual(parent, daemon.pid)
        shown = [line for line in daemon.output if line.startswith("Admin token (shown once")]
        self.assertEqual(len(shown), 1, "\n".join(daemon.output))
        self.assertEqual(len({TOKEN.search(line).group(0) for line in shown}), 1)  # type: ignore[union-attr]

    async def test_metrics_describe_every_worker(self) -> None:
        """``/metrics`` from either worker counts every worker's requests, labelled by worker."""
        http = free_port()
        daemon = await start_workers(self, ("--http", f"tcp:{http}:interface=127.0.0.1"))
        backend = await start_backend(self, reactor)
        await add_proxy(daemon, backend.url)
        for _ in range(30):
            self.assertEqual(await get(http), 200)
        for _ in range(4):  # whichever worker answers the scrape, the answer is the daemon's
            code, text = await daemon.get("/metrics")
            self.assertEqual(code, 200)
            requests = metric_values(text, "oauthproxy_requests_total")
            self.assertEqual(sum(requests.values()), 30, requests)
            workers = {series.split('worker="')[1].split('"')[0] for series in requests}
            self.assertEqual(workers, {"0", "1"}, "30 connections all reached one worker")
            self.assertEqual(metric_values(text, "oauthproxy_workers_running"), {"": 2.0})
            memory = metric_values(text, "process_resident_memory_bytes")
            self.assertEqual({series.split('"')[1] for series in memory}, {"0", "1", "supervisor"})

    async def test_a_killed_worker_is_replaced(self) -> None:
        """SIGKILL to a worker: a new one takes its place and the daemon keeps serving."""
        http = free_port()
        daemon = await start_workers(self, ("--http", f"tcp:{http}:interface=127.0.0.1"))
        backend = await start_backend(self, reactor)
        await add_proxy(daemon, backend.url)
        before = daemon.worker_pids
        os.kill(before[0], signal.SIGKILL)
        body = await daemon.wait_for(
            lambda b: b["workers"]["restarts"] == 1 and b["workers"]["running"] == 2
        )
        self.assertEqual(body["workers"]["crash_looping"], [])
        after = daemon.worker_pids
        self.assertEqual(len(after), 2)
        self.assertNotIn(before[0], after)
        self.assertIn(before[1], after)
        for _ in range(20):
            self.assertEqual(await get(http), 200)
        self.assertTrue(any("worker 0 was killed by signal 9" in line for line in daemon.output))

    async def test_sigterm_drains_every_worker(self) -> None:
        """Requests in flight on both workers get their answers; then every process exits."""
        http = free_port()
        daemon = await start_workers(self, ("--http", f"tcp:{http}:interface=127.0.0.1"))
        backend = await start_backend(self, reactor)
        await add_proxy(daemon, backend.url)
        workers = daemon.worker_pids
        pending = [defer.Deferred.fromCoroutine(get(http, path="/delay?ms=1500")) for _ in range(8)]
        await task.deferLater(reactor, 0.5, lambda: None)
        daemon.transport.signalProcess("TERM")
        codes = await defer.gatherResults(pending)
        self.assertEqual(codes, [200] * 8)
        await daemon.stop()
        self.assertTrue(daemon.exited_cleanly, "\n".join(daemon.output[-20:]))
        for pid in workers:
            self.assertFalse(os.path.exists(f"/proc/{pid}"), f"worker {pid} outlived the daemon")
        drained = [line for line in daemon.output if "draining" in line]
        self.assertTrue(drained, "no worker had requests to drain")

    async def test_tls_and_proxy_protocol_listeners_are_shared(self) -> None:
        """HTTPS (SNI fallback certificate) and PROXY-protocol listeners work with workers."""
        https, proxied = free_port(), free_port()
        daemon = await start_workers(
            self,
            (
                "--https",
                f"tcp:{https}:interface=127.0.0.1",
                "--proxy-http",
                f"tcp:{proxied}:interface=127.0.0.1",
            ),
        )
        backend = await start_backend(self, reactor)
        await add_proxy(daemon, backend.url)
        balancer = start_haproxy(self, proxied, "send-proxy-v2")
        for _ in range(10):
            self.assertEqual(await get(balancer.front_port), 200)
            outcome = await probe_tls(reactor, https, "unknown.test")
            self.assertIsNone(outcome.error)
            self.assertIsNotNone(outcome.certificate)
        headers = dict((k.lower(), v) for k, v in backend.state.requests[-1]["headers"])
        self.assertEqual(headers.get("x-forwarded-for"), "127.0.0.1")

    async def test_systemd_socket_is_shared_by_the_workers(self) -> None:
        """An activated socket (LISTEN_FDS) is the supervisor's; both workers accept from it."""
        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listening.close)
        listening.bind(("127.0.0.1", 0))
        listening.listen(50)
        port = listening.getsockname()[1]
        daemon = await start_workers(
            self, ("--http", "systemd:domain=INET:index=0"), sockets=[listening]
        )
        listening.close()  # only the daemon holds it now
        backend = await start_backend(self, reactor)
        await add_proxy(daemon, backend.url)
        for _ in range(20):
            self.assertEqual(await get(port), 200)
        _, body = await daemon.health()
        self.assertEqual(body["listeners"]["http"], "systemd:domain=INET:index=0")

    async def test_one_worker_runs_the_docker_reconciler(self) -> None:
        """The reconciler's Redis lease picks one owner among the workers."""
        daemon = await start_workers(self)
        await task.deferLater(reactor, 1.0, lambda: None)
        owners = [line for line in daemon.output if "now reconciles Docker services" in line]
        self.assertEqual(len(owners), 1, "\n".join(daemon.output))

    async def test_a_busy_port_stops_the_supervisor_with_one_line(self) -> None:
        """With workers too, a taken port is exit status 1 and one line naming the listener."""
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--workers", "2", "--api", "off", "--https", "off"]
        code, output = await run_twistd(self, [*args, "--http", f"tcp:{port}:interface=127.0.0.1"])
        self.assertEqual(code, 1, "\n".join(output[-10:]))
        failed = [line for line in output if "could not start" in line]
        self.assertEqual(len(failed), 1, "\n".join(output))
        self.assertIn(f"the http listener cannot listen on tcp:{port}", failed[0])
        self.assertIn("--http or OAUTHPROXY_HTTP", failed[0])
        self.assertFalse(any("Traceback" in line for line in output), "\n".join(output))
