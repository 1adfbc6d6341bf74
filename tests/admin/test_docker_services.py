"""``/services/``, ``/services/{name}/ports`` and ``/ports/`` on the in-memory twins.

The admin API of the harness (StubTreq, memory storage) with the Docker resources
mounted over a :class:`~oauthproxy.testing.MemoryRuntime`.  Every answer is also
checked against the OpenAPI document by the harness.
"""

from __future__ import annotations

from typing import Any

from attrs import evolve
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.admin.docker_containers import DockerContainerResource
from oauthproxy.admin.docker_services import DockerServiceResource, DockerWiring
from oauthproxy.admin.service_ports import ServicePortResource
from oauthproxy.containers.allocator import PortAllocator
from oauthproxy.containers.lifecycle import ServiceLifecycle
from oauthproxy.containers.policy import PortPolicy
from oauthproxy.containers.reconciler import PassReport, findings
from oauthproxy.containers.rules import DockerRules
from oauthproxy.model import AuthRule, ExternalService
from oauthproxy.testing import MemoryRuntime
from tests.admin.harness import Harness

IMAGE = "local/busybox:1"
EXPOSED = {
    "name": "web",
    "image": IMAGE,
    "internal_port": 8080,
    "ports": [{"host": 14000, "container": 8080}],
}


class DockerHarness(Harness):
    """The admin harness with Docker services over the twins."""

    def __init__(self, test: SynchronousTestCase, **rules: Any) -> None:
        super().__init__(test)
        self.runtime = MemoryRuntime(self.clock, images={IMAGE})
        self.busy: set[int] = set()
        settings: dict[str, Any] = {
            "images": ("local/*",),
            "ports": PortPolicy(ranges=((14000, 14010),)),
            **rules,
        }
        self.rules = DockerRules(**settings)
        allocator = PortAllocator(
            self.storage.docker_services,
            self.rules.ports,
            lambda bind, port, protocol: "in use" if port in self.busy else None,
        )
        self.lifecycle = ServiceLifecycle(
            self.storage, self.runtime, self.rules, self.clock, allocator, start_grace=0
        )
        docker = DockerWiring(self.lifecycle, self.cleanup, base_domain="example.test")
        context = self.api.context
        self.treq = StubTreq(
            self.api.resource(
                ServicePortResource(context, self.storage, self.clock, docker),
                DockerContainerResource(context, self.storage, self.clock, docker),
                DockerServiceResource(context, self.storage, self.clock, docker),
            )
        )
        self._document = None

    def cleanup(self, fix: bool) -> Deferred[PassReport]:
        """A report of findings (the reconciler's own passes are tested elsewhere)."""

        async def report() -> PassReport:
            containers = await self.runtime.containers(await self.lifecycle.deployment())
            return PassReport(findings(await self.storage.docker_services.list(), containers))

        return Deferred.fromCoroutine(report())


