"""The web console in headless Chromium against a real daemon: every screen, driven.

Each test starts ``twistd oauthproxy`` (embedded redis-server,
:func:`tests.support.daemon.start_daemon`), signs in by typing the admin token
into the form, and works a screen as an operator would: create, edit, delete,
filter, follow.  Screenshots of each screen are kept as test artefacts in
``screenshots/`` under the trial working directory (``_trial_temp/screenshots/``,
or ``_trial_temp/N/screenshots/`` with ``-jN``).
"""

from __future__ import annotations

import json
import os
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.support.backends import start_backend
from tests.support.chromium import Page, sign_in
from tests.support.daemon import DaemonProcess, free_port, start_daemon

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


async def hold_back_first_answer(page: Page, fragment: str, seconds: float = 1.5) -> None:
    """Make the page's next API answer whose path contains ``fragment`` arrive
    ``seconds`` late, as on a slow link (the answers after it are not held)."""
    await page.evaluate(
        f"""(() => {{
          const real = window.fetch;
          let first = true;
          window.fetch = async (path, init) => {{
            const answer = await real(path, init);
            if (first && String(path).includes({json.dumps(fragment)})) {{
              first = false;
              await new Promise((ok) => setTimeout(ok, {seconds * 1000}));
            }}
            return answer;
          }};
        }})()"""
    )


class ConsoleTestCase(TestCase):
    """A daemon and the console signed in with its admin token."""

    timeout = 180
    daemon: DaemonProcess
    token: str
    page: Page

    def arguments(self) -> list[str]:
        """Extra ``twistd oauthproxy`` arguments (none: the admin API only)."""
        return []

    def environment(self) -> dict[str, str]:
        """Extra settings for the daemon (none)."""
        return {}

    async def setUp(self) -> None:
        """Start the daemon; sign in."""
        self.daemon = await start_daemon(self, args=self.arguments(), env=self.environment())
        for _ in range(50):  # the token line may be read after /health answered
            token = self.daemon.admin_token
            if token is not None:
                break
            await settle(0.1)
        assert token is not None, "\n".join(self.daemon.output[-20:])
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


