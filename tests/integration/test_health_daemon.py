"""Health for load balancers, and the admin API under a Redis outage (issue 10, 5 and 11).

A real ``twistd oauthproxy`` on a redis-server the test owns, which it kills, freezes
(SIGSTOP: connections stay open and nothing answers) or fills up.  ``/health/live``
says the process is up; ``/health/ready`` answers 503 unless Redis takes reads and
writes and the listeners are up; ``/health`` keeps the detailed JSON.  While Redis is
known to be down, the admin API answers 503 at once instead of waiting for the Redis
timeout on every request; its listener has the gateway's head deadline.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from tests.support.daemon import DaemonProcess, start_daemon
from tests.support.redis import RedisServer
from tests.support.wire import WireClient

#: how soon a frozen or dead Redis must show (the probe's deadline is 1 s, every 0.5 s)
NOTICED_WITHIN = 3.0


async def status_of(daemon: DaemonProcess, path: str) -> tuple[int, Any]:
    """``GET path`` on the admin API."""
    return await daemon.get(path)


async def until_status(daemon: DaemonProcess, path: str, status: int, within: float) -> float:
    """Seconds until ``GET path`` answers ``status``; fails after ``within`` seconds."""
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started <= within:
        last = await status_of(daemon, path)
        if last[0] == status:
            return time.monotonic() - started
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"{path} still answers {last!r} after {within} s")


class HealthEndpointTests(TestCase):
    """``/health/live``, ``/health/ready`` and ``/health`` against a real Redis."""

    timeout = 120

    async def start(self, **env: str) -> tuple[DaemonProcess, RedisServer]:
        """A daemon on a redis-server of this test."""
        redis = RedisServer.for_test(self)
        daemon = await start_daemon(self, redis_url=redis.url, env=env)
        await daemon.wait_for(lambda body: body.get("status") == "ok")
        return daemon, redis

    async def test_live_and_ready_when_all_is_well(self) -> None:
        """Both answer 200 with a small JSON body."""
        daemon, _ = await self.start()
        self.assertEqual(await status_of(daemon, "/health/live"), (200, {"status": "live"}))
        code, body = await status_of(daemon, "/health/ready")
        self.assertEqual((code, body["status"]), (200, "ready"))

    async def test_frozen_redis_is_not_ready_within_seconds(self) -> None:
        """SIGSTOP on Redis: ``/health/ready`` turns 503 quickly (it took ~6 s to notice),
        ``/health`` says degraded; SIGCONT brings it back."""
        daemon, redis = await self.start()
        redis.freeze()
        took = await until_status(daemon, "/health/ready", 503, NOTICED_WITHIN)
        print(f"\nfrozen Redis noticed after {took:.2f} s")
        code, body = await status_of(daemon, "/health/ready")
        self.assertTrue(any("Redis" in reason for reason in body["reasons"]), body)
        code, detail = await status_of(daemon, "/health")
        self.assertEqual(
            (code, detail["status"], detail["redis"]), (200, "degraded", "unreachable")
        )
        self.assertEqual((await status_of(daemon, "/health/live"))[0], 200)
        redis.thaw()
        await until_status(daemon, "/health/ready", 200, 10.0)

    async def test_dead_redis_is_not_ready(self) -> None:
        """Redis killed: 503 with the reason; restarted: ready again."""
        daemon, redis = await self.start()
        redis.kill()
        await until_status(daemon, "/health/ready", 503, NOTICED_WITHIN)
        redis.start()
        await until_status(daemon, "/health/ready", 200, 15.0)

    async def test_redis_refusing_writes_is_not_ready(self) -> None:
        """A full Redis (reads work, writes are refused): 503, and ``/health`` says why."""
        daemon, redis = await self.start()
        redis.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        redis.command("CONFIG", "SET", "maxmemory", "1")
        await until_status(daemon, "/health/ready", 503, NOTICED_WITHIN)
        _, detail = await status_of(daemon, "/health")
        self.assertEqual(detail["status"], "degraded")
        self.assertEqual(detail["redis"], "connected")
        self.assertIn("OOM", detail["redis_writes"])
        redis.command("CONFIG", "SET", "maxmemory", "0")
        await until_status(daemon, "/health/ready", 200, 10.0)


class AdminUnderOutageTests(TestCase):
    """The admin API while Redis is known to be down, and its listener's limits."""

    timeout = 120

    async def test_admin_api_fails_fast_while_redis_is_known_down(self) -> None:
        """Frozen Redis: once noticed, every call that needs Redis is a 503 at once."""
        redis = RedisServer.for_test(self)
        daemon = await start_daemon(self, redis_url=redis.url)
        await daemon.wait_for(lambda body: body.get("status") == "ok")
        token = daemon.admin_token
        redis.freeze()
        await task.deferLater(reactor, NOTICED_WITHIN, lambda: None)
        durations = []
        for _ in range(5):
            started = time.monotonic()
            code, body = await daemon.get("/tokens/", token=token)
            durations.append(time.monotonic() - started)
            self.assertEqual(code, 503, body)
            self.assertEqual(body["error"], "storage_unavailable")
        print(f"\n503s took {', '.join(f'{d:.3f}' for d in durations)} s (Redis timeout 5 s)")
        # waiting out the Redis timeout (5 s) on each call is what fail-fast avoids
        self.assertLess(max(durations), 2.5)

    async def test_admin_listener_has_a_head_deadline(self) -> None:
        """A client that never finishes its request head gets 408 and is disconnected."""
        daemon = await start_daemon(self, env={"OAUTHPROXY_REQUEST_HEADER_TIMEOUT": "1"})
        wire = await WireClient.connect(self, daemon.api_port)
        wire.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        answer = await wire.until_closed()
        self.assertTrue(answer.startswith(b"HTTP/1.1 408 "), answer[:100])