class ServiceEndpointTests(SynchronousTestCase):
    """Create, read, change, run and delete services through the API."""

    def setUp(self) -> None:
        """A harness with Docker services."""
        self.h = DockerHarness(self)

    def create(self, body: dict[str, Any] = EXPOSED, token: str | None = None) -> Any:
        """POST /services/ as the admin (or ``token``); the answer."""
        return self.h.call("POST", "/services/", token=token or self.h.admin_token, body=body)

    def test_create_answers_201_with_the_running_container(self) -> None:
        """201, Location, state running, the port served by Docker, the limits' defaults."""
        answer = self.create()
        self.assertEqual(answer.status, 201, answer.body)
        self.assertEqual(answer.header(b"location"), b"/services/web")
        body = answer.json()
        self.assertEqual(
            (body["state"], body["phase"], body["owner"]), ("running", "ready", "admin")
        )
        self.assertEqual(body["memory_limit"], "512m")
        self.assertEqual(body["ports"][0]["served_by"], "docker")
        self.assertEqual(body["address"], f"{body['address'].split(':')[0]}:8080")
        listed = self.h.call("GET", "/services/", token=self.h.admin_token).json()
        self.assertEqual([s["name"] for s in listed["items"]], ["web"])
        self.assertEqual(listed["items"][0]["state"], "running")

    def test_refusals_name_the_field(self) -> None:
        """Image not allowed, host mount, privileged, restricted port, bad name: 422."""
        cases = [
            ({**EXPOSED, "image": "nginx:alpine"}, "/image"),
            ({**EXPOSED, "volumes": [{"source": "/etc", "target": "/x"}]}, "/volumes/0/source"),
            ({**EXPOSED, "privileged": True}, "/privileged"),
            ({**EXPOSED, "ports": [{"host": 22, "container": 22}]}, "/ports/0/host"),
            ({**EXPOSED, "name": "Web"}, "/name"),
            ({**EXPOSED, "network_mode": "host"}, "/network_mode"),
            ({**EXPOSED, "memory_limit": "lots"}, "/memory_limit"),
            ({"name": "x"}, "/image"),
        ]
        for body, field in cases:
            error = self.h.assert_error(self.create(body), 422, "invalid_input", field)
            self.assertTrue(error["detail"])
        self.assertEqual(self.h.runtime.by_id, {})
        privileged = self.create({**EXPOSED, "privileged": True}).json()["detail"]
        self.assertIn("never", privileged)

    def test_duplicate_name_and_taken_port_are_409(self) -> None:
        """The same name twice, or a port another service holds."""
        self.create()
        self.h.assert_error(self.create(), 409, "conflict", "/name")
        other = {**EXPOSED, "name": "other"}
        error = self.h.assert_error(self.create(other), 409, "conflict", "/ports/0/host")
        self.assertIn("web", error["detail"])
        self.h.storage.services.create(ExternalService("api", "http://x"))
        self.h.assert_error(self.create({**EXPOSED, "name": "api", "ports": []}), 409, "conflict")

    def test_unknown_service_is_404(self) -> None:
        """show, start, logs and delete of a service that does not exist."""
        for method, path in (
            ("GET", "/services/nope"),
            ("POST", "/services/nope/start"),
            ("GET", "/services/nope/logs"),
            ("DELETE", "/services/nope"),
        ):
            self.h.assert_error(
                self.h.call(method, path, token=self.h.admin_token), 404, "not_found"
            )

    def test_only_the_admin_creates_unless_a_rule_allows(self) -> None:
        """Another token: 403; with a bearer rule for writes it may, and owns what it made."""
        alice = self.h.add_token("alice")
        self.h.assert_error(self.create(token=alice), 403, "forbidden")
        rule = AuthRule("svc", "/services/*", ("POST", "PUT", "PATCH", "DELETE"), "bearer")
        self.h.snapshots.current = evolve(self.h.snapshots.current, auth_rules={"svc": rule})
        answer = self.create(token=alice)
        self.assertEqual(answer.status, 201, answer.body)
        self.assertEqual(answer.json()["owner"], "alice")
        bob = self.h.add_token("bob")
        self.h.snapshots.current = evolve(self.h.snapshots.current, auth_rules={"svc": rule})
        self.h.assert_error(self.h.call("GET", "/services/web", token=bob), 404, "not_found")
        self.assertEqual(self.h.call("GET", "/services/", token=bob).json()["total"], 0)

    def test_docker_away_is_503_with_one_sentence(self) -> None:
        """Every service call says Docker cannot be reached; nothing is written."""
        self.create()
        self.h.runtime.available = False
        for method, path, body in (
            ("POST", "/services/", {**EXPOSED, "name": "two", "ports": []}),
            ("GET", "/services/", None),
            ("GET", "/services/web", None),
            ("POST", "/services/web/stop", None),
        ):
            error = self.h.assert_error(
                self.h.call(method, path, token=self.h.admin_token, body=body), 503, "unavailable"
            )
            self.assertIn("DOCKER_HOST", error["detail"])
        self.assertIsNone(self.successResultOf(self.h.storage.docker_services.get("two")))

    def test_stop_start_restart(self) -> None:
        """The state follows each action."""
        self.create()
        token = self.h.admin_token
        stopped = self.h.call("POST", "/services/web/stop", token=token).json()
        self.assertEqual((stopped["state"], stopped["desired_state"]), ("exited", "stopped"))
        started = self.h.call("POST", "/services/web/start", token=token).json()
        self.assertEqual((started["state"], started["desired_state"]), ("running", "running"))
        restarted = self.h.call("POST", "/services/web/restart", token=token)
        self.assertEqual(restarted.status, 200)

    def test_update_recreates_with_the_new_environment(self) -> None:
        """PATCH environment: generation 2, a new container with it."""
        first = self.create().json()
        answer = self.h.call(
            "PATCH", "/services/web", token=self.h.admin_token, body={"environment": {"A": "1"}}
        )
        self.assertEqual(answer.status, 200, answer.body)
        body = answer.json()
        self.assertEqual((body["generation"], body["environment"]), (2, {"A": "1"}))
        self.assertNotEqual(body["container_id"], first["container_id"])

    def test_logs_follow_and_stats(self) -> None:
        """The last lines; a follow streaming new lines until the container goes; stats."""
        body = self.create().json()
        container = body["container_id"]
        for line in ("one", "two", "three"):
            self.h.runtime.emit(container, line)
        token = self.h.admin_token
        logs = self.h.call("GET", "/services/web/logs?lines=2", token=token).json()
        self.assertEqual(logs, {"name": "web", "lines": ["two", "three"]})
        d = self.h.treq.request(  # type: ignore[attr-defined]
            "GET",
            "http://api.test/services/web/logs/follow?lines=1",
            headers={"Authorization": [f"Bearer {token}"]},
        )
        self.h.treq.flush()
        response = self.successResultOf(d)
        self.assertEqual(
            response.headers.getRawHeaders(b"content-type"), [b"text/plain; charset=utf-8"]
        )
        self.h.runtime.emit(container, "four")
        self.successResultOf(self.h.runtime.remove(container, force=True))
        self.h.treq.flush()
        text = self.successResultOf(self.h.treq.content(response))  # type: ignore[attr-defined]
        self.assertEqual(text, b"three\nfour\n")
        self.h.call("POST", "/services/web/start", token=token)
        stats = self.h.call("GET", "/services/web/stats", token=token).json()
        self.assertEqual(stats["memory_limit"], 512 * 1024**2)

    def test_proxy_for_a_service(self) -> None:
        """<name>.<BASE_DOMAIN> to the service's address, remembered on the service."""
        body = self.create().json()
        answer = self.h.call("POST", "/services/web/proxy", token=self.h.admin_token)
        self.assertEqual(answer.status, 201, answer.body)
        proxy = answer.json()
        self.assertEqual(
            (proxy["hostname"], proxy["target_url"]),
            ("web.example.test", f"http://{body['address']}"),
        )
        shown = self.h.call("GET", "/services/web", token=self.h.admin_token).json()
        self.assertEqual(shown["proxies"], ["web.example.test"])
        self.h.assert_error(
            self.h.call("POST", "/services/web/proxy", token=self.h.admin_token), 409, "conflict"
        )

    def test_auto_proxy_at_creation(self) -> None:
        """``auto_proxy`` makes <name>.<BASE_DOMAIN> with the service."""
        answer = self.create({**EXPOSED, "auto_proxy": True})
        self.assertEqual(answer.status, 201, answer.body)
        self.assertEqual(answer.json()["proxies"], ["web.example.test"])
        proxy = self.successResultOf(self.h.storage.proxies.get("web.example.test"))
        assert proxy is not None
        self.assertEqual(proxy.target_url, f"http://{answer.json()['address']}")

    def test_auto_proxy_without_internal_port_is_refused_before_anything_is_made(self) -> None:
        """No internal_port to proxy to: 422, and no service was created."""
        body = {**EXPOSED, "auto_proxy": True, "internal_port": None}
        self.h.assert_error(self.create(body), 422, "invalid_input", "/internal_port")
        self.assertEqual(self.h.runtime.by_id, {})

    def test_delete_with_force_and_proxy(self) -> None:
        """409 while running without force; 204 with it, proxy deleted too."""
        self.create()
        self.h.call("POST", "/services/web/proxy", token=self.h.admin_token,
                    body={"hostname": "web.other.test", "enable_https": False})  # fmt: skip
        token = self.h.admin_token
        self.h.assert_error(self.h.call("DELETE", "/services/web", token=token), 409, "conflict")
        gone = self.h.call("DELETE", "/services/web?force=true&delete_proxy=true", token=token)
        self.assertEqual(gone.status, 204)
        self.assertIsNone(self.successResultOf(self.h.storage.proxies.get("web.other.test")))
        self.assertEqual(self.h.runtime.by_id, {})

    def test_cleanup_report(self) -> None:
        """GET /services/cleanup lists an orphan container."""
        deployment = self.successResultOf(Deferred.fromCoroutine(self.h.lifecycle.deployment()))
        from oauthproxy.model import DockerService

        self.successResultOf(self.h.runtime.create(DockerService("stray", IMAGE), deployment, "n"))
        report = self.h.call("GET", "/services/cleanup", token=self.h.admin_token).json()
        self.assertEqual([o["name"] for o in report["orphans"]], ["stray"])


