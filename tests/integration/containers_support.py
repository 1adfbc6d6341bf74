"""A real daemon managing a real dockerd's containers, and helpers to reach what it runs.

:func:`start_docker_daemon` starts ``twistd oauthproxy`` (embedded Redis, or a given
``REDIS_URL``) on a private dockerd with host networking allowed, the test image
allowed, and a fast reconciler, plus an HTTP gateway listener.  :class:`Api` calls the
admin API as the admin; :func:`http_get` talks to loopback ports.  Services are
removed from Docker at cleanup (their containers outlive the daemon by design).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

import treq
from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from tests.support.daemon import DaemonProcess, free_port, start_daemon
from tests.support.dockerd import Dockerd


def docker_env(dockerd: Dockerd, **extra: str) -> dict[str, str]:
    """The daemon's Docker settings for tests (loopback ACME: nothing leaves the host)."""
    return {
        "DOCKER_HOST": dockerd.url,
        "OAUTHPROXY_DOCKER_HOST_NETWORK": "on",
        "OAUTHPROXY_DOCKER_IMAGES": "local/*",
        "OAUTHPROXY_DOCKER_RECONCILE_INTERVAL": "1",
        "OAUTHPROXY_DOCKER_LOCK_TTL": "3",
        "OAUTHPROXY_DOCKER_TIMEOUT": "20",
        "ACME_DIRECTORY_URL": "https://127.0.0.1:1/directory",
        "ACME_STAGING_URL": "https://127.0.0.1:1/directory",
        **extra,
    }


class Api:
    """The admin API of a daemon, called as the admin; and plain HTTP to loopback ports."""

    def __init__(
        self, test: TestCase, daemon: DaemonProcess, http_port: int, token: str | None = None
    ) -> None:
        self.test = test
        self.daemon = daemon
        self.http_port = http_port
        token = token or daemon.admin_token
        assert token is not None, "\n".join(daemon.output[-20:])
        self.token = token
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        test.addCleanup(self.pool.closeCachedConnections)

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One admin API call: ``(status, JSON or None)``."""
        headers = {"Authorization": [f"Bearer {self.token}"]}
        data = None
        if body is not None:
            headers["Content-Type"] = ["application/json"]
            data = json.dumps(body).encode()
        response = await treq.request(
            method, self.daemon.api_url + path, data=data, headers=headers,
            pool=self.pool, timeout=60,
        )  # fmt: skip
        content = await treq.content(response)
        return response.code, json.loads(content) if content else None

    async def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        """A call that must answer ``status``; its JSON."""
        code, answer = await self.call(method, path, body)
        self.test.assertEqual(code, status, answer)
        return answer

    async def http(
        self, port: int, path: str = "/", headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        """``GET http://127.0.0.1:<port><path>``: ``(status, body)``."""
        sent = {name: [value] for name, value in (headers or {}).items()}
        response = await treq.get(
            f"http://127.0.0.1:{port}{path}", headers=sent, pool=self.pool, timeout=10
        )
        return response.code, await treq.content(response)

    async def gateway(self, host: str, path: str = "/") -> tuple[int, bytes]:
        """``GET`` through the daemon's HTTP listener with ``Host: host``."""
        return await self.http(self.http_port, path, {"Host": host})

    async def eventually(self, check: Any, what: str, seconds: float = 15.0) -> Any:
        """Poll ``await check()`` until it is truthy (bounded); its value."""
        deadline = reactor.seconds() + seconds
        last: Any = None
        while reactor.seconds() < deadline:
            try:
                last = await check()
            except Exception as e:  # connection refused while things start
                last = e
            if last and not isinstance(last, Exception):
                return last
            await task.deferLater(reactor, 0.1, lambda: None)
        self.test.fail(f"{what} did not happen within {seconds}s (last: {last!r})")


async def start_docker_daemon(
    test: TestCase,
    dockerd: Dockerd,
    redis_url: str | None = None,
    token: str | None = None,
    **env: str,
) -> Api:
    """A daemon on ``dockerd`` with an HTTP gateway listener; its :class:`Api`.

    ``token``: the admin token, when another daemon on ``redis_url`` made it.
    """
    http = free_port()
    daemon = await start_daemon(
        test,
        redis_url=redis_url,
        args=["--http", f"tcp:{http}:interface=127.0.0.1"],
        env=docker_env(dockerd, **env),
    )
    await daemon.wait_for(lambda body: "http" in body.get("listeners", {}))
    return Api(test, daemon, http, token)


def unique(test: TestCase, dockerd: Dockerd, prefix: str = "s") -> str:
    """A service name no other test uses; its containers are removed at cleanup."""
    name = prefix + uuid.uuid4().hex[:10]
    test.addCleanup(dockerd.remove_containers, f"oauthproxy.service={name}")
    return name


def httpd(port: int, directory: str = "/www") -> list[str]:
    """busybox httpd on 127.0.0.1:``port`` in the foreground."""
    return ["httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", directory]


def exposed(name: str, port: int, **more: Any) -> dict[str, Any]:
    """What ``service create-exposed NAME local/busybox:1 PORT`` sends, on host networking."""
    return {
        "name": name,
        "image": "local/busybox:1",
        "network_mode": "host",
        "command": httpd(port),
        "internal_port": port,
        "ports": [{"name": str(port), "host": port, "container": port, "bind": "127.0.0.1"}],
        **more,
    }
