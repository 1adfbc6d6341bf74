"""Redis behind Sentinel: the real ``twistd oauthproxy`` through a failover (issue 13).

A real master, replicas and three ``redis-server --sentinel`` processes on loopback
(:mod:`tests.support.sentinel`); the daemon gets ``--redis sentinel://…/mymaster``.
The master is killed while the gateway is under load and the admin API takes writes:
the gateway keeps serving from its snapshot throughout, the admin API answers 503
only until a new master (with a replica) takes writes, and every write it confirmed
is still there, and live, afterwards.  A confirmed write has reached a replica
(Redis ``WAIT``): with the replica frozen the API refuses to confirm.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from tests.integration.test_workers import add_proxy, get
from tests.support.backends import start_backend
from tests.support.daemon import DaemonProcess, free_port, shared_key, start_daemon
from tests.support.sentinel import SentinelCluster, start_sentinel_cluster


async def sentinel_daemon(
    test: TestCase, cluster: SentinelCluster, args: tuple[str, ...] = (), **env: str
) -> DaemonProcess:
    """A daemon on ``cluster`` once it is ready."""
    daemon = await start_daemon(
        test, redis_url=cluster.url, args=list(args), env={**shared_key(), **env}
    )
    await daemon.wait_for(lambda body: body["status"] == "ok")
    return daemon


class GatewayLoad:
    """New-connection requests through the gateway in a loop, every answer counted."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ok = 0
        self.failures: list[str] = []
        self.stopping = False

    async def run(self) -> None:
        """Request until told to stop."""
        while not self.stopping:
            try:
                code = await get(self.port)
            except Exception as e:  # a refused or dropped connection is a failure too
                self.failures.append(repr(e))
                continue
            if code == 200:
                self.ok += 1
            else:
                self.failures.append(str(code))


class SentinelFailoverTests(TestCase):
    """A daemon on a Sentinel-managed Redis when the master dies."""

    timeout = 240

    async def test_failover_under_load_loses_no_confirmed_write(self) -> None:
        """Kill the master under load: gateway unaffected, API 503 only during the failover,
        every confirmed token present and usable after it, new changes live at once."""
        cluster = start_sentinel_cluster(self, replicas=2)
        http = free_port()
        daemon = await sentinel_daemon(self, cluster, ("--http", f"tcp:{http}:interface=127.0.0.1"))
        admin = daemon.admin_token
        assert admin is not None
        backend = await start_backend(self, reactor)
        await add_proxy(daemon, backend.url)

        load = GatewayLoad(http)
        loads = [defer.Deferred.fromCoroutine(load.run()) for _ in range(4)]
        answers: list[tuple[str, int, float]] = []
        confirmed: dict[str, str] = {}

        async def write(n: int) -> None:
            name = f"t{n}"
            code, body = await daemon.post(
                "/tokens/", {"name": name, "owner_email": "ops@example.com"}, token=admin
            )
            answers.append((name, code, reactor.seconds()))
            if code == 201:
                confirmed[name] = body["token"]

        n = 0
        for _ in range(10):
            await write(n)
            n += 1
        old = cluster.master_port()
        killed_at = reactor.seconds()
        cluster.server_on(old).kill()
        new = await cluster.wait_for_failover(old)
        after = 0
        deadline = reactor.seconds() + 90
        while after < 10 and reactor.seconds() < deadline:
            await write(n)
            n += 1
            if answers[-1][1] == 201:
                after += 1
            else:
                await task.deferLater(reactor, 0.2, lambda: None)
        load.stopping = True
        await defer.gatherResults(loads)

        self.assertEqual(after, 10, f"the API never took writes again: {answers[-5:]}")
        self.assertEqual(load.failures, [], f"{len(load.failures)} gateway requests failed")
        self.assertGreater(load.ok, 50)
        codes = {code for _, code, _ in answers}
        self.assertLessEqual(codes, {201, 503}, answers)
        refused = [at for _, code, at in answers if code == 503]
        first_after = min(at for _, code, at in answers if code == 201 and at > killed_at)
        self.assertTrue(all(killed_at <= at < first_after for at in refused), answers)
        resumed = any("resumes the event stream" in line for line in daemon.output)
        print(
            f"\nfailover: {len(refused)} writes answered 503, "
            f"{first_after - killed_at:.1f} s from the kill to the first confirmed write; "
            f"the mirror {'resumed its tail on' if resumed else 'reloaded from'} the new master"
        )
        # nothing confirmed was lost, and the daemon's snapshot has all of it
        for name, value in confirmed.items():
            code, _ = await daemon.get(f"/tokens/{name}", token=value)
            self.assertEqual(code, 200, f"confirmed token {name} is gone after the failover")
        stored = set(new.command("HKEYS", "op:records:token"))
        self.assertLessEqual(set(confirmed), stored, "a confirmed token is not on the new master")
        # the event stream goes on against the new master
        await add_proxy(daemon, backend.url, host="after.test")
        self.assertEqual(await get(http, host="after.test"), 200)
        _, health = await daemon.health()
        self.assertEqual((health["redis"], health["events_connected"]), ("connected", True))

    async def test_a_write_no_replica_confirmed_is_not_acknowledged(self) -> None:
        """With the only replica frozen the API answers 503 naming the replicas; then 201."""
        cluster = start_sentinel_cluster(self, replicas=1)
        daemon = await sentinel_daemon(self, cluster, OAUTHPROXY_REDIS_TIMEOUT="2")
        admin = daemon.admin_token
        cluster.replicas[0].freeze()
        try:
            code, body = await daemon.post(
                "/tokens/", {"name": "unconfirmed", "owner_email": "o@example.com"}, token=admin
            )
        finally:
            cluster.replicas[0].thaw()
        self.assertEqual(code, 503, body)
        self.assertIn("replica", body["detail"])
        code, body = await self._post_until_confirmed(daemon, admin)
        self.assertEqual(code, 201, body)

    async def _post_until_confirmed(self, daemon: DaemonProcess, admin: Any) -> tuple[int, Any]:
        """POST a token until the thawed replica confirms (it catches up first)."""
        for n in range(50):
            code, body = await daemon.post(
                "/tokens/", {"name": f"confirmed{n}", "owner_email": "o@example.com"}, token=admin
            )
            if code != 503:
                return code, body
            await task.deferLater(reactor, 0.2, lambda: None)
        return code, body