class ProxyScreenTests(ConsoleTestCase):
    """Proxies: create, edit every kind of setting, delete with what goes along."""

    async def create_proxy(self, hostname: str, target: str, https: bool = False) -> None:
        """Fill and submit the Add a proxy form."""
        await self.page.go("#/proxies")
        await self.page.evaluate("document.querySelector('#screen details').open = true")
        await self.page.fill("proxy-create-hostname", hostname)
        await self.page.fill("proxy-create-target_url", target)
        await self.page.check("proxy-create-enable_https", https)
        await self.page.submit("proxy-create")
        await self.page.wait_text("Added proxy " + hostname)

    async def test_create_shows_the_proxy_and_field_errors(self) -> None:
        """A bad hostname gets the API's words at its field; a good one is listed."""
        await self.page.go("#/proxies")
        await self.page.evaluate("document.querySelector('#screen details').open = true")
        await self.page.fill("proxy-create-hostname", "not a hostname")
        await self.page.fill("proxy-create-target_url", "http://127.0.0.1:8081")
        await self.page.submit("proxy-create")
        await self.page.wait_text("must be a DNS name such as", "#proxy-create-hostname-error")
        invalid = "document.getElementById('proxy-create-hostname').getAttribute('aria-invalid')"
        self.assertEqual(await self.page.evaluate(invalid), "true")
        self.assertEqual(
            await self.page.evaluate("document.activeElement.id"), "proxy-create-hostname"
        )
        await self.page.screenshot(screenshot_path("proxies-field-error.png"), full=True)
        await self.page.fill("proxy-create-hostname", "new.example.test")
        await self.page.submit("proxy-create")
        await self.page.wait_text("new.example.test", "#screen table")
        status, stored = await self.api("GET", "/proxy/targets/new.example.test")
        self.assertEqual((status, stored["target_url"]), (200, "http://127.0.0.1:8081"))
        self.assertNoPageErrors()

    async def test_https_proxy_says_what_the_fallback_certificate_is(self) -> None:
        """Creating an HTTPS proxy tells about the self-signed fallback and HTTP-only trials."""
        await self.create_proxy("secure.example.test", "http://127.0.0.1:8081", https=True)
        notice = await self.page.text("#screen .notice")
        self.assertIn("self-signed", notice)
        self.assertIn("turn HTTPS off", notice)

    async def test_edit_every_setting(self) -> None:
        """The edit page saves target, transport, timeouts, headers, route mode and auth."""
        await self.create_proxy("edit.example.test", "http://127.0.0.1:8081")
        await self.page.click_button("Edit proxy edit.example.test")
        await self.page.wait_text("Proxy edit.example.test", "#screen h2")
        await self.page.fill("proxy-settings-target_url", "http://127.0.0.1:9099/base")
        await self.page.check("proxy-settings-preserve_host_header", False)
        await self.page.fill("proxy-settings-read_timeout", "7.5")
        await self.page.fill("proxy-settings-custom_request_headers", "X-Team: ops\nX-Env: test")
        await self.page.fill("proxy-settings-custom_response_headers", "X-Served-By: oauthproxy")
        await self.page.choose("proxy-settings-route_mode", "selective")
        await self.page.submit("proxy-settings")
        await self.page.wait_text("Settings saved.")
        status, proxy = await self.api("GET", "/proxy/targets/edit.example.test")
        self.assertEqual(status, 200)
        self.assertEqual(proxy["target_url"], "http://127.0.0.1:9099/base")
        self.assertFalse(proxy["preserve_host_header"])
        self.assertEqual(proxy["read_timeout"], 7.5)
        self.assertEqual(proxy["custom_request_headers"], {"X-Team": "ops", "X-Env": "test"})
        self.assertEqual(proxy["custom_response_headers"], {"X-Served-By": "oauthproxy"})
        self.assertEqual(proxy["route_mode"], "selective")
        # auth: allowlist and excluded paths
        await self.page.choose("proxy-auth-auth_type", "bearer")
        await self.page.fill("proxy-auth-excluded_paths", "/health, /public/*")
        await self.page.submit("proxy-auth")
        await self.page.wait_text("Auth saved.")
        status, auth = await self.api("GET", "/proxy/targets/edit.example.test/auth")
        self.assertEqual(auth["auth"]["auth_type"], "bearer")
        self.assertEqual(auth["auth"]["excluded_paths"], ["/health", "/public/*"])
        # OAuth protected resource metadata
        await self.page.fill("proxy-resource-scopes_supported", "read, write")
        await self.page.fill("proxy-resource-resource_name", "Edit API")
        await self.page.submit("proxy-resource")
        await self.page.wait_text("Protected resource metadata saved.")
        status, resource = await self.api("GET", "/proxy/targets/edit.example.test/resource")
        self.assertEqual(resource["resource"]["scopes_supported"], ["read", "write"])
        self.assertEqual(resource["resource"]["resource_name"], "Edit API")
        await self.page.screenshot(screenshot_path("proxy-edit.png"), full=True)
        self.assertNoPageErrors()

    async def test_a_slow_load_does_not_overwrite_what_was_typed(self) -> None:
        """The edit page is drawn with its OAuth metadata loaded: a late answer cannot
        clear a field the operator has already filled."""
        await self.create_proxy("slow.example.test", "http://127.0.0.1:8081")
        status, _ = await self.api(
            "POST",
            "/proxy/targets/slow.example.test/oauth-server",
            {"issuer": "https://old.example.test"},
        )
        self.assertEqual(status, 200)
        await hold_back_first_answer(self.page, "/oauth-server")
        await self.page.go("#/proxies/slow.example.test")
        await self.page.fill("proxy-oauth-server-issuer", "https://new.example.test")
        await settle(2.0)  # a held-back answer has arrived by now
        typed = "document.getElementById('proxy-oauth-server-issuer').value"
        self.assertEqual(await self.page.evaluate(typed), "https://new.example.test")
        self.assertNoPageErrors()

    async def test_bad_header_line_is_refused_at_its_field(self) -> None:
        """A header line without a colon is named at the headers field, nothing is sent."""
        await self.create_proxy("hdr.example.test", "http://127.0.0.1:8081")
        await self.page.go("#/proxies/hdr.example.test")
        await self.page.fill("proxy-settings-custom_request_headers", "no colon here")
        await self.page.submit("proxy-settings")
        await self.page.wait_text("has no colon", "#proxy-settings-custom_request_headers-error")

    async def test_delete_says_what_goes_and_takes_it_along(self) -> None:
        """The confirmation lists the lone route; confirming deletes proxy and route."""
        await self.create_proxy("gone.example.test", "http://127.0.0.1:8081")
        status, _ = await self.api(
            "POST",
            "/routes/",
            {
                "route_id": "lone",
                "path_pattern": "/api/",
                "target_type": "port",
                "target_value": "9001",
                "scope": "proxy",
                "proxy_hostnames": ["gone.example.test"],
            },
        )
        self.assertEqual(status, 201)
        await self.page.click_button("Delete proxy gone.example.test")
        await self.page.wait_for("document.querySelector('dialog[open]') !== null")
        dialog = await self.page.text("dialog[open]")
        self.assertIn("route lone (scoped to this proxy only) is deleted", dialog)
        await self.page.screenshot(screenshot_path("proxy-delete-confirm.png"))
        await self.page.click_button("Delete gone.example.test", "dialog[open]")
        await self.page.wait_text("Deleted proxy gone.example.test")
        self.assertEqual((await self.api("GET", "/proxy/targets/gone.example.test"))[0], 404)
        self.assertEqual((await self.api("GET", "/routes/lone"))[0], 404)

    async def test_escape_cancels_the_delete(self) -> None:
        """The dialog is keyboard-usable: Escape cancels and nothing is deleted."""
        await self.create_proxy("kept.example.test", "http://127.0.0.1:8081")
        await self.page.click_button("Delete proxy kept.example.test")
        await self.page.wait_for("document.querySelector('dialog[open]') !== null")
        self.assertEqual(await self.page.evaluate("document.activeElement.innerText"), "Cancel")
        await self.page.press("Escape")
        await self.page.wait_for("document.querySelector('dialog') === null")
        self.assertEqual((await self.api("GET", "/proxy/targets/kept.example.test"))[0], 200)


