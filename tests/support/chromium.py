"""Headless Chromium for the browser tests: the binary, the flags, a DevTools client.

The flags follow ``COMPONENTS.md``: no sandbox (we run as root), no GPU, no
background networking or component updates, and name resolution for nothing
but loopback, so the browser never tries to reach outside the machine.

:func:`open_page` starts Chromium with a fresh profile and drives it over the
DevTools protocol on ``--remote-debugging-pipe`` (a small client here:
NUL-separated JSON on fds 3 and 4); :func:`sign_in` types a token into the
console's sign-in form as a user would.  Chromium is stopped by its PID in a
cleanup.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import tempfile
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.support.daemon import child_environment

_REACTOR: Any = reactor

CHROMIUM = "/usr/bin/chromium"

#: flags every test browser gets
BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-zygote",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
)


#: flags of a browser driven over the DevTools pipe
PAGE_FLAGS = (*BASE_FLAGS, "--window-size=1280,900", "--remote-debugging-pipe")


def fresh_profile(test: TestCase) -> str:
    """A new, empty ``--user-data-dir``, removed when ``test`` ends."""
    profile = tempfile.mkdtemp(prefix="oauthproxy-chromium-")
    test.addCleanup(shutil.rmtree, profile, True)
    return profile


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
        codes = {"Escape": 27, "Enter": 13, "Tab": 9, "ArrowRight": 39, "ArrowLeft": 37, "End": 35}
        for kind in ("rawKeyDown", "keyUp"):
            params: dict[str, Any] = {"type": kind, "key": key, "code": key}
            if key in codes:
                params["windowsVirtualKeyCode"] = codes[key]
            await self.devtools.send("Input.dispatchKeyEvent", params, self.session)

    async def dom(self) -> str:
        """The current DOM as HTML (what ``--dump-dom`` prints)."""
        html: str = await self.evaluate("document.documentElement.outerHTML")
        return html

    async def screenshot(self, path: str, full: bool = False) -> bytes:
        """Save a PNG of the viewport (``full``: the whole page) to ``path``; return its bytes."""
        params: dict[str, Any] = {"format": "png"}
        if full:
            params["captureBeyondViewport"] = True
            height = await self.evaluate("document.documentElement.scrollHeight")
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": 1280,
                "height": min(height, 6000),
                "scale": 1,
            }
        result = await self.devtools.send("Page.captureScreenshot", params, self.session)
        image = base64.b64decode(result["data"])
        with open(path, "wb") as f:
            f.write(image)
        return image

    async def text(self, selector: str = "body") -> str:
        """The rendered text of the first element ``selector`` names ("" if none)."""
        found: str = await self.evaluate(
            f"(document.querySelector({json.dumps(selector)}) || {{innerText: ''}}).innerText"
        )
        return found

    async def wait_text(self, text: str, selector: str = "body", seconds: float = 15.0) -> None:
        """Wait until the element's rendered text contains ``text``."""
        found = f"document.querySelector({json.dumps(selector)})"
        try:
            await self.wait_for(
                f"({found} || {{innerText: ''}}).innerText.includes({json.dumps(text)})", seconds
            )
        except AssertionError:
            shown = (await self.text(selector))[-2000:]
            raise AssertionError(
                f"{text!r} never appeared in {selector}; it shows:\n{shown}"
            ) from None

    async def fill(self, element_id: str, text: str) -> None:
        """Replace an input's value with ``text``, typed as keyboard input."""
        await self.evaluate(f"document.getElementById({json.dumps(element_id)}).value = ''")
        if text:
            await self.type_into(element_id, text)

    async def choose(self, element_id: str, value: str) -> None:
        """Pick ``value`` in a select (and fire its change event)."""
        await self.evaluate(
            f"(() => {{ const s = document.getElementById({json.dumps(element_id)});"
            f" s.value = {json.dumps(value)}; s.dispatchEvent(new Event('change')); }})()"
        )

    async def check(self, element_id: str, on: bool) -> None:
        """Set a checkbox."""
        await self.evaluate(
            f"document.getElementById({json.dumps(element_id)}).checked = {json.dumps(on)}"
        )

    async def submit(self, form_id: str) -> None:
        """Press the submit button of a form once it can be pressed: a form disables it
        while its last submission is on its way, and a click on it then does nothing."""
        button = json.dumps(f"#{form_id} button[type=submit]")
        await self.wait_for(
            f"(document.querySelector({button}) || {{disabled: true}}).disabled === false"
        )
        await self.click(f"#{form_id} button[type=submit]")

    async def click_button(self, label: str, within: str = "body") -> None:
        """Click the button (or link) whose accessible name or text is ``label``."""
        script = (
            f"(() => {{ const root = document.querySelector({json.dumps(within)});"
            " if (!root) return false;"
            " const all = [...root.querySelectorAll('button, a.button')];"
            " const name = (x) => x.getAttribute('aria-label') || x.innerText.trim();"
            f" const b = all.find((x) => name(x) === {json.dumps(label)});"
            " if (!b) return false; b.click(); return true; })()"
        )
        if not await self.wait_for(script):
            raise AssertionError(f"no button {label!r}")

    async def go(self, hash_: str) -> None:
        """Navigate the console to ``#/screen/...`` and wait until that screen is drawn."""
        screen = hash_.lstrip("#/").split("/")[0]
        await self.evaluate(f"location.hash = {json.dumps(hash_)}")
        await self.wait_for(
            "(() => { const a = document.querySelector('#nav a[aria-current=page]');"
            f" return a && a.dataset.screen === {json.dumps(screen)}"
            " && document.querySelector('#screen .screen-title') !== null; })()"
        )

    def errors(self) -> list[str]:
        """Uncaught script errors and CSP violations Chromium logged so far."""
        lines = bytes(self.devtools.log).decode("utf-8", "replace").splitlines()
        return [
            line
            for line in lines
            if "Uncaught" in line or "Content Security Policy" in line or "SyntaxError" in line
        ]


async def open_page(test: TestCase, url: str) -> Page:
    """Start Chromium with a fresh profile and open ``url`` in a new tab."""
    profile = fresh_profile(test)
    devtools = _DevTools()
    transport = _REACTOR.spawnProcess(
        devtools,
        CHROMIUM,
        [CHROMIUM, *PAGE_FLAGS, f"--user-data-dir={profile}"],
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
