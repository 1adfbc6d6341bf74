"""Tests for :mod:`oauthproxy.oauth.consent`: consent cookie, CSRF, state, page (MCP-20)."""

from __future__ import annotations

from attrs import evolve
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.oauth.consent import (
    CONSENT_COOKIE,
    CONSENT_MAX_AGE,
    MAX_APPROVALS,
    PAGE_HEADERS,
    CookiePolicy,
    approvals,
    approve,
    browser_binding,
    check_callback_state,
    check_csrf,
    check_same_origin,
    consent_view,
    content_security_policy,
    cookie_policy,
    csrf_token,
    form_target,
    host_cookie,
    is_approved,
    login_binding,
    new_login_session,
    render_consent_page,
)
from oauthproxy.oauth.errors import AccessDenied, InvalidRequest
from oauthproxy.oauth.pkce import is_valid_verifier
from tests.oauth.samples import authorization_request, public_client

SECRET = b"k" * 32
NOW = 1_700_000_000.0


class CookieTests(SynchronousTestCase):
    """The signed consent cookie (MCP-20, ATK-23, ATK-32)."""

    def test_cookie_attributes(self) -> None:
        """MCP-20, ATK-32: __Host- prefix, Secure, HttpOnly, SameSite=Lax, Path=/, no Domain."""
        header = CookiePolicy().header(CONSENT_COOKIE, "v", 60)
        self.assertTrue(header.startswith("__Host-oauthproxy-consent=v;"))
        for attribute in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
            self.assertIn(attribute, header)
        self.assertNotIn("Domain", header)

    def test_cookie_without_host_prefix_is_refused(self) -> None:
        """ATK-32: every cookie we set carries the __Host- prefix."""
        with self.assertRaises(ValueError):
            host_cookie("consent", "v", 60)

    def test_https_issuer_gets_host_cookies(self) -> None:
        """ATK-32: every issuer but a plain-HTTP loopback one uses ``__Host-`` cookies."""
        for issuer in ("https://auth.example.test", "https://127.0.0.1:8443", "http://auth.test"):
            self.assertEqual(cookie_policy(issuer), CookiePolicy(secure=True), issuer)

    def test_local_trial_cookies_work_without_tls(self) -> None:
        """ATK-36: on http://loopback, cookies lose prefix and Secure (else browsers drop them)."""
        policy = cookie_policy("http://127.0.0.1:8080")
        self.assertEqual(policy.name(CONSENT_COOKIE), "oauthproxy-consent")
        header = policy.header(CONSENT_COOKIE, "v", 60)
        self.assertEqual(header, "oauthproxy-consent=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax")
        self.assertFalse(cookie_policy("http://localhost").secure)

    def test_approval_is_bound_to_the_client_id(self) -> None:
        """MCP-20, ATK-23: a consent cookie replayed for another client_id does not count."""
        cookie = approve(SECRET, None, "client-a", now=NOW)
        self.assertTrue(is_approved(SECRET, cookie, "client-a", now=NOW))
        self.assertFalse(is_approved(SECRET, cookie, "client-b", now=NOW))

    def test_forged_or_foreign_cookie_is_ignored(self) -> None:
        """MCP-20: a cookie signed with another key, or edited, approves nothing."""
        cookie = approve(b"other-key", None, "client-a", now=NOW)
        self.assertEqual(approvals(SECRET, cookie, now=NOW), {})
        good = approve(SECRET, None, "client-a", now=NOW)
        payload, mac = good.split(".")
        self.assertEqual(approvals(SECRET, payload[:-2] + "xx." + mac, now=NOW), {})
        self.assertEqual(approvals(SECRET, "garbage", now=NOW), {})

    def test_approvals_expire(self) -> None:
        """MCP-20: old approvals are forgotten."""
        cookie = approve(SECRET, None, "client-a", now=NOW)
        self.assertFalse(is_approved(SECRET, cookie, "client-a", now=NOW + CONSENT_MAX_AGE))

    def test_cookie_keeps_several_clients_but_is_bounded(self) -> None:
        """MCP-20: approvals accumulate up to a cap (the oldest drop out)."""
        cookie = None
        for i in range(MAX_APPROVALS + 5):
            cookie = approve(SECRET, cookie, f"c{i}", now=NOW + i)
        kept = approvals(SECRET, cookie, now=NOW + 100)
        self.assertEqual(len(kept), MAX_APPROVALS)
        self.assertNotIn("c0", kept)
        self.assertIn(f"c{MAX_APPROVALS + 4}", kept)