class RouteScreenTests(ConsoleTestCase):
    """Routes: the tester, create, edit (with route auth), delete."""

    async def test_which_route_wins_and_route_lifecycle(self) -> None:
        """Create a route in the form, see it win in the tester, edit it, delete it."""
        status, _ = await self.api(
            "POST",
            "/proxy/targets/",
            {
                "hostname": "app.example.test",
                "target_url": "http://127.0.0.1:8080",
                "enable_https": False,
            },
        )
        self.assertEqual(status, 201)
        await self.page.go("#/routes")
        await self.page.evaluate("document.querySelector('#screen details').open = true")
        await self.page.fill("route-create-path_pattern", "/api/")
        await self.page.choose("route-create-target_type", "port")
        await self.page.fill("route-create-target_value", "9001")
        await self.page.fill("route-create-priority", "80")
        await self.page.fill("route-create-methods", "GET, POST")
        await self.page.submit("route-create")
        await self.page.wait_text("Added route")
        route_id = (await self.page.text("#screen .notice")).split("Added route ")[1].rstrip(".")
        await settle(0.5)  # the tester reads this daemon's snapshot: let the event arrive
        await self.page.fill("route-test-host", "app.example.test")
        await self.page.fill("route-test-path", "/api/items?x=1")
        await self.page.choose("route-test-scheme", "http")
        await self.page.submit("route-test")
        await self.page.wait_text("Forwarded by route " + route_id, "#route-test-result")
        result = await self.page.text("#route-test-result")
        self.assertIn("http://127.0.0.1:9001/api/items?x=1", result)
        await self.page.screenshot(screenshot_path("routes-tester.png"), full=True)
        # a method the route does not take falls through to the proxy's target
        await self.page.choose("route-test-method", "DELETE")
        await self.page.submit("route-test")
        await self.page.wait_text("Forwarded to the proxy's own target", "#route-test-result")
        # edit: priority and the route's own auth
        await self.page.click_button("Edit route " + route_id)
        await self.page.wait_text("Route " + route_id, "#screen h2")
        await self.page.fill("route-edit-priority", "90")
        await self.page.submit("route-edit")
        await self.page.wait_text("Route saved.")
        await self.page.choose("route-auth-auth_type", "admin")
        await self.page.check("route-auth-override_proxy_auth", True)
        await self.page.submit("route-auth")
        await self.page.wait_text("Route auth saved.")
        status, route = await self.api("GET", f"/routes/{route_id}")
        self.assertEqual((route["priority"], route["auth"]["auth_type"]), (90, "admin"))
        await self.page.click_button("Delete route " + route_id)
        await self.page.click_button("Delete " + route_id, "dialog[open]")
        await self.page.wait_for("location.hash === '#/routes'")
        self.assertEqual((await self.api("GET", f"/routes/{route_id}"))[0], 404)
        self.assertNoPageErrors()


