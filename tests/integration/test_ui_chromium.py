"""The web UI at ``/`` in headless Chromium against an in-process admin API.

The API is ``AdminAPI(...).site()`` over :class:`~oauthproxy.testing.MemoryStorage`
with one proxy and one admin token, listening on a free loopback port.  Chromium
(``/usr/bin/chromium``) runs with a fresh profile and no name resolution beyond
loopback (``--host-resolver-rules``), driven over the DevTools protocol on
``--remote-debugging-pipe`` (a small client below: NUL-separated JSON on fds 3
and 4), so a test types the token into the sign-in form as a user would; the
page never takes a token from its URL.  Screenshots stay in each test's temp
directory under ``_trial_temp``.  Chromium is stopped by its PID in a cleanup.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from oauthproxy.admin.api import AdminAPI
from oauthproxy.admin.credentials import hash_token, new_token_value
from oauthproxy.interfaces import ISnapshotSource
from oauthproxy.model import ADMIN_TOKEN_NAME, ApiToken, Proxy, Snapshot
from oauthproxy.testing import MemoryStorage
from tests.admin.harness import StandInSnapshots
from tests.support.chromium import BASE_FLAGS, CHROMIUM, fresh_profile
from tests.support.daemon import child_environment, start_daemon

FLAGS = (
    *BASE_FLAGS,
    "--window-size=1280,800",
    "--remote-debugging-pipe",
)
HOSTNAME = "app.example.test"
_REACTOR: Any = reactor


class _DevTools(ProcessProtocol):
    """A DevTools protocol client on Chromium's pipe: commands on fd 3, answers on fd 4.

    Messages are JSON objects separated by NUL bytes; an answer carries its
    command's ``id``.  Events are not needed here and are dropped.
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.log = bytearray()
        self.next_id = 0
        self.waiting: dict[int, Deferred[dict[str, Any]]] = {}
        self.ended: Deferred[None] = Deferred()
        self.running = True

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> Deferred[dict[str, Any]]:
        """Send one command; the Deferred fires with its result or fails with its error."""
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        answer: Deferred[dict[str, Any]] = Deferred()
        self.waiting[self.next_id] = answer
        cast(Any, self.transport).writeToChild(3, json.dumps(message).encode() + b"\0")
        return answer

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        """Keep the log (fd 2); resolve answers (fd 4)."""
        if childFD == 2:
            self.log += data
        if childFD != 4:
            return
        self.buffer += data
        *messages, self.buffer = self.buffer.split(b"\0")
        for raw in messages:
            message = json.loads(raw)
            answer = self.waiting.pop(message.get("id", -1), None)
            if answer is None:
                continue
            if "error" in message:
                answer.errback(RuntimeError(f"DevTools error: {message['error']}"))
            else:
                answer.callback(message.get("result", {}))

    def processEnded(self, reason: Failure) -> None:
        """Fail the commands still waiting; fire ``ended``."""
        self.running = False
        waiting, self.waiting = self.waiting, {}
        for answer in waiting.values():
            answer.errback(RuntimeError("Chromium exited"))
        self.ended.callback(None)


