"""The seed's Docker service flows, written with ``oauthproxyctl`` in place of ``just``.

The seed's README (sections "Docker Service Management", "Port Management",
"Multi-Port Services") runs, e.g., ``just service-create-exposed my-app nginx:alpine
8080 127.0.0.1``.  Here the same commands run against a real daemon and dockerd; what
differs is only what this machine needs: the local test image instead of a registry
image, and host networking with the image's own httpd (``--network-mode host
--command ...``), so every connection stays on loopback.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.trial.unittest import TestCase

from tests.cli.test_proxy_route_service import Ctl
from tests.integration.containers_support import start_docker_daemon, unique
from tests.support.daemon import free_port
from tests.support.dockerd import shared_dockerd

IMAGE = "local/busybox:1"


def host_httpd(port: int) -> list[str]:
    """What stands in for nginx here: host networking, busybox httpd on 127.0.0.1:port."""
    return ["--network-mode", "host", "--command", f"httpd -f -v -p 127.0.0.1:{port} -h /www"]


class SeedFlowTests(TestCase):
    """``oauthproxyctl service ...`` as the seed's README uses it."""

    timeout = 240

    def setUp(self) -> None:
        """The shared dockerd and its image; a build directory for Dockerfile builds."""
        self.dockerd = shared_dockerd()
        self.dockerd.busybox_image()
        self.builds = tempfile.mkdtemp(prefix="opbuild-")
        self.addCleanup(shutil.rmtree, self.builds, True)

    async def test_docker_service_and_port_management(self) -> None:
        """create-exposed, port add/list/check/remove, list, proxy-create, logs, stats,
        start/stop/restart, cleanup, delete."""
        api = await start_docker_daemon(
            self, self.dockerd, OAUTHPROXY_DOCKER_BUILD_DIRS=self.builds
        )
        ctl = Ctl(self, api.daemon.api_url, api.token)
        app, port = unique(self, self.dockerd, "my-app-"), free_port()

        # service-create-exposed my-app nginx:alpine 8080 127.0.0.1
        out = await ctl.ok("service", "create-exposed", app, IMAGE, str(port), "127.0.0.1",
                           *host_httpd(port))  # fmt: skip
        self.assertRegex(out, r"state\s+running")
        await api.eventually(lambda: _ok(api.http(port)), "my-app answering")

        # service-port-add my-app 8081 [bind-address] [source-token]
        extra = free_port()
        await ctl.ok("service", "port", "add", app, str(extra), "127.0.0.1")
        guarded = free_port()
        out = await ctl.ok("service", "port", "add", app, str(guarded), "127.0.0.1",
                           "--container", str(port), "--source-token", "generate")  # fmt: skip
        token = out.split("access token (shown once): ")[1].strip()
        await api.eventually(lambda: _status(api.http(guarded), 401), "401 without the token")
        code, _ = await api.http(guarded, "/", {"X-Port-Token": token})
        self.assertEqual(code, 200)

        # service-list, service-port-list my-app
        table = await ctl.ok("service", "list")
        self.assertIn(app, table)
        self.assertIn(f"127.0.0.1:{port}->{port}/tcp", table)
        ports = await ctl.json("service", "port", "list", app)
        self.assertEqual([p["host"] for p in ports], [port, extra, guarded])

        # service-port-check 8080 [bind-address]
        out, _, code = await ctl.run("service", "port", "check", str(port), "127.0.0.1")
        self.assertEqual(code, 1)
        self.assertIn(f"reserved by service {app}", out)
        free = free_port()
        out = await ctl.ok("service", "port", "check", str(free))
        self.assertIn("available", out)

        # service-port-remove <service> <port-name>
        await ctl.ok("service", "port", "remove", app, str(extra))
        ports = await ctl.json("service", "port", "list", app)
        self.assertEqual(len(ports), 2)

        # service-proxy-create my-app [hostname] [enable-https]
        proxy = await ctl.json("service", "proxy-create", app, f"{app}.test", "--no-https")
        self.assertEqual(proxy["target_url"], f"http://127.0.0.1:{port}")
        await api.eventually(lambda: _ok(api.gateway(f"{app}.test")), "the service proxy")

        # service-logs my-app [lines] [timestamps], service-stats my-app
        await api.http(port)
        out = await ctl.ok("service", "logs", app, "20", "--timestamps")
        self.assertIn("response:200", out)
        stats = await ctl.json("service", "stats", app)
        self.assertGreaterEqual(stats["pids"], 1)

        # service-stop / service-start / service-restart my-app
        self.assertIn("exited", await ctl.ok("service", "stop", app))
        self.assertIn("running", await ctl.ok("service", "start", app))
        self.assertIn("running", await ctl.ok("service", "restart", app))

        # service-cleanup-orphaned
        out = await ctl.ok("service", "cleanup", "--dry-run")
        self.assertIn("orphan containers: none", out)

        # deleting a running service wants --force; the proxy can go with it
        line = await ctl.fails("service", "delete", app)
        self.assertIn("force", line)
        await ctl.ok("service", "delete", app, "--force", "--delete-proxy")
        self.assertIn("(none)", await ctl.ok("service", "list"))

    async def test_create_from_a_dockerfile_with_a_port(self) -> None:
        """``service-create my-app "" ./dockerfiles/app.Dockerfile 3000`` as options."""
        api = await start_docker_daemon(
            self, self.dockerd, OAUTHPROXY_DOCKER_BUILD_DIRS=self.builds
        )
        ctl = Ctl(self, api.daemon.api_url, api.token)
        dockerfiles = os.path.join(self.builds, "dockerfiles")
        os.makedirs(dockerfiles)
        with open(os.path.join(dockerfiles, "app.Dockerfile"), "w") as f:
            f.write(f"FROM {IMAGE}\nRUN mkdir -p /site && echo built > /site/index.html\n")
        app, port = unique(self, self.dockerd, "my-app-"), free_port()
        dockerfile = os.path.join(dockerfiles, "app.Dockerfile")
        record = await ctl.json(
            "service", "create", app, "", "--dockerfile", dockerfile,
            "--port", str(port), "--memory", "64m", "--cpu", "0.5", "--network-mode", "host",
            "--command", f"httpd -f -p 127.0.0.1:{port} -h /site",
        )  # fmt: skip
        self.assertEqual((record["memory_limit"], record["cpu_limit"]), ("64m", 0.5))
        self.assertEqual(record["image"], f"oauthproxy-build/{app}:latest")
        await api.eventually(lambda: _answers(api.http(port), b"built\n"), "the built site")

    async def test_errors_are_one_line_and_exit_1(self) -> None:
        """Refusals print one line naming the problem; a usage error exits 2."""
        api = await start_docker_daemon(self, self.dockerd)
        ctl = Ctl(self, api.daemon.api_url, api.token)
        line = await ctl.fails("service", "create-exposed", "x", "nginx:alpine", "8080")
        self.assertIn("OAUTHPROXY_DOCKER_IMAGES", line)
        line = await ctl.fails("service", "show", "nosuch")
        self.assertIn("404", line)
        await ctl.fails("service", "update", "nosuch", code=2)

    async def test_help_for_every_service_command(self) -> None:
        """``--help`` of the group and each command: exit 0, usage on stdout."""
        ctl = Ctl(self)
        for args in (
            ["service"], ["service", "create"], ["service", "create-exposed"],
            ["service", "list"], ["service", "show"], ["service", "update"],
            ["service", "delete"], ["service", "start"], ["service", "stop"],
            ["service", "restart"], ["service", "logs"], ["service", "stats"],
            ["service", "proxy-create"], ["service", "cleanup"], ["service", "port"],
            ["service", "port", "add"], ["service", "port", "remove"],
            ["service", "port", "update"], ["service", "port", "list"],
            ["service", "port", "check"], ["service", "port", "available"],
        ):  # fmt: skip
            out = await ctl.ok(*args, "--help")
            self.assertIn("usage: oauthproxyctl " + " ".join(args), out)


async def _ok(request: object) -> bool:
    """Whether ``request`` answers 200."""
    code, _ = await request  # type: ignore[misc]
    return bool(code == 200)


async def _status(request: object, status: int) -> bool:
    """Whether ``request`` answers ``status``."""
    code, _ = await request  # type: ignore[misc]
    return bool(code == status)


async def _answers(request: object, body: bytes) -> bool:
    """Whether ``request`` answers 200 with ``body``."""
    return bool(await request == (200, body))  # type: ignore[misc]
