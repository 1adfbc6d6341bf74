"""Scale-out: three daemons behind HAProxy on one Sentinel-managed Redis (issue 13).

The README's scale-out section, run for real: three ``twistd oauthproxy`` share a
Redis watched by three sentinels (``--redis sentinel://…``) and one secret key; the
first of them runs two workers.  HAProxy balances over their PROXY-protocol
listeners with health checks.  A change made through one daemon's API is live on
every daemon's data plane at once (the measured delay is printed), and restarting
all three, one after the other, under load loses no request.
"""

from __future__ import annotations

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from tests.integration.test_drain import Load
from tests.integration.test_workers import add_proxy, get
from tests.support.backends import start_backend
from tests.support.daemon import DaemonProcess, free_port, shared_key, start_daemon
from tests.support.haproxy import start_balancer
from tests.support.sentinel import start_sentinel_cluster

#: how long the test waits for a change to reach a daemon (the delay itself is printed)
PROPAGATION_BOUND = 10.0


class ScaleOutTests(TestCase):
    """N daemons, one Redis with failover, one balancer."""

    timeout = 300

    async def test_three_daemons_share_changes_and_restart_without_losing_requests(self) -> None:
        """A change on one daemon is live on all; a rolling restart under load loses nothing."""
        cluster = start_sentinel_cluster(self, replicas=1)
        env = shared_key()
        proxied = [free_port() for _ in range(3)]
        plain = [free_port() for _ in range(3)]

        async def start(n: int) -> DaemonProcess:
            args = [
                "--proxy-http",
                f"tcp:{proxied[n]}:interface=127.0.0.1",
                "--http",
                f"tcp:{plain[n]}:interface=127.0.0.1",
            ]
            if n == 0:
                args += ["--workers", "2"]
            daemon = await start_daemon(self, redis_url=cluster.url, args=args, env=env)
            await daemon.wait_for(lambda body: not body["workers"]["crash_looping"])
            code, ready = await daemon.get("/health/ready")
            self.assertEqual(code, 200, ready)
            return daemon

        daemons = [await start(n) for n in range(3)]
        admin = daemons[0].admin_token
        self.assertIsNotNone(admin, "\n".join(daemons[0].output[-10:]))
        self.assertIsNone(daemons[1].admin_token, "only the first daemon creates the token")
        backend = await start_backend(self, reactor)

        # a change made through daemon 1 is live on every daemon
        await add_proxy(daemons[1], backend.url, token=admin)
        delays = []
        for port in plain:
            started = reactor.seconds()
            while await get(port) != 200:
                self.assertLess(reactor.seconds() - started, PROPAGATION_BOUND)
                await task.deferLater(reactor, 0.01, lambda: None)
            delays.append(reactor.seconds() - started)
        print(f"\nproxy live on the three daemons after {max(delays) * 1000:.0f} ms at most")

        balancer = start_balancer(self, proxied)
        load = Load(f"http://127.0.0.1:{balancer.front_port}")
        await load.check_once()
        await load.during_restarts(self, daemons, start)
        print(f"rolling restart of 3 daemons: {load.ok} requests, failures: {load.failures[:5]}")
        self.assertEqual(load.failures, [])
        self.assertGreater(load.ok, 100)