class PortEndpointTests(SynchronousTestCase):
    """Ports of a service, checks, ranges and reservations."""

    def setUp(self) -> None:
        """A harness with one service."""
        self.h = DockerHarness(self)
        answer = self.h.call("POST", "/services/", token=self.h.admin_token, body=EXPOSED)
        assert answer.status == 201, answer.body

    def test_add_update_list_remove(self) -> None:
        """A guarded port with a token: its value never comes back, only that it has one."""
        token = self.h.admin_token
        added = self.h.call(
            "POST",
            "/services/web/ports",
            token=token,
            body={"host": 14001, "container": 8080, "name": "api",
                  "source_token": "0123456789abcdef0123", "allowed_networks": ["10.0.0.1/8"]},
        )  # fmt: skip
        self.assertEqual(added.status, 201, added.body)
        port = added.json()
        self.assertEqual((port["token"], port["served_by"]), (True, "daemon"))
        self.assertEqual(port["allowed_networks"], ["10.0.0.0/8"])
        self.assertNotIn(b"0123456789abcdef0123", added.body)
        stored = self.successResultOf(self.h.storage.docker_services.get("web"))
        self.assertEqual(len(stored.ports[1].token_hash or ""), 64)
        changed = self.h.call(
            "PATCH", "/services/web/ports/api", token=token, body={"source_token": None}
        ).json()
        self.assertEqual(changed["token"], False)
        listed = self.h.call("GET", "/services/web/ports", token=token).json()
        self.assertEqual([p["name"] for p in listed["items"]], ["14000", "api"])
        self.assertEqual(self.h.call("DELETE", "/services/web/ports/api", token=token).status, 204)
        self.h.assert_error(
            self.h.call("DELETE", "/services/web/ports/api", token=token), 404, "not_found"
        )

    def test_check_says_why_not(self) -> None:
        """Reserved by a service, restricted, used on the host, or free."""
        token = self.h.admin_token
        self.h.busy.add(14005)
        verdicts = {
            port: self.h.call("GET", f"/services/ports/check?port={port}", token=token).json()
            for port in (14000, 22, 14005, 14006, 9999)
        }
        self.assertIn("service web", verdicts[14000]["reason"])
        self.assertIn("restricted", verdicts[22]["reason"])
        self.assertIn("in use", verdicts[14005]["reason"])
        self.assertEqual((verdicts[14006]["available"], verdicts[14006]["reason"]), (True, None))
        self.assertTrue(verdicts[9999]["available"])
        self.assertIn("outside", verdicts[9999]["reason"])
        self.h.assert_error(
            self.h.call("GET", "/services/ports/check?port=80&bind=example.com", token=token),
            422,
            "invalid_input",
            "bind",
        )

    def test_available_ranges_and_reservations(self) -> None:
        """The free automatic ranges exclude the reserved port; /ports/ lists it."""
        token = self.h.admin_token
        available = self.h.call("GET", "/services/ports/available", token=token).json()
        self.assertEqual(available["ranges"], [{"first": 14001, "last": 14010}])
        reserved = self.h.call("GET", "/ports/", token=token).json()
        self.assertEqual(
            reserved["items"],
            [
                {
                    "port": 14000,
                    "protocol": "tcp",
                    "bind": "127.0.0.1",
                    "service": "web",
                    "port_name": "14000",
                }
            ],
        )

    def test_a_port_name_taken_is_409(self) -> None:
        """Adding a second port with an existing name."""
        self.h.assert_error(
            self.h.call(
                "POST",
                "/services/web/ports",
                token=self.h.admin_token,
                body={"name": "14000", "host": 14002, "container": 1},
            ),
            409,
            "conflict",
            "/name",
        )
