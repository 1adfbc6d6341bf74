"""SIGTERM drains: the real ``twistd oauthproxy`` finishes what is in flight, then stops.

Issue 10, defect 1: SIGTERM used to cut a slow or streaming response at once (the
busy check looked at twisted.web's generic wrapper, whose requests live on its inner
channel, so every connection looked idle).  Now the daemon stops accepting, lets
requests and streams finish up to ``OAUTHPROXY_DRAIN_TIMEOUT``, closes idle
keep-alive connections at once and busy ones after their response (which says
``Connection: close``), then stops.  The last test restarts two daemons behind a real
HAProxy, one after the other, under load, and counts every request.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

import treq
from twisted.internet import defer, error, reactor, task
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from tests.integration.test_gateway_tls import curl
from tests.support.backends import Backend, start_backend
from tests.support.daemon import DaemonProcess, free_port, start_daemon
from tests.support.haproxy import start_balancer
from tests.support.redis import RedisServer
from tests.support.wire import ConnectionDropped, WireClient, get

HOST = "app.test"


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` every 20 ms; fail after ``timeout`` seconds."""
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await task.deferLater(reactor, 0.02, lambda: None)
    raise AssertionError("condition not met in time")


async def serving_daemon(
    test: TestCase, backend: Backend, env: dict[str, str] | None = None, **kw: Any
) -> tuple[DaemonProcess, int]:
    """A daemon with an HTTP listener and a proxy for ``HOST`` to ``backend``."""
    port = free_port()
    daemon = await start_daemon(
        test, args=["--http", f"tcp:{port}:interface=127.0.0.1"], env=env, **kw
    )
    await daemon.wait_for(lambda body: "http" in body.get("listeners", {}))
    code, body = await daemon.post(
        "/proxy/targets/",
        {"hostname": HOST, "target_url": backend.url, "enable_https": False},
        token=daemon.admin_token,
    )
    test.assertEqual(code, 201, body)
    return daemon, port


def terminate(daemon: DaemonProcess) -> None:
    """Send SIGTERM without waiting for the exit."""
    daemon.transport.signalProcess("TERM")


