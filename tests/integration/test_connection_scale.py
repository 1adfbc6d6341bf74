"""Connection scale (issue 13): 10,000 keep-alive connections on one gateway process.

A real twistd, a real backend, raw connections.  The behaviour is checked (every
connection accepted and answered, then answered again on the same connection once
all of them are open); how much memory they take and whether opening them stalls
others is measured by ``bench/idle_connections.py``, not asserted here.
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.support.backends import start_backend
from tests.support.daemon import free_port, start_daemon
from tests.support.wire import WireClient, get

CONNECTIONS = 10_000
#: connections being opened at once
WAVE = 500


class IdleConnectionScaleTests(TestCase):
    """Many idle keep-alive connections on one worker."""

    timeout = 600

    async def test_ten_thousand_keep_alive_connections_are_all_served(self) -> None:
        """10,000 connections, opened 500 at a time, each get their answer; with all of them
        open and idle, each one is answered again on the same connection."""
        backend = await start_backend(self, reactor)
        port = free_port()
        daemon = await start_daemon(
            self,
            args=["--http", f"tcp:{port}:interface=127.0.0.1"],
            env={"OAUTHPROXY_IDLE_TIMEOUT": "600"},
        )
        code, body = await daemon.post(
            "/proxy/targets/",
            {"hostname": "app.test", "target_url": backend.url, "enable_https": False},
            token=daemon.admin_token,
        )
        self.assertEqual(code, 201, body)
        await daemon.wait_for(lambda health: "http" in health.get("listeners", {}))
        probe = await WireClient.connect(self, port)
        for _ in range(100):  # the new proxy reaches the gateway through the event stream
            if (await probe.request(get("app.test", "/ready"))).status == 200:
                break
            await deferLater(reactor, 0.1, lambda: None)

        async def first(n: int) -> tuple[WireClient, int]:
            client = await WireClient.connect(self, port, timeout=60.0)
            return client, (await client.request(get("app.test", f"/first/{n}"))).status

        opened: list[tuple[WireClient, int]] = []
        for start in range(0, CONNECTIONS, WAVE):
            wave = [first(n) for n in range(start, min(start + WAVE, CONNECTIONS))]
            opened += await defer.gatherResults([defer.ensureDeferred(c) for c in wave])
        self.assertEqual([status for _, status in opened], [200] * CONNECTIONS)

        async def again(client: WireClient, n: int) -> int:
            return (await client.request(get("app.test", f"/again/{n}"))).status

        statuses: list[int] = []
        for start in range(0, CONNECTIONS, WAVE):
            wave = [again(c, start + i) for i, (c, _) in enumerate(opened[start : start + WAVE])]
            statuses += await defer.gatherResults([defer.ensureDeferred(c) for c in wave])
        self.assertEqual(statuses, [200] * CONNECTIONS)
        self.assertFalse(any(client.closed for client, _ in opened))
