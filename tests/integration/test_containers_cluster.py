"""Docker services across daemons and failures: shared Redis, Docker stopped, kill -9.

Daemons that share a redis-server (one of the test's own) are one deployment: they
never hand out one port twice and only one of them reconciles.  A stopped dockerd
makes service calls answer 503 while the gateway keeps serving; a daemon killed
with SIGKILL halfway through a create leaves a record the next daemon's reconciler
undoes, container included.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from tests.cli.test_proxy_route_service import Ctl
from tests.integration.containers_support import Api, exposed, start_docker_daemon, unique
from tests.support.backends import start_backend
from tests.support.daemon import free_port, shared_key
from tests.support.dockerd import Dockerd, shared_dockerd
from tests.support.redis import RedisServer


def containers_of(dockerd: Dockerd, name: str) -> list[str]:
    """Names of the containers (any state) labelled as service ``name``."""
    with dockerd.client() as client:
        found = client.containers.list(all=True, filters={"label": f"oauthproxy.service={name}"})
        return [c.name for c in found]


class TwoDaemonTests(TestCase):
    """Two daemons on one Redis and one Docker."""

    timeout = 240

    async def test_two_daemons_never_allocate_the_same_port(self) -> None:
        """Services created at once on both daemons with automatic ports all get distinct ones."""
        dockerd = shared_dockerd()
        dockerd.busybox_image()
        redis = RedisServer.for_test(self)
        base = free_port()
        # one deployment: one secret key (a daemon with another one refuses to start)
        ranges = {"OAUTHPROXY_PORT_RANGES": f"{base}-{base + 40}", **shared_key()}
        first = await start_docker_daemon(self, dockerd, redis.url, **ranges)
        second = await start_docker_daemon(self, dockerd, redis.url, first.token, **ranges)
        calls = []
        for _ in range(6):
            for api in (first, second):
                # a guarded port: only its reservation matters here (the container sleeps)
                body = {
                    "name": unique(self, dockerd),
                    "image": "local/busybox:1",
                    "command": ["sleep", "300"],
                    "network_mode": "host",
                    "start": False,
                    "ports": [
                        {"name": "p", "host": 0, "container": 1, "allowed_networks": ["10.0.0.0/8"]}
                    ],
                }
                calls.append(defer.Deferred.fromCoroutine(api.call("POST", "/services/", body)))
        answers = await defer.gatherResults(calls)
        self.assertEqual([code for code, _ in answers], [201] * len(calls), answers)
        ports = [answer["ports"][0]["host"] for _, answer in answers]
        self.assertEqual(len(set(ports)), len(ports), ports)
        allocations = await first.ok("GET", "/ports/?limit=500")
        self.assertEqual(sorted(a["port"] for a in allocations["items"]), sorted(ports))
        holders = [
            line for api in (first, second) for line in api.daemon.output
            if "now reconciles Docker services" in line
        ]  # fmt: skip
        self.assertEqual(len(holders), 1, "exactly one daemon reconciles")


class DockerStoppedTests(TestCase):
    """A dockerd of this test's own, stopped while the daemon runs."""

    timeout = 180

    async def test_docker_stopped_is_503_and_the_gateway_keeps_serving(self) -> None:
        """Service calls say Docker is unreachable; proxies still serve; Docker back, it works."""
        dockerd = Dockerd.for_test(self)
        dockerd.busybox_image()
        api = await start_docker_daemon(self, dockerd)
        name, port = unique(self, dockerd), free_port()
        await api.ok("POST", "/services/", exposed(name, port), 201)
        backend = await start_backend(self, reactor)
        await api.ok("POST", "/proxy/targets/",
                     {"hostname": "kept.test", "target_url": backend.url,
                      "enable_https": False}, 201)  # fmt: skip
        await api.eventually(lambda: _status(api.gateway("kept.test"), 200), "the proxy")
        dockerd.stop()
        for method, path in (
            ("GET", "/services/"),
            ("GET", f"/services/{name}"),
            ("POST", f"/services/{name}/restart"),
            ("GET", f"/services/{name}/logs"),
        ):
            code, error = await api.call(method, path)
            self.assertEqual(code, 503, error)
            self.assertEqual(error["error"], "unavailable")
            self.assertIn(dockerd.socket, error["detail"])
            self.assertEqual(error["detail"].count(". "), 0, "one sentence")
        self.assertEqual(await api.gateway("kept.test"), (200, await _body(api, "kept.test")))
        line = await Ctl(self, api.daemon.api_url, api.token).fails("service", "list")
        self.assertIn(f"Docker is not reachable at unix://{dockerd.socket}", line)
        code, _ = await api.call("GET", "/proxy/targets/")
        self.assertEqual(code, 200)
        dockerd.start()

        async def back() -> bool:
            code, body = await api.call("GET", f"/services/{name}")
            return code == 200 and body["state"] == "running"

        await api.eventually(back, "the service running again after Docker restarted", 30)


class KilledDaemonTests(TestCase):
    """kill -9 in the middle of a create."""

    timeout = 180

    async def test_the_reconciler_undoes_a_create_interrupted_by_kill_9(self) -> None:
        """The record said creating and the container existed; after the next daemon's
        reconciler neither is left, and the port is free again."""
        dockerd = shared_dockerd()
        dockerd.busybox_image()
        redis = RedisServer.for_test(self)
        slow = {"OAUTHPROXY_DOCKER_START_GRACE": "30"}
        key = shared_key()
        first = await start_docker_daemon(self, dockerd, redis.url, **slow, **key)
        name, port = unique(self, dockerd), free_port()
        creating = defer.Deferred.fromCoroutine(
            first.call("POST", "/services/", exposed(name, port))
        )
        creating.addErrback(lambda failure: None)  # the connection dies with the daemon

        async def half_made() -> bool:
            code, body = await first.call("GET", f"/services/{name}")
            return (
                code == 200 and body["phase"] == "creating" and bool(containers_of(dockerd, name))
            )

        await first.eventually(half_made, "a half-made service")
        first.daemon.transport.signalProcess("KILL")
        await first.daemon.capture.ended
        self.assertEqual(containers_of(dockerd, name), [name], "the container was made")
        second = await start_docker_daemon(self, dockerd, redis.url, first.token, **key)

        async def undone() -> bool:
            code, _ = await second.call("GET", f"/services/{name}")
            return code == 404 and not containers_of(dockerd, name)

        await second.eventually(undone, "the reconciler undoing the create", 30)
        check = await second.ok("GET", f"/services/ports/check?port={port}")
        self.assertNotIn("reserved", check["reason"] or "")


async def _status(request: Any, status: int) -> bool:
    """Whether ``request`` answers ``status``."""
    code, _ = await request
    return bool(code == status)


async def _body(api: Api, host: str) -> bytes:
    """What the gateway answers for ``host`` now."""
    await task.deferLater(reactor, 0, lambda: None)
    _, body = await api.gateway(host)
    return body
