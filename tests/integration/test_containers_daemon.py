"""Docker services end to end: the real twistd managing a private dockerd's containers.

Every container runs the locally imported busybox image with host networking,
bound to 127.0.0.1; every request goes to loopback.  The daemons here use their
embedded Redis unless a test needs two daemons or a daemon that dies (then a
redis-server of the test's own).
"""

from __future__ import annotations

from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from oauthproxy.admin.credentials import hash_token
from tests.integration.containers_support import Api, exposed, start_docker_daemon, unique
from tests.support.daemon import free_port
from tests.support.dockerd import shared_dockerd

HELLO = b"hello from busybox\n"


async def serving(api: Api, port: int) -> bool:
    """Whether the service's httpd answers on ``port``."""
    try:
        return await api.http(port) == (200, HELLO)
    except Exception:
        return False


class ServiceTests(TestCase):
    """One daemon, one service: serve, proxy, route, logs, stats, lifecycle."""

    timeout = 180

    def setUp(self) -> None:
        """The shared dockerd with the test image."""
        self.dockerd = shared_dockerd()
        self.dockerd.busybox_image()

    async def created(self, api: Api, **more: Any) -> tuple[str, int, dict[str, Any]]:
        """A create-exposed service answering on a free port: (name, port, record)."""
        name, port = unique(self, self.dockerd), free_port()
        record = await api.ok("POST", "/services/", exposed(name, port, **more), 201)
        await api.eventually(lambda: serving(api, port), f"{name} answering on {port}")
        return name, port, record

    async def test_create_exposed_answers_on_its_port(self) -> None:
        """The container answers on 127.0.0.1:PORT within seconds; the API shows it running,
        and healthy once its healthcheck passed."""
        api = await start_docker_daemon(self, self.dockerd)
        name, port = unique(self, self.dockerd), free_port()
        check = {"test": ["wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}/"],
                 "interval": 1, "timeout": 1, "retries": 3}  # fmt: skip
        record = await api.ok("POST", "/services/", exposed(name, port, healthcheck=check), 201)
        await api.eventually(lambda: serving(api, port), f"{name} answering on {port}")
        self.assertEqual((record["state"], record["phase"]), ("running", "ready"))

        async def healthy() -> bool:
            return bool((await api.ok("GET", f"/services/{name}"))["health"] == "healthy")

        await api.eventually(healthy, "the healthcheck passing")
        self.assertEqual(record["ports"][0]["served_by"], "container")
        shown = await api.ok("GET", f"/services/{name}")
        self.assertEqual(shown["address"], f"127.0.0.1:{port}")
        with self.dockerd.client() as client:
            host = client.api.inspect_container(name)["HostConfig"]
        self.assertEqual(host["SecurityOpt"], ["no-new-privileges"])
        self.assertEqual(host["Memory"], 512 * 1024**2)

    async def test_a_service_proxy_and_a_service_route_reach_it(self) -> None:
        """``<name>.test`` serves it by hostname; a route with target service reaches it."""
        api = await start_docker_daemon(self, self.dockerd)
        name, _, _ = await self.created(api)
        hostname = f"{name}.test"
        await api.ok("POST", f"/services/{name}/proxy",
                     {"hostname": hostname, "enable_https": False}, 201)  # fmt: skip
        await api.eventually(
            lambda: _answers(api.gateway(hostname), HELLO), f"{hostname} through the gateway"
        )
        await api.ok("POST", "/proxy/targets/",
                     {"hostname": "front.test", "target_url": "http://127.0.0.1:9",
                      "enable_https": False}, 201)  # fmt: skip
        await api.ok("POST", "/routes/",
                     {"path_pattern": "/index.html", "match_type": "exact",
                      "target_type": "service", "target_value": name}, 201)  # fmt: skip
        await api.eventually(
            lambda: _answers(api.gateway("front.test", "/index.html"), HELLO),
            "the route to the service",
        )

    async def test_logs_follow_and_stats_are_real(self) -> None:
        """The container's own output, followed as it comes; real resource numbers."""
        api = await start_docker_daemon(self, self.dockerd)
        name, port = unique(self, self.dockerd), free_port()
        command = ["sh", "-c", f"echo started; exec httpd -f -v -p 127.0.0.1:{port} -h /www"]
        await api.ok("POST", "/services/", exposed(name, port, command=command), 201)
        await api.eventually(lambda: serving(api, port), "the service")
        logs = await api.ok("GET", f"/services/{name}/logs?lines=50&timestamps=true")
        self.assertTrue(logs["lines"][0].endswith(" started"), logs)
        received: list[bytes] = []
        response = await treq.get(
            api.daemon.api_url + f"/services/{name}/logs/follow?lines=0",
            headers={"Authorization": [f"Bearer {api.token}"]},
            pool=api.pool,
            unbuffered=True,
            timeout=10,
        )
        self.assertEqual(response.code, 200)
        collecting = treq.collect(response, received.append)
        collecting.addErrback(lambda f: None)

        async def followed() -> bool:
            # each request makes httpd print a line; the follow may start after the first
            await api.http(port, "/index.html")
            return b"response:200" in b"".join(received)

        await api.eventually(followed, "a followed line about a request")
        collecting.cancel()
        stats = await api.ok("GET", f"/services/{name}/stats")
        self.assertEqual(stats["memory_limit"], 512 * 1024**2)
        self.assertGreaterEqual(stats["pids"], 1)
        self.assertGreater(stats["memory_usage"], 0)

    async def test_stop_start_restart_and_update(self) -> None:
        """Each action changes the state; an update recreates it with the new environment."""
        api = await start_docker_daemon(self, self.dockerd)
        name, port = unique(self, self.dockerd), free_port()
        script = f"echo greeting=$GREETING; exec httpd -f -p 127.0.0.1:{port} -h /www"
        command = ["sh", "-c", script]
        body = exposed(name, port, command=command, environment={"GREETING": "one"})
        first = await api.ok("POST", "/services/", body, 201)
        stopped = await api.ok("POST", f"/services/{name}/stop")
        self.assertEqual((stopped["state"], stopped["desired_state"]), ("exited", "stopped"))
        self.assertFalse(await serving(api, port))
        started = await api.ok("POST", f"/services/{name}/start")
        self.assertEqual(started["state"], "running")
        await api.eventually(lambda: serving(api, port), "the service after start")
        restarted = await api.ok("POST", f"/services/{name}/restart")
        self.assertEqual(restarted["state"], "running")
        updated = await api.ok("PATCH", f"/services/{name}", {"environment": {"GREETING": "two"}})
        self.assertEqual(updated["generation"], 2)
        self.assertNotEqual(updated["container_id"], first["container_id"])
        logs = await api.ok("GET", f"/services/{name}/logs")
        self.assertEqual(logs["lines"], ["greeting=two"])
        await api.eventually(lambda: serving(api, port), "the updated service")
        with self.dockerd.client() as client:
            names = [c.name for c in client.containers.list(all=True,
                     filters={"label": f"oauthproxy.service={name}"})]  # fmt: skip
        self.assertEqual(names, [name], "the old container is gone")

    async def test_an_update_that_fails_brings_the_old_container_back(self) -> None:
        """A new container that exits at once: 422 saying so, the old one serves again."""
        api = await start_docker_daemon(self, self.dockerd)
        name, port, record = await self.created(api)
        code, error = await api.call("PATCH", f"/services/{name}", {"command": ["false"]})
        self.assertEqual(code, 422, error)
        self.assertIn("exited at once", error["detail"])
        await api.eventually(lambda: serving(api, port), "the old container serving again")
        shown = await api.ok("GET", f"/services/{name}")
        self.assertEqual((shown["container_id"], shown["generation"]), (record["container_id"], 1))

    async def test_guarded_ports_refuse_outsiders_and_want_their_token(self) -> None:
        """A port allowing only 10.0.0.0/8 closes on 127.0.0.1; a token port is 401 without it."""
        api = await start_docker_daemon(self, self.dockerd)
        name, port, _ = await self.created(api)
        outside, tokened = free_port(), free_port()
        await api.ok("POST", f"/services/{name}/ports",
                     {"name": "inside", "host": outside, "container": port,
                      "allowed_networks": ["10.0.0.0/8"]}, 201)  # fmt: skip
        token = "the-port-token-0123456789"
        await api.ok("POST", f"/services/{name}/ports",
                     {"name": "api", "host": tokened, "container": port,
                      "source_token": token}, 201)  # fmt: skip

        async def refused() -> bool:
            try:
                await api.http(outside)
            except Exception:
                return True  # closed before any answer
            return False

        await api.eventually(refused, "the outsider being refused")
        await api.eventually(lambda: _status(api.http(tokened), 401), "401 without the port token")
        code, body = await api.http(tokened, "/", {"X-Port-Token": token})
        self.assertEqual((code, body), (200, HELLO))
        stored = await api.ok("GET", f"/services/{name}/ports")
        self.assertNotIn(hash_token(token), str(stored))

        async def logged() -> Any:
            found = await api.ok("GET", "/logs/search?limit=50")
            refused = [r for r in found["items"] if r["status"] in (401, 403)]
            # the HTTP refusal's record is made with its batch (at most 0.25 s later)
            return refused if any(r["status"] == 401 for r in refused) else None

        records = await api.eventually(logged, "the refusals in the request log")
        self.assertIn(401, {r["status"] for r in records})

    async def test_sigterm_lets_guarded_port_requests_finish(self) -> None:
        """The drain covers guarded ports: a request in flight on a token port (HTTP,
        through the gateway) and one on a network-limited port (a TCP relay) are answered.

        The container answers ``/cgi-bin/slow`` after 2 s; SIGTERM comes while both wait.
        """
        api = await start_docker_daemon(self, self.dockerd)
        name, port = unique(self, self.dockerd), free_port()
        # a CGI answering after 2 s, its head in bare LFs as CGI scripts write it
        # (busybox httpd passes that on: the gateway reads it, RFC 9112 section 2.2)
        cgi = r"printf 'Content-Type: text/plain\n\nslow\n'"
        script = (
            f"mkdir -p /www/cgi-bin && printf '%s\\n' '#!/bin/sh' 'sleep 2' \"{cgi}\" "
            f"> /www/cgi-bin/slow && chmod +x /www/cgi-bin/slow && "
            f"exec httpd -f -p 127.0.0.1:{port} -h /www"
        )
        await api.ok("POST", "/services/", exposed(name, port, command=["sh", "-c", script]), 201)
        await api.eventually(lambda: serving(api, port), f"{name} answering on {port}")
        tokened, relayed, token = free_port(), free_port(), "the-port-token-0123456789"
        await api.ok("POST", f"/services/{name}/ports",
                     {"name": "api", "host": tokened, "container": port,
                      "source_token": token}, 201)  # fmt: skip
        await api.ok("POST", f"/services/{name}/ports",
                     {"name": "tcp", "host": relayed, "container": port,
                      "allowed_networks": ["127.0.0.0/8"]}, 201)  # fmt: skip
        await api.eventually(lambda: _status(api.http(tokened), 401), "the token port open")
        await api.eventually(lambda: serving(api, relayed), "the relayed port open")
        slow = Deferred.fromCoroutine(api.http(tokened, "/cgi-bin/slow", {"X-Port-Token": token}))
        relayed_slow = Deferred.fromCoroutine(api.http(relayed, "/cgi-bin/slow"))
        await deferLater(reactor, 0.5, lambda: None)
        exit_code = await api.daemon.stop()
        self.assertEqual(await slow, (200, b"slow\n"))
        self.assertEqual(await relayed_slow, (200, b"slow\n"))
        self.assertTrue(api.daemon.exited_cleanly, exit_code)

    async def test_refusals_are_clear(self) -> None:
        """Image not allowed, missing image, host mount, privileged, restricted or taken port,
        duplicate name, unknown service: each a 4xx naming the problem, nothing left."""
        api = await start_docker_daemon(self, self.dockerd)
        name, port, _ = await self.created(api)
        other = unique(self, self.dockerd)
        cases = [
            ({**exposed(other, free_port()), "image": "nginx:alpine"}, 422, "/image"),
            ({**exposed(other, free_port()), "image": "local/missing:1"}, 422, "/image"),
            ({**exposed(other, free_port()),
              "volumes": [{"source": "/etc", "target": "/x"}]}, 422, "/volumes/0/source"),
            ({**exposed(other, free_port()), "privileged": True}, 422, "/privileged"),
            (exposed(other, 22), 422, "/ports/0/host"),
            (exposed(other, port), 409, "/ports/0/host"),
            (exposed(name, free_port()), 409, "/name"),
        ]  # fmt: skip
        for body, status, field in cases:
            code, error = await api.call("POST", "/services/", body)
            self.assertEqual((code, error["field"]), (status, field), error)
            self.assertTrue(error["detail"])
        code, error = await api.call("GET", "/services/nosuchservice")
        self.assertEqual(code, 404, error)
        with self.dockerd.client() as client:
            self.assertEqual(
                client.containers.list(all=True, filters={"label": f"oauthproxy.service={other}"}),
                [],
            )

    async def test_an_orphan_container_is_found_and_removed(self) -> None:
        """A container with this deployment's label and no record is reported, then removed."""
        api = await start_docker_daemon(
            self, self.dockerd, OAUTHPROXY_DOCKER_RECONCILE_INTERVAL="600"
        )
        name, _, _ = await self.created(api)
        with self.dockerd.client() as client:
            labels = client.api.inspect_container(name)["Config"]["Labels"]
            orphan = unique(self, self.dockerd, "orphan")
            client.containers.create(
                "local/busybox:1", ["sleep", "300"], name=orphan,
                labels={**labels, "oauthproxy.service": orphan},
            )  # fmt: skip
        report = await api.ok("GET", "/services/cleanup")
        self.assertEqual([o["name"] for o in report["orphans"]], [orphan])
        fixed = await api.ok("POST", "/services/cleanup")
        self.assertIn(f"{orphan}: removed orphan container {orphan}", fixed["done"])
        with self.dockerd.client() as client:
            self.assertEqual(client.containers.list(all=True, filters={"name": orphan}), [])
            self.assertEqual(len(client.containers.list(filters={"name": name})), 1)


async def _answers(request: Any, body: bytes) -> bool:
    """Whether ``request`` answers 200 with ``body``."""
    return await request == (200, body)


async def _status(request: Any, status: int) -> bool:
    """Whether ``request`` answers ``status``."""
    code, _ = await request
    return bool(code == status)