class CertificateScreenTests(ConsoleTestCase):
    """Certificates: create (several names), follow the order, renew, convert, attach."""

    async def test_order_progress_last_error_and_actions(self) -> None:
        """An order the CA cannot serve shows its failure and advice; renew, convert, attach."""
        created, _ = await self.api(
            "POST",
            "/proxy/targets/",
            {
                "hostname": "a.example.test",
                "target_url": "http://127.0.0.1:8080",
                "enable_https": False,
            },
        )
        self.assertEqual(created, 201)
        await self.page.go("#/certificates")
        await self.page.evaluate("document.querySelector('#screen details').open = true")
        await self.page.fill("cert-create-cert_name", "shared")
        await self.page.fill("cert-create-domains", "a.example.test, b.example.test")
        await self.page.check("cert-create-staging", True)
        await self.page.submit("cert-create")
        await self.page.wait_text("Ordering shared for a.example.test, b.example.test")
        # the test daemon's ACME directory is a closed port: the order fails, with its reason
        await self.page.wait_text("failed", "#screen table", seconds=60)
        row = await self.page.text('#screen tr[data-key="shared"]')
        self.assertIn("a.example.test, b.example.test", row)
        self.assertIn("staging", row)
        await self.page.screenshot(screenshot_path("certificates.png"), full=True)
        await self.page.go("#/certificates/shared")
        await self.page.wait_text("Last error:", "#cert-progress")
        self.assertIn("port 80", await self.page.text("#cert-progress"))
        await self.page.click_button("Attach certificate to a.example.test")
        await self.page.wait_text("Attached to a.example.test.")
        _, proxy = await self.api("GET", "/proxy/targets/a.example.test")
        self.assertEqual(proxy["cert_name"], "shared")
        await self.page.screenshot(screenshot_path("certificate-detail.png"), full=True)
        await self.page.click_button("To production certificate shared")
        await self.page.click_button("Convert to production", "dialog[open]")
        await self.page.wait_text("shared is being ordered from production.")
        _status, cert = await self.api("GET", "/certificates/shared")
        self.assertFalse(cert["staging"])
        await self.page.click_button("Renew certificate shared")
        await self.page.wait_text("Renewal of shared started.")
        self.assertNoPageErrors()


class ServiceTokenAuthScreenTests(ConsoleTestCase):
    """External services, tokens and auth rules."""

    async def test_external_service_create_edit_delete(self) -> None:
        """A service is added, its URL changed and deleted from the console."""
        await self.page.go("#/services")
        await self.page.evaluate("document.querySelector('#screen details').open = true")
        await self.page.fill("service-create-name", "backend")
        await self.page.fill("service-create-target_url", "http://127.0.0.1:8085")
        await self.page.submit("service-create")
        await self.page.wait_text("Added service backend")
        await self.page.click_button("Edit service backend")
        await self.page.fill("service-edit-target_url", "http://127.0.0.1:8086")
        await self.page.submit("service-edit")
        await self.page.wait_text("Saved service backend.")
        _status, service = await self.api("GET", "/services/external/backend")
        self.assertEqual(service["target_url"], "http://127.0.0.1:8086")
        await self.page.screenshot(screenshot_path("services.png"), full=True)
        await self.page.click_button("Delete service backend")
        await self.page.click_button("Delete backend", "dialog[open]")
        await self.page.wait_text("Deleted service backend.")
        self.assertEqual((await self.api("GET", "/services/external/backend"))[0], 404)

    async def test_token_shown_once_rotated_and_deleted(self) -> None:
        """A new token's value is shown once and works; rotation replaces it; delete revokes."""
        await self.page.go("#/tokens")
        await self.page.evaluate("document.querySelector('#screen details').open = true")
        await self.page.fill("token-create-name", "ci")
        await self.page.fill("token-create-owner_email", "ci@example.test")
        await self.page.submit("token-create")
        await self.page.wait_for("document.querySelector('dialog[open] input.secret') !== null")
        value = await self.page.evaluate(
            "document.querySelector('dialog[open] input.secret').value"
        )
        self.assertTrue(value.startswith("acm_"))
        await self.page.screenshot(screenshot_path("token-secret.png"))
        await self.page.click_button("I have stored it", "dialog[open]")
        await self.page.wait_text("Created token ci.")
        self.assertNotIn(value, await self.page.dom())
        for _ in range(50):
            status, me = await self.daemon.get("/whoami", value)
            if status == 200:
                break
            await settle(0.1)
        self.assertEqual(me, {"name": "ci", "is_admin": False})
        await self.page.click_button("Rotate token ci")
        await self.page.click_button("Rotate ci", "dialog[open]")
        await self.page.wait_for("document.querySelector('dialog[open] input.secret') !== null")
        rotated = await self.page.evaluate(
            "document.querySelector('dialog[open] input.secret').value"
        )
        self.assertNotEqual(rotated, value)
        await self.page.click_button("I have stored it", "dialog[open]")
        await self.page.click_button("Delete token ci")
        await self.page.click_button("Delete ci", "dialog[open]")
        await self.page.wait_text("Deleted token ci.")
        self.assertEqual((await self.api("GET", "/tokens/ci"))[0], 404)

    async def test_auth_rule_and_the_auth_test_tool(self) -> None:
        """A rule opening /health is created, decides the test, is edited and deleted."""
        await self.page.go("#/auth")
        await self.page.evaluate("document.querySelector('#screen details').open = true")
        await self.page.fill("rule-create-config_id", "public-health")
        await self.page.fill("rule-create-path_pattern", "/health")
        await self.page.choose("rule-create-auth_type", "none")
        await self.page.fill("rule-create-methods", "GET")
        await self.page.submit("rule-create")
        await self.page.wait_text("Added rule public-health.")
        await self.page.fill("auth-test-path", "/health")
        await self.page.submit("auth-test")
        await self.page.wait_text("anyone (public)", "#auth-test-result")
        self.assertIn("rule public-health", await self.page.text("#auth-test-result"))
        await self.page.fill("auth-test-path", "/tokens/ci")
        await self.page.choose("auth-test-method", "DELETE")
        await self.page.submit("auth-test")
        await self.page.wait_text("any API token", "#auth-test-result")
        await self.page.screenshot(screenshot_path("auth-rules.png"), full=True)
        await self.page.click_button("Edit rule public-health")
        await self.page.fill("rule-edit-priority", "90")
        await self.page.submit("rule-edit")
        await self.page.wait_text("Saved rule public-health.")
        _status, rule = await self.api("GET", "/auth/endpoints/public-health")
        self.assertEqual(rule["priority"], 90)
        await self.page.click_button("Delete rule public-health")
        await self.page.click_button("Delete public-health", "dialog[open]")
        await self.page.wait_text("Deleted rule public-health.")
        self.assertNoPageErrors()


