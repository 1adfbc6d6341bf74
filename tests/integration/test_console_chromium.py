"""The web console in headless Chromium against a real daemon: every screen, driven.

Each test starts ``twistd oauthproxy`` (embedded redis-server,
:func:`tests.support.daemon.start_daemon`), signs in by typing the admin token
into the form, and works a screen as an operator would: create, edit, delete,
filter, follow.  Screenshots of each screen are kept as test artefacts in
``screenshots/`` under the trial working directory (``_trial_temp/screenshots/``,
or ``_trial_temp/N/screenshots/`` with ``-jN``).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.support.chromium import Page, sign_in
from tests.support.daemon import DaemonProcess, start_daemon

_REACTOR: Any = reactor
SCREENS = (
    "proxies",
    "routes",
    "certificates",
    "services",
    "tokens",
    "auth",
    "oauth",
    "logs",
    "health",
)


def screenshot_path(name: str) -> str:
    """Where the screenshot ``name`` is kept (created on first use)."""
    folder = os.path.abspath("screenshots")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, name)


async def settle(seconds: float = 0.3) -> None:
    """Give the page (and the daemon's event stream) a moment."""
    await deferLater(_REACTOR, seconds, lambda: None)


class ConsoleTestCase(TestCase):
    """A daemon and the console signed in with its admin token."""

    timeout = 180
    daemon: DaemonProcess
    token: str
    page: Page
    daemon_args: tuple[str, ...] = ()

    async def setUp(self) -> None:
        """Start the daemon; sign in."""
        self.daemon = await start_daemon(self, args=self.daemon_args)
        token = self.daemon.admin_token
        assert token is not None
        self.token = token
        self.page = await sign_in(self, self.daemon.api_url + "/", token)
        await self.page.wait_for("!document.getElementById('screen').hidden")

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call the admin API as the admin (to arrange or check state)."""
        if method == "GET":
            return await self.daemon.get(path, self.token)
        if method == "POST":
            return await self.daemon.post(path, body, self.token)
        raise ValueError(method)

    def assertNoPageErrors(self) -> None:
        """No uncaught script error or CSP violation so far."""
        self.assertEqual(self.page.errors(), [])


class ShellTests(ConsoleTestCase):
    """Navigation, sign-in and sign-out."""

    async def test_every_screen_renders_without_errors(self) -> None:
        """Each screen of the navigation shows its title and no script error; screenshots."""
        for name in SCREENS:
            await self.page.go(f"#/{name}")
            await settle(0.5)
            title = await self.page.evaluate("document.querySelector('.screen-title').innerText")
            self.assertTrue(title, name)
            current = await self.page.evaluate(
                "document.querySelector('#nav a[aria-current=page]').dataset.screen"
            )
            self.assertEqual(current, name)
            await self.page.screenshot(screenshot_path(f"screen-{name}.png"), full=True)
        self.assertNoPageErrors()

    async def test_token_is_kept_in_session_storage_only(self) -> None:
        """The token is in sessionStorage; not in a cookie, the URL, localStorage or the DOM."""
        kept = await self.page.evaluate("sessionStorage.getItem('oauthproxy.token')")
        self.assertEqual(kept, self.token)
        self.assertEqual(await self.page.evaluate("document.cookie"), "")
        self.assertEqual(await self.page.evaluate("localStorage.length"), 0)
        self.assertNotIn(self.token, await self.page.evaluate("location.href"))
        self.assertNotIn(self.token, await self.page.dom())

    async def test_sign_out_and_unknown_token(self) -> None:
        """Sign out shows the prompt; an unknown token brings it back with the reason."""
        await self.page.click("#sign-out")
        await self.page.wait_for("!document.getElementById('login').hidden")
        self.assertEqual(await self.page.evaluate("document.activeElement.id"), "token-input")
        self.assertIsNone(await self.page.evaluate("sessionStorage.getItem('oauthproxy.token')"))
        await self.page.type_into("token-input", "acm_not_a_real_token_at_all_0000")
        await self.page.click("#login-form button")
        await self.page.wait_text("not accepted", "#login-error")
        self.assertTrue(await self.page.evaluate("document.getElementById('nav').hidden"))
        await self.page.screenshot(screenshot_path("sign-in.png"))

    async def test_revoked_token_mid_session_returns_to_the_prompt(self) -> None:
        """When the token stops being valid, the next call's 401 shows the prompt again."""
        status, issued = await self.api(
            "POST", "/tokens/", {"name": "temp", "owner_email": "t@example.test"}
        )
        self.assertEqual(status, 201)
        await self.page.click("#sign-out")
        for _ in range(50):  # until the daemon knows the new token (event stream)
            if (await self.daemon.get("/whoami", issued["token"]))[0] == 200:
                break
            await settle(0.1)
        self.page = await sign_in(self, self.daemon.api_url + "/", issued["token"])
        await self.page.wait_text("Signed in as temp")
        self.assertEqual(await self.daemon.delete("/tokens/temp", self.token), 204)
        await settle(0.5)
        await self.page.click_button("Refresh", "#screen")
        await self.page.wait_for("!document.getElementById('login').hidden")
        self.assertNoPageErrors()

    async def test_non_admin_token_sees_its_own_screens(self) -> None:
        """A non-admin token gets no OAuth or request-log screens, and only itself as token."""
        status, issued = await self.api(
            "POST", "/tokens/", {"name": "bob", "owner_email": "bob@example.test"}
        )
        self.assertEqual(status, 201)
        for _ in range(50):
            if (await self.daemon.get("/whoami", issued["token"]))[0] == 200:
                break
            await settle(0.1)
        page = await sign_in(self, self.daemon.api_url + "/", issued["token"])
        await page.wait_text("Signed in as bob")
        hidden = await page.evaluate(
            "[...document.querySelectorAll('#nav li')].filter((li) => li.hidden)"
            ".map((li) => li.querySelector('a').dataset.screen)"
        )
        self.assertEqual(sorted(hidden), ["logs", "oauth"])
        await page.go("#/tokens")
        await page.wait_text("bob@example.test", "#screen")
        self.assertNotIn("admin@", await page.text("#screen"))
        await page.go("#/logs")
        await page.wait_text("needs the admin token", "#screen")