class CsrfTests(SynchronousTestCase):
    """The consent form's CSRF token, bound to this browser (MCP-20, ATK-23, ATK-36)."""

    def setUp(self) -> None:
        """One browser's flow cookie."""
        self.binding = browser_binding(None)

    def test_right_token_passes(self) -> None:
        """MCP-20: the token rendered into the form is accepted from the same browser."""
        token = csrf_token(SECRET, "req-1", "client-a", self.binding)
        check_csrf(SECRET, "req-1", "client-a", token, self.binding)

    def test_token_of_other_request_or_client_fails(self) -> None:
        """ATK-23: a token for another pending request or client is refused (login CSRF)."""
        token = csrf_token(SECRET, "req-1", "client-a", self.binding)
        for request_id, client_id in (("req-2", "client-a"), ("req-1", "client-b")):
            with self.assertRaises(AccessDenied):
                check_csrf(SECRET, request_id, client_id, token, self.binding)

    def test_form_from_another_browser_fails(self) -> None:
        """ATK-36: the form's fields are worthless without the browser's flow cookie."""
        token = csrf_token(SECRET, "req-1", "client-a", self.binding)
        for other in (None, "", browser_binding(None), "x" * 43 + "=", self.binding[:-1]):
            with self.assertRaises(AccessDenied):
                check_csrf(SECRET, "req-1", "client-a", token, other)

    def test_missing_token_fails(self) -> None:
        """ATK-23: a form post without the token is refused."""
        with self.assertRaises(AccessDenied):
            check_csrf(SECRET, "req-1", "client-a", None, self.binding)

    def test_browser_keeps_its_binding(self) -> None:
        """ATK-36: a browser's flow cookie is reused (two tabs), a malformed one replaced."""
        self.assertEqual(browser_binding(self.binding), self.binding)
        self.assertNotEqual(browser_binding("forged;value"), "forged;value")
        self.assertNotEqual(browser_binding(None), browser_binding(None))


class OriginTests(SynchronousTestCase):
    """Cross-site posts of the consent form are refused (ATK-36, MCP-20)."""

    ISSUER = "https://auth.example.test"

    def test_same_origin_posts_pass(self) -> None:
        """ATK-36: a post from our own page (or from a client that is no browser) passes."""
        for origin, site in (
            ("https://auth.example.test", "same-origin"),
            ("https://AUTH.example.test:443", None),
            (None, "same-origin"),
            (None, None),
        ):
            check_same_origin(origin, site, self.ISSUER)

    def test_cross_site_posts_fail(self) -> None:
        """ATK-36: a foreign or null Origin, or a cross-site or same-site fetch, is refused."""
        for origin, site in (
            ("https://evil.test", None),
            ("null", None),
            ("https://auth.example.test:8443", None),
            ("http://auth.example.test", None),
            (None, "cross-site"),
            (None, "same-site"),
            ("https://auth.example.test", "cross-site"),
        ):
            with self.assertRaises(AccessDenied, msg=(origin, site)):
                check_same_origin(origin, site, self.ISSUER)


