"""``/docs`` of a running daemon in headless Chromium: Swagger UI renders every operation.

Chromium (``/usr/bin/chromium``) runs with a fresh profile, no network beyond
loopback (``--host-resolver-rules``) and a virtual time budget so the page's
JavaScript fetches ``/openapi.json`` and renders before the DOM is dumped and
the screenshot taken.  The screenshot (``docs.png``) stays in the test's temp
directory under ``_trial_temp`` as the artefact.  Each Chromium is stopped by
its PID in a cleanup if it has not exited by itself.
"""

from __future__ import annotations

import os
import re
import signal
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.support.chromium import BASE_FLAGS, CHROMIUM, fresh_profile
from tests.support.daemon import child_environment, start_daemon
from tests.support.processes import tied_to_test

FLAGS = (
    *BASE_FLAGS,
    "--virtual-time-budget=15000",
    "--window-size=1280,2400",
)


class _Collect(ProcessProtocol):
    """Collects a child's output; ``ended`` fires with its exit code."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.ended: Deferred[int | None] = Deferred()
        self.running = True

    def outReceived(self, data: bytes) -> None:
        """Keep stdout."""
        self.out += data

    def errReceived(self, data: bytes) -> None:
        """Keep stderr."""
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        """Report the exit code."""
        self.running = False
        value: Any = reason.value
        self.ended.callback(0 if isinstance(value, ProcessDone) else value.exitCode)


async def chromium(test: TestCase, *args: str) -> tuple[bytes, bytes]:
    """Run Chromium with FLAGS, a fresh profile and ``args``; ``(stdout, stderr)``."""
    profile = fresh_profile(test)
    collect = _Collect()
    argv = tied_to_test([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args])
    transport = reactor.spawnProcess(
        collect,
        argv[0],
        argv,
        env=child_environment(),
    )
    pid = transport.pid

    def stop() -> None:
        # by PID; Chromium's helper processes exit with the browser
        if collect.running:
            os.kill(pid, signal.SIGKILL)

    test.addCleanup(stop)
    timer = reactor.callLater(60, stop)
    code = await collect.ended
    if timer.active():
        timer.cancel()
    test.assertEqual(code, 0, bytes(collect.err[-3000:]))
    return bytes(collect.out), bytes(collect.err)


class DocsInChromiumTests(TestCase):
    """Swagger UI as a browser shows it."""

    timeout = 120

    async def test_docs_render_every_operation(self) -> None:
        """The DOM has one operation block per documented operation; no CSP violation."""
        daemon = await start_daemon(self)
        status, document = await daemon.get("/openapi.json")
        self.assertEqual(status, 200)
        operations = {
            op["operationId"]
            for item in document["paths"].values()
            for op in item.values()
            if isinstance(op, dict) and "operationId" in op
        }
        dom, log = await chromium(self, "--dump-dom", f"{daemon.api_url}/docs")
        rendered = set(re.findall(rb'id="operations-(?!tag-)[^"]*?-([A-Za-z0-9_]+)"', dom))
        self.assertEqual({name.decode() for name in rendered}, operations)
        self.assertNotIn(b"Content Security Policy", log)
        self.assertNotIn(b"Unable to render this definition", dom)
        # no warning box about the JSON Schema dialect (the OAS default is what we use)
        self.assertNotIn(b"jsonSchemaDialect</strong> field contains", dom)
        self.assertNotIn(b"Warning</h4>", dom)

    async def test_screenshot_shows_the_page(self) -> None:
        """A screenshot of ``/docs`` is written to the test's temp directory (the artefact)."""
        daemon = await start_daemon(self)
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        shot = os.path.join(folder, "docs.png")
        await chromium(self, f"--screenshot={shot}", f"{daemon.api_url}/docs")
        with open(shot, "rb") as f:
            image = f.read()
        self.assertTrue(image.startswith(b"\x89PNG"))
        # a blank 1280x2400 page compresses to a few kB; the rendered UI is far larger
        self.assertGreater(len(image), 50_000)