class OAuthAndHealthScreenTests(ConsoleTestCase):
    """OAuth clients and revocation; health and its advice."""

    async def test_client_registered_secret_shown_once_then_deleted(self) -> None:
        """A confidential client's secret is shown once; the client is listed and deleted."""
        await self.page.go("#/oauth")
        await self.page.evaluate("document.querySelector('#screen details').open = true")
        await self.page.fill("client-create-client_name", "Reports")
        await self.page.fill("client-create-redirect_uris", "https://reports.example.test/cb")
        await self.page.choose("client-create-token_endpoint_auth_method", "client_secret_basic")
        await self.page.submit("client-create")
        await self.page.wait_for("document.querySelector('dialog[open] input.secret') !== null")
        await self.page.click_button("I have stored it", "dialog[open]")
        await self.page.wait_text("Registered client Reports")
        await self.page.wait_text("Reports", "#screen table")
        await self.page.fill("oauth-revoke-username", "alice")
        await self.page.submit("oauth-revoke")
        await self.page.click_button("Revoke", "dialog[open]")
        await self.page.wait_text("Revoked 0 sessions and 0 access tokens.")
        await self.page.screenshot(screenshot_path("oauth.png"), full=True)
        await self.page.click_button("Delete client Reports")
        await self.page.click_button("Revoke", "dialog[open]")
        await self.page.wait_text("Revoked.")
        _status, clients = await self.api("GET", "/oauth/clients")
        self.assertEqual(clients["items"], [])
        self.assertNoPageErrors()

    async def test_health_shows_state_and_advice(self) -> None:
        """Redis connected, listeners listed; a failed certificate brings advice."""
        status, _ = await self.api(
            "POST", "/certificates/", {"cert_name": "bad", "domain": "bad.example.test"}
        )
        self.assertEqual(status, 201)
        for _ in range(100):
            if (await self.api("GET", "/certificates/bad"))[1]["status"] == "failed":
                break
            await settle(0.2)
        await self.page.go("#/health")
        await self.page.wait_text("connected", "#screen")
        text = await self.page.text("#screen")
        self.assertIn("api", text)
        self.assertIn("Failed orders: bad", text)
        self.assertIn("port 80 must reach its HTTP listener", text)
        # this daemon has no OAuth issuer: the card says so and what to set
        self.assertIn("OAuth is off on this daemon", text)
        await self.page.screenshot(screenshot_path("health.png"), full=True)