class StateTests(SynchronousTestCase):
    """The GitHub ``state`` (MCP-20, ATK-23)."""

    def test_session_has_random_state_and_pkce_verifier(self) -> None:
        """MCP-20, ATK-33: state is random; the upstream verifier is valid."""
        a = new_login_session(authorization_request(), now=NOW)
        b = new_login_session(authorization_request(), now=NOW)
        self.assertNotEqual(a.state, b.state)
        self.assertGreaterEqual(len(a.state), 32)
        self.assertTrue(is_valid_verifier(a.upstream_verifier))
        self.assertEqual(a.expires_at, NOW + 600)

    def test_matching_state_returns_session(self) -> None:
        """MCP-20: the exact state finds its session."""
        session = new_login_session(authorization_request(), now=NOW)
        cookie = login_binding(SECRET, session.state)
        self.assertEqual(
            check_callback_state(
                session, session.state, now=NOW + 5, secret=SECRET, binding_cookie=cookie
            ),
            session,
        )

    def test_callback_without_state_is_refused(self) -> None:
        """ATK-23: a callback without state is refused."""
        with self.assertRaises(InvalidRequest):
            check_callback_state(None, None, now=NOW, secret=SECRET, binding_cookie=None)

    def test_foreign_or_used_state_is_refused(self) -> None:
        """ATK-23: a state we did not issue (or already consumed) is refused."""
        session = new_login_session(authorization_request(), now=NOW)
        with self.assertRaises(AccessDenied):
            check_callback_state(None, "forged", now=NOW, secret=SECRET, binding_cookie=None)
        with self.assertRaises(AccessDenied):
            check_callback_state(
                session, session.state + "x", now=NOW, secret=SECRET, binding_cookie=None
            )

    def test_callback_in_another_browser_is_refused(self) -> None:
        """ATK-23: login CSRF: a callback with a valid state but no binding cookie fails."""
        session = new_login_session(authorization_request(), now=NOW)
        other = new_login_session(authorization_request(), now=NOW)
        for cookie in (
            None,
            login_binding(SECRET, other.state),
            login_binding(b"x", session.state),
        ):
            with self.assertRaises(AccessDenied):
                check_callback_state(
                    session, session.state, now=NOW, secret=SECRET, binding_cookie=cookie
                )

    def test_expired_state_is_refused(self) -> None:
        """MCP-20: state expires after ten minutes."""
        session = new_login_session(authorization_request(), now=NOW)
        with self.assertRaises(AccessDenied):
            check_callback_state(
                session,
                session.state,
                now=NOW + 600,
                secret=SECRET,
                binding_cookie=login_binding(SECRET, session.state),
            )


class PageTests(SynchronousTestCase):
    """The consent page (MCP-20, O21-13, MCP-7)."""

    def test_page_cannot_be_framed(self) -> None:
        """O21-13, ATK-23, BCP-1: no framing; no referrer to other origins."""
        headers = dict(PAGE_HEADERS)
        self.assertIn("frame-ancestors 'none'", content_security_policy())
        self.assertEqual(headers["X-Frame-Options"], "DENY")
        self.assertEqual(headers["Referrer-Policy"], "same-origin")

    def test_forms_may_lead_only_to_the_places_approval_goes(self) -> None:
        """ATK-36, O21-13: form-action names us, GitHub and the client's redirect, no more."""
        policy = content_security_policy(
            (form_target("https://github.com"), form_target("com.example.app:/cb"))
        )
        self.assertIn("form-action 'self' https://github.com com.example.app:;", policy)
        self.assertEqual(form_target("http://127.0.0.1:5000/cb?x=1"), "http://127.0.0.1:5000")

    def test_page_shows_client_scopes_and_redirect(self) -> None:
        """MCP-20: the page names the client, scopes and redirect URI, escaped."""
        client = evolve(public_client(), client_name="<script>x</script>")
        view = consent_view(client, authorization_request(client))
        html = render_consent_page(view, action="/consent", request_id="r1", csrf="t1").decode()
        self.assertNotIn("<script>", html)
        self.assertIn("&lt;script&gt;", html)
        self.assertIn("mcp:read", html)
        self.assertIn("https://app.example.test/cb", html)
        self.assertIn('value="t1"', html)

    def test_cimd_client_shows_host_and_localhost_warning(self) -> None:
        """MCP-7: CIMD consent shows the client_id host and warns on localhost-only URIs."""
        client = evolve(
            public_client(source="cimd", client_id="https://tool.example.test/client.json"),
            redirect_uris=("http://127.0.0.1/callback",),
        )
        view = consent_view(client, authorization_request(client))
        self.assertEqual(view.client_host, "tool.example.test")
        self.assertTrue(view.localhost_warning)
        html = render_consent_page(view, action="/consent", request_id="r", csrf="t").decode()
        self.assertIn("tool.example.test", html)
        self.assertIn("localhost", html)
