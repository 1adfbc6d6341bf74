"""The seed README's tasks, done from the web console alone, in headless Chromium.

One operator session against a real daemon (embedded Redis, an HTTP listener, an
OAuth issuer configured, ACME pointed at a closed port so orders fail visibly):
sign in; the OAuth server's proxy with a staging certificate and its metadata;
converting to production; the main site; a protected service (external service,
proxy, OAuth protection in redirect mode, checked through the gateway); the
endpoint, route and proxy auth examples; an HTTP-only proxy; routes to a named
service; per-proxy OAuth server metadata set, shown and cleared; a multi-domain
certificate attached to two proxies; an OAuth client registered and the OAuth
counters; the request log by IP, host, errors, a request's detail and the live
tail; health; and the troubleshooting steps (show a certificate, a proxy, delete
a redundant route).  Every step goes through the console's forms and buttons;
the admin API is only read, to check what the console did.
"""

from __future__ import annotations

from typing import Any

import treq
from twisted.internet import reactor

from tests.integration.test_console_chromium import ConsoleTestCase, screenshot_path, settle
from tests.support.backends import start_backend
from tests.support.daemon import free_port

_REACTOR: Any = reactor
DOMAIN = "example.test"


class SeedWalkthroughTests(ConsoleTestCase):
    """Every task of the seed's README, from the console."""

    timeout = 300

    def arguments(self) -> list[str]:
        """An HTTP listener on a free loopback port."""
        self.http_port = free_port()
        return ["--http", f"tcp:{self.http_port}:interface=127.0.0.1"]

    def environment(self) -> dict[str, str]:
        """An OAuth issuer and a (never called) GitHub app, so OAuth can be enabled."""
        return {
            "OAUTHPROXY_OAUTH_ISSUER": f"https://auth.{DOMAIN}",
            "GITHUB_CLIENT_ID": "walkthrough-client",
            "GITHUB_CLIENT_SECRET": "walkthrough-secret",
            "ADMIN_EMAIL": f"ops@{DOMAIN}",
        }

    async def open_create(self) -> None:
        """Open the screen's "Add ..." box."""
        await self.page.evaluate("document.querySelector('#screen details').open = true")

    async def add_proxy(self, hostname: str, target: str, https: bool, staging: bool) -> None:
        """Proxies screen: fill and submit the create form."""
        await self.page.go("#/proxies")
        await self.open_create()
        await self.page.fill("proxy-create-hostname", hostname)
        await self.page.fill("proxy-create-target_url", target)
        await self.page.check("proxy-create-enable_https", https)
        await self.page.check("proxy-create-staging", staging)
        await self.page.submit("proxy-create")
        await self.page.wait_text("Added proxy " + hostname)

    async def stored(self, path: str) -> Any:
        """A record from the admin API (200 expected)."""
        status, body = await self.api("GET", path)
        self.assertEqual(status, 200, f"{path}: {body}")
        return body

    async def through_gateway(self, host: str, path: str = "/") -> int:
        """A request through the gateway's HTTP listener; its status."""
        response = await treq.get(
            f"http://127.0.0.1:{self.http_port}{path}",
            headers={"Host": [host]},
            pool=self.daemon.pool,
            timeout=10,
            allow_redirects=False,
        )
        await treq.content(response)
        code: int = response.code
        return code

    async def test_the_seed_readme_from_the_console(self) -> None:
        """Production deployment, basic usage, advanced usage and troubleshooting."""
        page = self.page
        backend = await start_backend(self, _REACTOR)
        auth_host, main_host, service_host = f"auth.{DOMAIN}", DOMAIN, f"service.{DOMAIN}"

        # Step 3: the OAuth server's proxy, staging certificate, then its metadata
        await self.add_proxy(auth_host, self.daemon.api_url, https=True, staging=True)
        self.assertTrue((await self.stored(f"/proxy/targets/{auth_host}"))["staging"])
        await page.go(f"#/proxies/{auth_host}")
        await page.fill("proxy-oauth-server-issuer", f"https://{auth_host}")
        await page.submit("proxy-oauth-server")
        await page.wait_text("Authorization server metadata saved.")
        server = await self.stored(f"/proxy/targets/{auth_host}/oauth-server")
        self.assertEqual(server["oauth_server"]["issuer"], f"https://{auth_host}")
        # "once verified, recreate with production certificate": switch it off staging
        await page.check("proxy-settings-staging", False)
        await page.submit("proxy-settings")
        await page.wait_text("Settings saved.")
        self.assertFalse((await self.stored(f"/proxy/targets/{auth_host}"))["staging"])

        # Step 4: the main website proxy (staging, then production by delete and create)
        await self.add_proxy(main_host, backend.url, https=True, staging=True)
        await page.click_button(f"Delete proxy {main_host}")
        await page.click_button(f"Delete {main_host}", "dialog[open]")
        await page.wait_text(f"Deleted proxy {main_host}.")
        await self.add_proxy(main_host, backend.url, https=True, staging=False)
        self.assertFalse((await self.stored(f"/proxy/targets/{main_host}"))["staging"])

        # Step 5: a protected service: external service, proxy, OAuth in redirect mode
        await page.go("#/services")
        await self.open_create()
        await page.fill("service-create-name", "my-service")
        await page.fill("service-create-target_url", backend.url)
        await page.fill("service-create-description", "My Service")
        await page.submit("service-create")
        await page.wait_text("Added service my-service")
        await self.add_proxy(service_host, backend.url, https=False, staging=False)
        self.assertEqual(await self.through_gateway(service_host), 200)
        await page.go(f"#/proxies/{service_host}")
        await page.choose("proxy-auth-auth_type", "oauth")
        await page.choose("proxy-auth-auth_mode", "redirect")
        await page.fill("proxy-auth-auth_proxy", auth_host)
        await page.fill("proxy-auth-required_users", "alice, bob")
        await page.submit("proxy-auth")
        await page.wait_text("Auth saved.")
        auth = (await self.stored(f"/proxy/targets/{service_host}/auth"))["auth"]
        self.assertEqual((auth["auth_type"], auth["auth_mode"]), ("oauth", "redirect"))
        for _ in range(50):  # the gateway applies it from the event stream
            code = await self.through_gateway(service_host)
            if code != 200:
                break
            await settle(0.1)
        self.assertIn(code, (302, 303, 307, 401))
        await page.screenshot(screenshot_path("walkthrough-protected-proxy.png"), full=True)

        # Step 7: verify: health and the proxy list
        await page.go("#/health")
        await page.wait_text("connected", "#screen")
        await page.go("#/proxies")
        for host in (auth_host, main_host, service_host):
            await page.wait_text(host, "#screen table")

        # Flexible authentication: endpoint rules from the seed's curl examples
        await page.go("#/auth")
        for pattern, auth_type, methods, priority, scopes, users in (
            ("/health", "none", "GET", "100", "", ""),
            ("/tokens/*", "admin", "*", "90", "", ""),
            ("/services/*", "oauth", "POST, PUT, DELETE", "80", "service:write", "alice, bob"),
        ):
            await self.open_create()
            await page.fill("rule-create-path_pattern", pattern)
            await page.choose("rule-create-auth_type", auth_type)
            await page.fill("rule-create-methods", methods)
            await page.fill("rule-create-priority", priority)
            await page.fill("rule-create-oauth_scopes", scopes)
            await page.fill("rule-create-oauth_allowed_users", users)
            await page.submit("rule-create")
            await page.wait_text("Added rule")
            await settle(0.2)
        rules = (await self.stored("/auth/endpoints"))["items"]
        self.assertEqual(
            [(r["path_pattern"], r["auth_type"], r["priority"]) for r in rules],
            [("/health", "none", 100), ("/tokens/*", "admin", 90), ("/services/*", "oauth", 80)],
        )
        await page.fill("auth-test-path", "/services/external/x")
        await page.choose("auth-test-method", "POST")
        await page.submit("auth-test")
        await page.wait_text("an OAuth access token", "#auth-test-result")

        # Route configuration: a route to the named service, then its own auth
        await page.go("#/routes")
        await self.open_create()
        await page.fill("route-create-path_pattern", "/api/")
        await page.choose("route-create-target_type", "service")
        await page.fill("route-create-target_value", "my-service")
        await page.fill("route-create-route_id", "backend-api")
        await page.fill("route-create-priority", "90")
        await page.submit("route-create")
        await page.wait_text("Added route backend-api.")
        await page.go("#/routes/backend-api")
        await page.choose("route-auth-auth_type", "admin")
        await page.check("route-auth-override_proxy_auth", True)
        await page.submit("route-auth")
        await page.wait_text("Route auth saved.")
        route = await self.stored("/routes/backend-api")
        self.assertEqual(
            (route["target_type"], route["target_value"], route["auth"]["auth_type"]),
            ("service", "my-service", "admin"),
        )

        # Create a proxy: HTTP only (the seed's "internal.local" example)
        await self.add_proxy("internal.local", backend.url, https=False, staging=False)
        self.assertFalse((await self.stored("/proxy/targets/internal.local"))["enable_https"])

        # Per-proxy OAuth server metadata: set, show, clear
        await page.go(f"#/proxies/{service_host}")
        await page.fill("proxy-oauth-server-issuer", f"https://{auth_host}")
        await page.fill("proxy-oauth-server-scopes_supported", "read, write, admin")
        await page.fill("proxy-oauth-server-claims_supported", "sub, name, email")
        await page.submit("proxy-oauth-server")
        await page.wait_text("Authorization server metadata saved.")
        shown = (await self.stored(f"/proxy/targets/{service_host}/oauth-server"))["oauth_server"]
        self.assertEqual(shown["scopes_supported"], ["read", "write", "admin"])
        await page.click_button("Use the defaults", "#proxy-oauth-server")
        await page.wait_text("Authorization server metadata back to the defaults.")
        cleared = await self.stored(f"/proxy/targets/{service_host}/oauth-server")
        self.assertIsNone(cleared["oauth_server"])

        # Multi-domain certificates: one for api and app, attached to both proxies
        for host in (f"api.{DOMAIN}", f"app.{DOMAIN}"):
            await self.add_proxy(host, backend.url, https=True, staging=False)
        await page.go("#/certificates")
        await self.open_create()
        await page.fill("cert-create-cert_name", "shared-cert")
        await page.fill("cert-create-domains", f"api.{DOMAIN},app.{DOMAIN},www.{DOMAIN}")
        await page.fill("cert-create-email", f"admin@{DOMAIN}")
        await page.submit("cert-create")
        await page.wait_text("Ordering shared-cert")
        await page.go("#/certificates/shared-cert")
        for host in (f"api.{DOMAIN}", f"app.{DOMAIN}"):
            await page.click_button(f"Attach certificate to {host}")
            await page.wait_text(f"Attached to {host}.")
            self.assertEqual(
                (await self.stored(f"/proxy/targets/{host}"))["cert_name"], "shared-cert"
            )
        await page.screenshot(screenshot_path("walkthrough-multi-domain.png"), full=True)

        # OAuth client management: register a client, list clients and sessions, metrics
        await page.go("#/oauth")
        await self.open_create()
        await page.fill("client-create-client_name", "my-app")
        await page.fill("client-create-redirect_uris", "https://myapp.example.test/callback")
        await page.fill("client-create-scope", "read write")
        await page.submit("client-create")
        await page.wait_text("Registered client my-app")
        await page.wait_text("Pre-registered", "#screen .cards")
        self.assertIn("No sessions", await page.text("#screen"))

        # Logging and monitoring: by IP, by host, errors, a request's detail, following
        await self.through_gateway("internal.local", "/status/502")
        await self.through_gateway("internal.local", "/hello")
        await settle(1.5)
        await page.go("#/logs")
        await page.fill("log-filter-ip", "127.0.0.1")
        await page.submit("log-filter")
        await page.wait_text("/hello", "#screen table")
        await page.fill("log-filter-ip", "")
        await page.fill("log-filter-host", "internal.local")
        await page.choose("log-filter-status_class", "errors")
        await page.submit("log-filter")
        await page.wait_text("1 requests shown", "#log-count")
        await page.evaluate("document.querySelector('#screen table tbody button').click()")
        await page.wait_text("/status/502", "#log-detail")
        await page.click("#log-follow")
        await settle(1.2)
        await self.through_gateway("internal.local", "/status/503")
        await page.wait_text("/status/503", "#screen table", seconds=20)
        await page.click("#log-follow")
        await page.screenshot(screenshot_path("walkthrough-request-log.png"), full=True)

        # Troubleshooting: a certificate's detail, a proxy's settings, a redundant route
        await page.go("#/certificates/shared-cert")
        await page.wait_text("Last error:", "#cert-progress")
        await page.go(f"#/proxies/{service_host}")
        await page.wait_text(f"Proxy {service_host}", "#screen h2")
        await page.go("#/routes")
        await page.click_button("Delete route backend-api")
        await page.click_button("Delete backend-api", "dialog[open]")
        await page.wait_text("Deleted route backend-api.")
        status, _ = await self.api("GET", "/routes/backend-api")
        self.assertEqual(status, 404)
        self.assertNoPageErrors()
