"""Anonymous traffic cannot fill Redis (issue 10, defect 2), through the real daemon.

Every request used to store about 1 KB of request log for 24 hours, 404s for unknown
hosts included, and the embedded Redis had no memory limit; once Redis refused writes
the admin API answered 503 for up to a day.  Now unknown-host (and other anonymous)
noise beyond a small budget per minute is only counted, the log is capped by count,
and the embedded Redis has a ``maxmemory`` whose ``volatile-lru`` policy evicts only
keys with an expiry, so configuration writes keep working when the memory is full.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from tests.support.backends import start_backend
from tests.support.daemon import DaemonProcess, free_port, start_daemon
from tests.support.redis import RedisServer, unix_command
from tests.support.wire import WireClient, get


async def flood(test: TestCase, port: int, hosts: list[str], connections: int = 8) -> int:
    """One keep-alive request per host in ``hosts`` over ``connections`` connections."""
    statuses: list[int] = []

    async def worker(share: list[str]) -> None:
        wire = await WireClient.connect(test, port)
        for host in share:
            statuses.append((await wire.request(get(host, "/wp-login.php"))).status)
        wire.abort()

    shares = [hosts[n::connections] for n in range(connections)]
    await defer.gatherResults([defer.Deferred.fromCoroutine(worker(s)) for s in shares])
    return len(statuses)


def redis_keys(redis: RedisServer, pattern: str) -> list[str]:
    """Every key matching ``pattern`` (SCAN, test sizes only)."""
    found: list[str] = []
    cursor = "0"
    while True:
        cursor, keys = redis.command("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
        found += keys
        if cursor == "0":
            return found


def stored_records(redis: RedisServer) -> int:
    """Request-log records kept in Redis: the rows of every segment past its trimmed ones."""
    total = 0
    for key in redis_keys(redis, "op:rlog:seg:*"):
        rows, trimmed = redis.command("HMGET", key, "r", "s")
        total += len(json.loads(rows)) - int(trimmed)
    return total


async def until(predicate: Any, timeout: float = 10.0) -> Any:
    """Poll the async ``predicate`` until it returns something true."""
    for _ in range(int(timeout / 0.1)):
        value = await predicate()
        if value:
            return value
        await task.deferLater(reactor, 0.1, lambda: None)
    raise AssertionError("condition not met in time")


class RequestLogBoundsTests(TestCase):
    """The request log under a flood."""

    timeout = 180

    async def start(self, **env: str) -> tuple[DaemonProcess, RedisServer, int]:
        """A daemon with an HTTP listener on a redis-server the test can look into."""
        redis = RedisServer.for_test(self)
        port = free_port()
        daemon = await start_daemon(
            self, redis_url=redis.url, args=["--http", f"tcp:{port}:interface=127.0.0.1"], env=env
        )
        await daemon.wait_for(lambda body: "http" in body.get("listeners", {}))
        return daemon, redis, port

    async def test_unknown_host_flood_is_counted_not_stored(self) -> None:
        """2,000 requests for random hosts: at most the budget becomes records; every one
        is counted in ``/logs/noise``."""
        daemon, redis, port = await self.start()
        hosts = [f"{uuid.uuid4().hex[:12]}.scan.test" for _ in range(2000)]
        self.assertEqual(await flood(self, port, hosts), 2000)
        await task.deferLater(reactor, 2.5, lambda: None)  # the writer flushes every second
        records = stored_records(redis)
        print(f"\n2000 unknown-host requests: {records} records")
        # the default budget is 10 records a minute; the flood spans at most two minutes
        self.assertLessEqual(records, 20)
        self.assertLessEqual(len(redis_keys(redis, "op:rlog:idx:host:*")), 20)
        token = daemon.admin_token

        async def counted() -> Any:
            code, body = await daemon.get("/logs/noise?hours=1", token=token)
            self.assertEqual(code, 200, body)
            return body if body["total"] >= 2000 else None

        noise = await until(counted)
        self.assertEqual(noise["total"], 2000)
        self.assertEqual({item["reason"] for item in noise["items"]}, {"unknown_host"})

    async def test_request_log_is_capped_by_count(self) -> None:
        """With ``OAUTHPROXY_REQUEST_LOG_MAX_RECORDS=100``, 400 requests leave 100 records,
        the newest, still found by every query."""
        daemon, redis, port = await self.start(OAUTHPROXY_REQUEST_LOG_MAX_RECORDS="100")
        backend = await start_backend(self, reactor)
        code, body = await daemon.post(
            "/proxy/targets/",
            {"hostname": "app.test", "target_url": backend.url, "enable_https": False},
            token=daemon.admin_token,
        )
        self.assertEqual(code, 201, body)
        wire = await WireClient.connect(self, port)
        for n in range(400):
            self.assertEqual((await wire.request(get("app.test", f"/n/{n}"))).status, 200)
        token = daemon.admin_token

        async def logged_last() -> Any:
            _, body = await daemon.get("/logs/host/app.test?limit=1000", token=token)
            return body if body["items"] and body["items"][0]["path"] == "/n/399" else None

        found = await until(logged_last)
        self.assertEqual(len(found["items"]), 100)
        self.assertEqual(found["items"][-1]["path"], "/n/300")
        self.assertEqual(stored_records(redis), 100)
        code, counted = await daemon.get("/logs/stats?hours=1", token=token)
        self.assertEqual((code, counted["by_status"]["2xx"]), (200, 100), counted)


class EmbeddedRedisMemoryTests(TestCase):
    """The embedded Redis: bounded memory that never locks out configuration writes."""

    timeout = 120

    async def test_full_memory_evicts_request_log_not_configuration(self) -> None:
        """``maxmemory`` with ``volatile-lru``: with the memory full of request log, a token
        and a proxy can still be created, and the daemon stays ready."""
        daemon = await start_daemon(self, env={"OAUTHPROXY_REDIS_MAXMEMORY": "8mb"})
        socket_path = os.path.join(daemon.data_dir, "redis.sock")
        maxmemory = unix_command(socket_path, "CONFIG", "GET", "maxmemory")
        policy = unix_command(socket_path, "CONFIG", "GET", "maxmemory-policy")
        self.assertEqual((maxmemory[1], policy[1]), (str(8 << 20), "volatile-lru"))
        filler = "x" * 4096
        for n in range(4000):  # 16 MB of request-log-like keys (they expire): twice the limit
            unix_command(socket_path, "SET", f"op:rlog:seg:fill-{n}", filler, "EX", 86400)
        info = unix_command(socket_path, "INFO", "stats")
        self.assertNotIn("evicted_keys:0\r", info)
        token = daemon.admin_token
        code, body = await daemon.post(
            "/tokens/", {"name": "after-full", "owner_email": "ops@example.com"}, token=token
        )
        self.assertEqual(code, 201, body)
        code, body = await daemon.post(
            "/proxy/targets/", {"hostname": "full.test", "target_url": "http://x.test"}, token=token
        )
        self.assertEqual(code, 201, body)
        code, ready = await daemon.get("/health/ready")
        self.assertEqual(code, 200, ready)