class DrainTests(TestCase):
    """What SIGTERM does to requests in flight and to idle connections."""

    timeout = 120

    async def test_slow_response_in_flight_completes(self) -> None:
        """A response still being prepared upstream at SIGTERM reaches the client whole."""
        backend = await start_backend(self, reactor)
        daemon, port = await serving_daemon(self, backend)
        wire = await WireClient.connect(self, port)
        wire.send(get(HOST, "/delay?ms=1500"))
        await task.deferLater(reactor, 0.3, lambda: None)
        terminate(daemon)
        answer = await wire.read_answer()
        self.assertEqual(answer.status, 200)
        self.assertEqual(json.loads(answer.body)["uri"], "/delay?ms=1500")
        self.assertEqual(answer.header(b"connection"), b"close")
        await daemon.capture.ended
        self.assertTrue(any("oauthproxy stopped" in line for line in daemon.output))

    async def test_stream_in_flight_completes(self) -> None:
        """An SSE stream open at SIGTERM keeps flowing until it ends, then the daemon stops."""
        backend = await start_backend(self, reactor)
        daemon, port = await serving_daemon(self, backend)
        wire = await WireClient.connect(self, port)
        wire.send(get(HOST, "/sse"))
        head = await wire.read_answer(head_only=True)
        self.assertEqual(head.status, 200)
        terminate(daemon)
        await task.deferLater(reactor, 0.5, lambda: None)
        self.assertFalse(daemon.capture.ended.called, "the daemon did not wait for the stream")
        self.assertFalse(wire.closed)
        backend.state.sse_release.callback(None)
        self.assertEqual(await wire.read_body(head), b"data: first\n\n")
        await daemon.capture.ended
        self.assertEqual(backend.state.sse_cut, 0)

    async def test_idle_keep_alive_connection_is_closed_at_once(self) -> None:
        """An idle kept-alive connection is closed at SIGTERM while a busy one keeps going;
        new connections are refused."""
        backend = await start_backend(self, reactor)
        daemon, port = await serving_daemon(self, backend)
        idle = await WireClient.connect(self, port)
        self.assertEqual((await idle.request(get(HOST, "/"))).status, 200)
        busy = await WireClient.connect(self, port)
        busy.send(get(HOST, "/delay?ms=2000"))
        await task.deferLater(reactor, 0.3, lambda: None)
        terminate(daemon)
        await wait_until(lambda: idle.closed, 5.0)
        self.assertFalse(busy.closed)
        with self.assertRaises(error.ConnectionRefusedError):
            await WireClient.connect(self, port)
        self.assertEqual((await busy.read_answer()).status, 200)
        await daemon.capture.ended

    async def test_http2_stream_in_flight_completes(self) -> None:
        """An HTTP/2 request in flight at SIGTERM (curl over TLS with ALPN h2) completes."""
        backend = await start_backend(self, reactor)
        port = free_port()
        daemon = await start_daemon(self, args=["--https", f"tcp:{port}:interface=127.0.0.1"])
        await daemon.wait_for(lambda body: "https" in body.get("listeners", {}))
        code, body = await daemon.post(
            "/proxy/targets/",
            {"hostname": HOST, "target_url": backend.url},
            token=daemon.admin_token,
        )
        self.assertEqual(code, 201, body)
        running = defer.Deferred.fromCoroutine(
            curl(
                "-sS",
                "-k",
                "--http2",
                "--resolve",
                f"{HOST}:{port}:127.0.0.1",
                "-w",
                "\n%{http_version} %{http_code}",
                f"https://{HOST}:{port}/delay?ms=1500",
            )
        )
        await task.deferLater(reactor, 0.5, lambda: None)
        terminate(daemon)
        out, err, status = await running
        self.assertEqual(status, 0, err)
        answer, summary = out.rsplit("\n", 1)
        self.assertEqual(summary, "2 200")
        self.assertEqual(json.loads(answer)["uri"], "/delay?ms=1500")
        await daemon.capture.ended

    async def test_drain_timeout_bounds_the_wait(self) -> None:
        """A request that never ends is cut after ``OAUTHPROXY_DRAIN_TIMEOUT`` and the
        daemon stops all the same."""
        backend = await start_backend(self, reactor)
        daemon, port = await serving_daemon(self, backend, env={"OAUTHPROXY_DRAIN_TIMEOUT": "1"})
        wire = await WireClient.connect(self, port)
        wire.send(get(HOST, "/slow"))
        await wait_until(lambda: backend.state.slow_started > 0)
        terminate(daemon)
        with self.assertRaises(ConnectionDropped):
            await wire.read_answer()
        await daemon.capture.ended
        self.assertTrue(daemon.exited_cleanly, "\n".join(daemon.output[-10:]))

    async def test_requests_answered_just_before_sigterm_are_in_the_request_log(self) -> None:
        """The requests answered in the last moments before SIGTERM are recorded: the
        hook keeps them (and makes their rows 64 at a time), and at shutdown it hands them
        to the writer before the writer's last flush (tap.compose's order of services)."""
        backend = await start_backend(self, reactor)
        redis = RedisServer.for_test(self)
        key = {"OAUTHPROXY_SECRET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode()}
        daemon, port = await serving_daemon(self, backend, env=key, redis_url=redis.url)
        wire = await WireClient.connect(self, port)
        for n in range(5):  # fewer than a batch, and all within one flush interval
            wire.send(get(HOST, f"/last-{n}"))
            self.assertEqual((await wire.read_answer()).status, 200)
        terminate(daemon)
        await daemon.capture.ended
        self.assertTrue(daemon.exited_cleanly, "\n".join(daemon.output[-10:]))
        again = await start_daemon(self, redis_url=redis.url, env=key)
        code, found = await again.get(f"/logs/host/{HOST}?limit=50", token=daemon.admin_token)
        self.assertEqual(code, 200, found)
        paths = sorted(record["path"] for record in found["items"])
        self.assertEqual(paths, [f"/last-{n}" for n in range(5)])


class RollingRestartTests(TestCase):
    """Two daemons behind HAProxy, restarted one after the other under load."""

    timeout = 240

    async def test_rolling_restart_behind_haproxy_loses_no_request(self) -> None:
        """Every request made during two restarts gets its answer (no error, no 5xx)."""
        redis = RedisServer.for_test(self)
        key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        env = {"OAUTHPROXY_SECRET_KEY": key}
        backend = await start_backend(self, reactor)
        ports = [free_port(), free_port()]

        async def start(n: int) -> DaemonProcess:
            listener = f"tcp:{ports[n]}:interface=127.0.0.1"
            daemon = await start_daemon(
                self, redis_url=redis.url, args=["--proxy-http", listener], env=env
            )
            await daemon.wait_for(lambda body: "proxy-http" in body.get("listeners", {}))
            return daemon

        daemons = [await start(0), await start(1)]
        admin = daemons[0].admin_token
        self.assertIsNotNone(admin)
        code, body = await daemons[0].post(
            "/proxy/targets/",
            {"hostname": HOST, "target_url": backend.url, "enable_https": False},
            token=admin,
        )
        self.assertEqual(code, 201, body)
        balancer = start_balancer(self, ports)
        url = f"http://127.0.0.1:{balancer.front_port}"
        load = Load(url)
        await load.check_once()
        await load.during_restarts(self, daemons, start)
        print(f"\nrolling restart: {load.ok} requests answered, failures: {load.failures[:5]}")
        self.assertEqual(load.failures, [])
        self.assertGreater(load.ok, 100)


class Load:
    """Requests through the balancer from several workers until told to stop.

    Half the workers keep connections alive (an idempotent GET on a kept-alive
    connection the server closed is retried by the client, as RFC 9112 §9.3.1 allows);
    the other half send POSTs, each on a new connection.  Some requests are slow, so
    there are always some in flight when a daemon is told to stop.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.ok = 0
        self.failures: list[str] = []
        self.stopping = False
        self.kept = HTTPConnectionPool(reactor, persistent=True)
        self.fresh = HTTPConnectionPool(reactor, persistent=False)

    async def check_once(self) -> None:
        """One request must work before the load starts."""
        response = await treq.get(self.url + "/", headers={"Host": [HOST]}, pool=self.fresh)
        await treq.content(response)
        assert response.code == 200, response.code

    async def during_restarts(
        self,
        test: TestCase,
        daemons: list[DaemonProcess],
        start: Callable[[int], Awaitable[DaemonProcess]],
    ) -> None:
        """Under load from 8 workers, stop each daemon in turn (it must exit cleanly) and
        start it again with ``start(n)``, a second apart; the load stops after."""
        running = self.start(workers=8)
        await task.deferLater(reactor, 1.0, lambda: None)
        for n in range(len(daemons)):
            await daemons[n].stop()
            test.assertTrue(daemons[n].exited_cleanly, "\n".join(daemons[n].output[-10:]))
            daemons[n] = await start(n)
            await task.deferLater(reactor, 1.0, lambda: None)
        self.stopping = True
        await running

    def start(self, workers: int) -> defer.Deferred[Any]:
        """Run ``workers`` loops; fires when all have stopped (and pools are closed)."""
        loops = [
            defer.Deferred.fromCoroutine(self._loop(n, persistent=n % 2 == 0))
            for n in range(workers)
        ]

        async def all_done() -> None:
            await defer.gatherResults(loops)
            await self.kept.closeCachedConnections()
            await self.fresh.closeCachedConnections()

        return defer.Deferred.fromCoroutine(all_done())

    async def _loop(self, worker: int, persistent: bool) -> None:
        agent = Agent(reactor, pool=self.kept if persistent else self.fresh)
        n = 0
        while not self.stopping:
            n += 1
            path = f"/delay?ms={300 if n % 3 == 0 else 5}&w={worker}&n={n}"
            await self._one(agent, b"GET" if persistent else b"POST", path)

    async def _one(self, agent: Agent, method: bytes, path: str) -> None:
        try:
            response = await agent.request(
                method, (self.url + path).encode(), Headers({b"host": [HOST.encode()]})
            )
            body = await readBody(response)
        except Exception as e:  # every way a request can be lost counts
            self.failures.append(f"{method.decode()} {path}: {e!r}")
            return
        if response.code != 200 or json.loads(body)["uri"] != path:
            self.failures.append(f"{method.decode()} {path}: {response.code} {body[:80]!r}")
            return
        self.ok += 1
