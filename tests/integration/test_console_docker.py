"""The Services screen's Docker services, in headless Chromium, on a real dockerd.

The daemon runs on the test process's shared private ``dockerd``
(:func:`tests.support.dockerd.shared_dockerd`) with host networking allowed, so a
service is the local busybox image running ``httpd`` on a loopback port.  The
operator creates it from the console, sees it running and answering, reads and
follows its output, stops and starts it, adds and removes a port, makes its proxy
and deletes it with the proxy.
"""

from __future__ import annotations

from typing import Any

import treq

from tests.integration.containers_support import docker_env, unique
from tests.integration.test_console_chromium import ConsoleTestCase, screenshot_path, settle
from tests.support.daemon import free_port
from tests.support.dockerd import shared_dockerd

IMAGE = "local/busybox:1"


class DockerServiceScreenTests(ConsoleTestCase):
    """Docker services from the console."""

    timeout = 240

    def arguments(self) -> list[str]:
        """An HTTP listener for the service's proxy."""
        self.http_port = free_port()
        return ["--http", f"tcp:{self.http_port}:interface=127.0.0.1"]

    def environment(self) -> dict[str, str]:
        """The shared dockerd, host networking allowed, BASE_DOMAIN for service proxies."""
        self.dockerd = shared_dockerd()
        self.dockerd.busybox_image()
        return docker_env(self.dockerd, BASE_DOMAIN="example.test")

    async def http(self, port: int, host: str | None = None) -> int:
        """GET / on a loopback port (with a Host); the status, 0 when nothing answers."""
        headers = {"Host": [host]} if host else {}
        try:
            response = await treq.get(
                f"http://127.0.0.1:{port}/", headers=headers, pool=self.daemon.pool, timeout=5
            )
            await treq.content(response)
        except Exception:
            return 0
        code: int = response.code
        return code

    async def until(self, check: Any, seconds: float = 20.0) -> None:
        """Poll ``await check()`` until truthy (bounded)."""
        for _ in range(int(seconds / 0.2)):
            if await check():
                return
            await settle(0.2)
        self.fail(f"never true: {check}")

    async def test_create_run_follow_ports_proxy_delete(self) -> None:
        """A Docker service's whole life from the console."""
        page = self.page
        name, port = unique(self, self.dockerd, "web-"), free_port()
        await page.go("#/services")
        await page.wait_text("No Docker services yet.", "#docker-services")
        await page.evaluate("document.querySelector('#docker-services details').open = true")
        await page.fill("docker-create-name", name)
        await page.fill("docker-create-image", IMAGE)
        await page.fill("docker-create-internal_port", str(port))
        await page.fill("docker-create-host_port", str(port))
        await page.choose("docker-create-network_mode", "host")
        await page.fill("docker-create-command", f"httpd -f -v -p 127.0.0.1:{port} -h /www")
        await page.submit("docker-create")
        await page.wait_text(f"Created service {name}", seconds=60)
        await page.wait_text("running", f'#docker-services tr[data-key="{name}"]')
        await self.until(lambda: self.http(port))
        await page.screenshot(screenshot_path("docker-services.png"), full=True)

        # its page: output, then a live follow that shows the next request
        await page.go(f"#/services/{name}")
        await page.wait_text(f"Service {name}", "#screen h2")
        await page.click("#service-follow")
        await settle(1.0)
        self.assertEqual(await self.http(port), 200)
        await page.wait_text("response:200", "#service-logs", seconds=20)
        await page.click("#service-follow")
        await page.wait_for("document.getElementById('service-follow').innerText === 'Follow'")

        # stop and start
        await page.click_button(f"Stop service {name}")
        await page.wait_text(f"Stopped {name}.")
        await self.until(lambda: self._not(self.http(port)))
        await page.click_button(f"Start service {name}")
        await page.wait_text(f"Started {name}.")
        await self.until(lambda: self.http(port))

        # its settings: a new environment and memory limit recreate the container
        await page.fill("docker-update-environment", "GREETING=hello from the console")
        await page.fill("docker-update-memory_limit", "64m")
        await page.submit("docker-update")
        await page.wait_text("Saved: the container was recreated.", seconds=60)
        status, stored = await self.api("GET", f"/services/{name}")
        self.assertEqual(status, 200, stored)
        self.assertEqual(stored["environment"], {"GREETING": "hello from the console"})
        self.assertEqual(stored["memory_limit"], "64m")
        value = "document.getElementById('docker-update-memory_limit').value"
        self.assertEqual(await page.evaluate(value), "64m")
        await self.until(lambda: self.http(port))

        # a second port (guarded by a token), then removed
        extra = free_port()
        await page.evaluate("document.querySelector('#docker-port').closest('details').open = true")
        await page.fill("docker-port-name", "extra")
        await page.fill("docker-port-container", str(port))
        await page.fill("docker-port-host", str(extra))
        # on host networking an extra port is a guarded one, served by the daemon
        await page.fill("docker-port-source_token", "console-port-token-0123456789")
        await page.submit("docker-port")
        await page.wait_text("Added port extra")
        await page.wait_text(f"127.0.0.1:{extra}", "#screen")
        await self.until(lambda: self._is(self.http(extra), 401))
        await page.click_button("Remove port extra")
        await page.wait_text("Removed port extra.")

        # its proxy, reachable through the gateway
        await page.click_button("Create its proxy")
        await page.wait_text(f"Created proxy {name}.example.test.")
        status, proxy = await self.api("GET", f"/proxy/targets/{name}.example.test")
        self.assertEqual(status, 200, proxy)
        await page.screenshot(screenshot_path("docker-service.png"), full=True)

        # delete, with its proxy
        await page.click_button(f"Delete service {name}", "#screen .head-actions")
        await page.click_button(f"Delete {name}", "dialog[open]")
        await page.wait_for("location.hash === '#/services'")
        await self.until(lambda: self._not(self.http(port)))
        status, _ = await self.api("GET", f"/proxy/targets/{name}.example.test")
        self.assertEqual(status, 404)
        self.assertNoPageErrors()

    @staticmethod
    async def _is(pending: Any, status: int) -> bool:
        """Whether an awaited status is ``status``."""
        return (await pending) == status

    @staticmethod
    async def _not(pending: Any) -> bool:
        """Whether an awaited status is 0 (nothing answers)."""
        return (await pending) == 0