class RequestLogScreenTests(ConsoleTestCase):
    """The request log: filters, a record's detail, follow, charts, over real traffic."""

    def arguments(self) -> list[str]:
        """An HTTP listener on a free loopback port."""
        self.http_port = free_port()
        return ["--http", f"tcp:{self.http_port}:interface=127.0.0.1"]

    async def traffic(self, host: str, paths: list[str]) -> None:
        """Send GETs for ``paths`` through the gateway to ``host``."""
        for path in paths:
            response = await treq.get(
                f"http://127.0.0.1:{self.http_port}{path}",
                headers={"Host": [host]},
                pool=self.daemon.pool,
                timeout=10,
            )
            await treq.content(response)

    async def test_a_late_answer_does_not_replace_a_newer_search(self) -> None:
        """The screen's first (unfiltered) search answering after a filtered one is dropped."""
        backend = await start_backend(self, _REACTOR)
        status, _ = await self.api(
            "POST",
            "/proxy/targets/",
            {"hostname": "one.example.test", "target_url": backend.url, "enable_https": False},
        )
        self.assertEqual(status, 201)
        await settle(0.5)
        await self.traffic("one.example.test", ["/a", "/b", "/status/503"])
        await settle(1.5)  # the request log is written once a second
        await hold_back_first_answer(self.page, "/logs/search")
        await self.page.go("#/logs")
        await self.page.wait_for("document.getElementById('log-filter-status_class')")
        await self.page.choose("log-filter-status_class", "5xx")
        await self.page.submit("log-filter")
        await self.page.wait_text("1 requests shown", "#log-count")
        await settle(2.0)  # the held-back answer has arrived by now
        self.assertIn("1 requests shown", await self.page.text("#log-count"))
        self.assertNoPageErrors()

    async def test_filter_detail_follow_and_charts(self) -> None:
        """Known traffic is found by status class and host, followed live and charted."""
        backend = await start_backend(self, _REACTOR)
        for host in ("one.example.test", "two.example.test"):
            status, _ = await self.api(
                "POST",
                "/proxy/targets/",
                {"hostname": host, "target_url": backend.url, "enable_https": False},
            )
            self.assertEqual(status, 201)
        await settle(0.5)
        await self.traffic("one.example.test", ["/a", "/b", "/status/503"])
        await self.traffic("two.example.test", ["/c", "/status/404"])
        await settle(1.5)  # the request log is written once a second
        await self.page.go("#/logs")
        await self.page.wait_text("5 requests shown", "#log-count")
        await self.page.choose("log-filter-status_class", "5xx")
        await self.page.submit("log-filter")
        await self.page.wait_text("1 requests shown", "#log-count")
        self.assertIn("/status/503", await self.page.text("#screen table"))
        await self.page.choose("log-filter-status_class", "")
        await self.page.fill("log-filter-host", "two.example.test")
        await self.page.submit("log-filter")
        await self.page.wait_text("2 requests shown", "#log-count")
        rows = await self.page.text("#screen table tbody")
        self.assertIn("/c", rows)
        self.assertNotIn("one.example.test", rows)
        # a record's detail
        await self.page.evaluate("document.querySelector('#screen table tbody button').click()")
        await self.page.wait_text("Correlation id", "#log-detail")
        self.assertIn("two.example.test", await self.page.text("#log-detail"))
        # follow: new matching requests appear without searching again
        await self.page.click("#log-follow")
        await self.page.wait_text("following", "#log-count")
        await settle(1.2)
        await self.traffic("two.example.test", ["/followed"])
        await self.traffic("one.example.test", ["/not-this-host"])
        await self.page.wait_text("/followed", "#screen table", seconds=20)
        self.assertNotIn("/not-this-host", await self.page.text("#screen table"))
        await self.page.click("#log-follow")
        # charts: the hour's traffic by status class and the top lists
        await self.page.click_button("Refresh charts")
        await self.page.wait_text("one.example.test", "#log-charts")
        charts = await self.page.text("#log-charts")
        self.assertIn("Requests per second by status class", charts)
        self.assertIn("Top client IPs", charts)
        self.assertIn("HTTP 503", charts)
        self.assertEqual(
            await self.page.evaluate("document.querySelectorAll('#log-charts canvas').length"), 2
        )
        await self.page.screenshot(screenshot_path("request-log.png"), full=True)
        self.assertNoPageErrors()