class Page:
    """One tab of a Chromium driven over the DevTools pipe."""

    def __init__(self, devtools: _DevTools, session: str) -> None:
        self.devtools = devtools
        self.session = session

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited if it is a promise)."""
        result = await self.devtools.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            self.session,
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, seconds: float = 15.0) -> Any:
        """Poll ``expression`` until it is truthy (bounded); return its value."""
        for _ in range(int(seconds / 0.1)):
            value = await self.evaluate(expression)
            if value:
                return value
            await deferLater(_REACTOR, 0.1, lambda: None)
        raise AssertionError(f"timed out waiting for {expression}")

    async def click(self, selector: str) -> None:
        """Click the element ``selector`` names."""
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")

    async def type_into(self, element_id: str, text: str) -> None:
        """Focus an input and enter ``text`` as keyboard input."""
        await self.evaluate(f"document.getElementById({json.dumps(element_id)}).focus()")
        await self.devtools.send("Input.insertText", {"text": text}, self.session)

    async def press(self, key: str) -> None:
        """Press and release a named key (``ArrowRight``, ``End``) on the focused element."""
        for kind in ("keyDown", "keyUp"):
            params = {"type": kind, "key": key, "code": key}
            await self.devtools.send("Input.dispatchKeyEvent", params, self.session)

    async def dom(self) -> str:
        """The current DOM as HTML (what ``--dump-dom`` prints)."""
        html: str = await self.evaluate("document.documentElement.outerHTML")
        return html

    async def screenshot(self, path: str) -> bytes:
        """Save a PNG of the viewport to ``path``; return its bytes."""
        result = await self.devtools.send("Page.captureScreenshot", {"format": "png"}, self.session)
        image = base64.b64decode(result["data"])
        with open(path, "wb") as f:
            f.write(image)
        return image


async def open_page(test: TestCase, url: str) -> Page:
    """Start Chromium with a fresh profile and open ``url`` in a new tab."""
    profile = fresh_profile(test)
    devtools = _DevTools()
    transport = _REACTOR.spawnProcess(
        devtools,
        CHROMIUM,
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}"],
        env=child_environment(),
        childFDs={0: "w", 1: "r", 2: "r", 3: "w", 4: "r"},
    )
    pid = transport.pid

    async def stop() -> None:
        # by PID, then wait for the exit: its helper processes go with it
        if devtools.running:
            os.kill(pid, signal.SIGKILL)
        await devtools.ended

    test.addCleanup(stop)
    target = await devtools.send("Target.createTarget", {"url": url})
    attached = await devtools.send(
        "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
    )
    page = Page(devtools, attached["sessionId"])
    # the new tab starts on about:blank: wait for the page itself, its scripts run
    await page.wait_for(
        f"location.href.startsWith({json.dumps(url)}) && document.readyState === 'complete'"
    )
    return page


async def sign_in(test: TestCase, url: str, token: str) -> Page:
    """A page on ``url`` after typing ``token`` into the sign-in form and submitting it."""
    page = await open_page(test, url)
    await page.type_into("token-input", token)
    await page.click("#login-form button")
    return page


def health() -> dict[str, object]:
    """What a healthy daemon reports."""
    return {
        "redis": "connected",
        "listeners": {"api": "tcp:0:interface=127.0.0.1"},
        "version": "0.1.0",
        "uptime": 4000.0,
    }


class UIInChromiumTests(TestCase):
    """The UI as a browser shows it."""

    timeout = 120

    async def setUp(self) -> None:
        """An admin API with one proxy and one admin token on a loopback port."""
        self.storage = MemoryStorage(_REACTOR)
        now = _REACTOR.seconds()
        proxy = Proxy(HOSTNAME, "http://127.0.0.1:8080", created_at=now, updated_at=now)
        await self.storage.proxies.create(proxy)
        self.token = new_token_value()
        admin = ApiToken(
            name=ADMIN_TOKEN_NAME,
            token_hash=hash_token(self.token),
            owner_email="ops@example.test",
            is_admin=True,
            created_at=now,
        )
        await self.storage.tokens.create(admin)
        self.snapshots = StandInSnapshots(Snapshot(tokens={admin.name: admin}))
        api = AdminAPI(self.storage, cast(ISnapshotSource, self.snapshots), _REACTOR, health)
        # wrapped to find Chromium's keep-alive connections at cleanup
        self.factory = WrappingFactory(api.site())
        port: IListeningPort = _REACTOR.listenTCP(0, self.factory, interface="127.0.0.1")
        self.addCleanup(self._close, port)
        self.url = f"http://127.0.0.1:{port.getHost().port}/"  # type: ignore[attr-defined]

    async def _close(self, port: IListeningPort) -> None:
        """Stop listening and drop the connections left (bounded wait)."""
        await maybeDeferred(port.stopListening)
        for protocol in list(self.factory.protocols):
            protocol.transport.abortConnection()
        for _ in range(50):
            if not self.factory.protocols:
                break
            await deferLater(_REACTOR, 0.01, lambda: None)

    async def signed_in(self, token: str | None = None) -> Page:
        """A page on ``/`` after typing ``token`` (default: the admin's) into the form."""
        return await sign_in(self, self.url, token or self.token)

    def shot(self, name: str) -> str:
        """A path for a screenshot in this test's temp directory."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        return os.path.join(folder, name)

    async def test_page_without_token_shows_only_the_prompt(self) -> None:
        """Opened without a token: the sign-in form has focus, the console is hidden."""
        page = await open_page(self, self.url)
        self.assertEqual(await page.evaluate("document.activeElement.id"), "token-input")
        dom = await page.dom()
        self.assertRegex(dom, r'<section id="console"[^>]* hidden')
        self.assertNotRegex(dom, r'<section id="login"[^>]* hidden')
        self.assertNotIn(HOSTNAME, dom)

    async def test_proxies_table_shows_the_proxy(self) -> None:
        """Signed in, the Proxies tab lists the stored proxy's hostname (no CSP violation)."""
        page = await self.signed_in()
        await page.wait_for(f"document.body.innerText.includes({json.dumps(HOSTNAME)})")
        dom = await page.dom()
        self.assertRegex(dom, r'<th scope="row">' + re.escape(HOSTNAME) + r"</th>")
        self.assertRegex(dom, r'<section id="login"[^>]* hidden')
        self.assertRegex(dom, r'id="tab-proxies"[^>]*aria-selected="true"')
        self.assertNotIn(b"Content Security Policy", page.devtools.log)

    async def test_screenshot_shows_the_signed_in_page(self) -> None:
        """A screenshot of the Proxies tab is written to the test's temp directory."""
        page = await self.signed_in()
        await page.wait_for(f"document.body.innerText.includes({json.dumps(HOSTNAME)})")
        image = await page.screenshot(self.shot("ui.png"))
        self.assertTrue(image.startswith(b"\x89PNG"))
        # a blank page compresses to a few kB; the rendered table is larger
        self.assertGreater(len(image), 20_000)

    async def test_token_is_kept_in_session_storage_only(self) -> None:
        """The token is in sessionStorage; not in a cookie, the URL, localStorage or the DOM."""
        page = await self.signed_in()
        await page.wait_for(f"document.body.innerText.includes({json.dumps(HOSTNAME)})")
        kept = await page.evaluate("sessionStorage.getItem('oauthproxy.token')")
        self.assertEqual(kept, self.token)
        self.assertEqual(await page.evaluate("document.cookie"), "")
        self.assertEqual(await page.evaluate("localStorage.length"), 0)
        self.assertNotIn(self.token, await page.evaluate("location.href"))
        self.assertNotIn(self.token, await page.dom())

    async def test_unknown_token_returns_to_the_prompt(self) -> None:
        """A token the API answers with 401 brings back the sign-in form with the reason."""
        page = await self.signed_in("acm_not_a_real_token_at_all")
        error = await page.wait_for("document.getElementById('login-error').textContent")
        self.assertIn("not accepted", error)
        self.assertTrue(await page.evaluate("document.getElementById('console').hidden"))
        self.assertIsNone(await page.evaluate("sessionStorage.getItem('oauthproxy.token')"))

    async def test_revoked_token_mid_session_returns_to_the_prompt(self) -> None:
        """When the token stops being valid, the next call's 401 shows the prompt again."""
        page = await self.signed_in()
        await page.wait_for(f"document.body.innerText.includes({json.dumps(HOSTNAME)})")
        self.snapshots.current = Snapshot()
        await page.click("#panel-proxies .panel-head button")
        await page.wait_for("!document.getElementById('login').hidden")
        self.assertNotIn(HOSTNAME, await page.dom())
        self.assertNotIn(b"Uncaught", page.devtools.log)

    async def test_api_error_is_shown_at_its_field(self) -> None:
        """A hostname the API rejects gets the API's message next to the hostname field."""
        page = await self.signed_in()
        await page.wait_for("document.querySelector('#panel-proxies details') !== null")
        await page.evaluate("document.querySelector('#panel-proxies details').open = true")
        await page.type_into("f-proxies-hostname", "not a hostname")
        await page.type_into("f-proxies-target_url", "http://127.0.0.1:8081")
        await page.click("#panel-proxies form button[type=submit]")
        message = await page.wait_for(
            "document.getElementById('f-proxies-hostname-error').innerText"
        )
        self.assertIn("not a hostname", message)
        invalid = "document.getElementById('f-proxies-hostname').getAttribute('aria-invalid')"
        self.assertEqual(await page.evaluate(invalid), "true")
        await page.screenshot(self.shot("ui-error.png"))

    async def test_created_proxy_is_stored_and_listed(self) -> None:
        """Submitting the form creates the proxy through the API and lists it."""
        page = await self.signed_in()
        await page.wait_for("document.querySelector('#panel-proxies details') !== null")
        await page.evaluate("document.querySelector('#panel-proxies details').open = true")
        await page.type_into("f-proxies-hostname", "new.example.test")
        await page.type_into("f-proxies-target_url", "http://127.0.0.1:8082")
        await page.click("#panel-proxies form button[type=submit]")
        await page.wait_for("document.body.innerText.includes('new.example.test')")
        stored = await self.storage.proxies.get("new.example.test")
        assert stored is not None
        self.assertEqual(stored.target_url, "http://127.0.0.1:8082")

    async def test_delete_button_removes_the_proxy(self) -> None:
        """Delete (confirmed) removes the proxy from the store and from the table."""
        page = await self.signed_in()
        await page.wait_for(f"document.body.innerText.includes({json.dumps(HOSTNAME)})")
        await page.evaluate("window.confirm = () => true")
        await page.click(f'button[aria-label="Delete proxy {HOSTNAME}"]')
        await page.wait_for("document.body.innerText.includes('No proxies yet.')")
        self.assertIsNone(await self.storage.proxies.get(HOSTNAME))

    async def test_arrow_keys_move_between_tabs(self) -> None:
        """The tab list follows the ARIA pattern: arrows move focus and selection."""
        page = await self.signed_in()
        await page.wait_for(f"document.body.innerText.includes({json.dumps(HOSTNAME)})")
        await page.evaluate("document.getElementById('tab-proxies').focus()")
        await page.press("ArrowRight")
        self.assertEqual(await page.evaluate("document.activeElement.id"), "tab-routes")
        await page.press("End")
        self.assertEqual(await page.evaluate("document.activeElement.id"), "tab-health")
        await page.wait_for(
            "document.getElementById('panel-health').innerText.includes('connected')"
        )
        self.assertTrue(await page.evaluate("document.getElementById('panel-proxies').hidden"))
        await page.screenshot(self.shot("ui-health.png"))


class DaemonUITests(TestCase):
    """The UI as the real daemon (``twistd oauthproxy``, Redis) serves it."""

    timeout = 120

    async def test_daemon_serves_the_ui_over_its_api(self) -> None:
        """``/`` of a running daemon signs in with its admin token and lists its proxies."""
        daemon = await start_daemon(self)
        token = daemon.admin_token
        assert token is not None
        proxy = {"hostname": "daemon.example.test", "target_url": "http://127.0.0.1:8080"}
        status, _ = await daemon.post("/proxy/targets/", proxy, token)
        self.assertEqual(status, 201)
        page = await sign_in(self, daemon.api_url + "/", token)
        await page.wait_for("document.body.innerText.includes('daemon.example.test')")
        await page.click("#tab-health")
        redis = await page.wait_for(
            "document.querySelector('#panel-health dd:nth-of-type(2)')?.innerText"
        )
        self.assertEqual(redis, "connected")
        self.assertNotIn(b"Content Security Policy", page.devtools.log)
