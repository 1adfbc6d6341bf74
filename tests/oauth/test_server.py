"""The OAuthServer resource end to end in memory: login, tokens, refresh, revocation."""

from __future__ import annotations

import json
import re
from typing import Any

from attrs import evolve
from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from tests.oauth.server_harness import (
    ISSUER,
    REDIRECT,
    RESOURCE,
    VERIFIER,
    Answer,
    OAuthHarness,
)
from tests.support.fake_github import FakeUser


class LoginFlowTests(SynchronousTestCase):
    """Authorize -> consent -> GitHub -> callback -> code -> token."""

    def setUp(self) -> None:
        self.h = OAuthHarness(self)
        self.h.add_proxy("mcp.example.test")
        self.client_id = self.h.register()["client_id"]

    def test_login_redirects_with_code_state_and_iss(self) -> None:
        """MCP-20, MCP-12, ATK-24: after consent and GitHub, the client gets code, state, iss."""
        params = self.h.login(self.client_id, resource=RESOURCE)
        self.assertEqual(params["iss"], ISSUER)
        self.assertEqual(params["state"], "client-state")
        self.assertTrue(params["code"])

    def test_code_exchange_issues_audience_bound_token(self) -> None:
        """MCP-11, O21-1: the code with the PKCE verifier gives a token for the resource."""
        tokens = self.h.tokens(self.client_id, resource=RESOURCE)
        claims = self.h.server.verifier.check(tokens["access_token"], RESOURCE)
        self.assertEqual(claims.username, "alice")
        self.assertEqual(claims.audience, (RESOURCE,))
        self.assertTrue(tokens["refresh_token"])

    def test_token_response_is_not_cached(self) -> None:
        """O21-8: the token response carries Cache-Control: no-store."""
        code = self.h.login(self.client_id)["code"]
        answer = self.h.token(
            grant_type="authorization_code",
            code=code,
            client_id=self.client_id,
            redirect_uri=REDIRECT,
            code_verifier=VERIFIER,
        )
        self.assertEqual(answer.header("cache-control"), "no-store")

    def test_wrong_verifier_is_invalid_grant(self) -> None:
        """ATK-20, O21-3: a wrong PKCE verifier is refused."""
        code = self.h.login(self.client_id)["code"]
        answer = self.h.token(
            grant_type="authorization_code",
            code=code,
            client_id=self.client_id,
            redirect_uri=REDIRECT,
            code_verifier="x" * 43,
        )
        self.assertEqual((answer.status, answer.json()["error"]), (400, "invalid_grant"))

    def test_code_replay_revokes_the_first_token(self) -> None:
        """O21-6: redeeming a code twice revokes what the first redemption issued."""
        code = self.h.login(self.client_id, resource=RESOURCE)["code"]
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": self.client_id,
            "redirect_uri": REDIRECT,
            "code_verifier": VERIFIER,
        }
        first = self.h.token(**form).json()
        self.assertEqual(self.h.token(**form).json()["error"], "invalid_grant")
        self.assertIsNone(self.h.server.verifier.verify(first["access_token"]))

    def test_user_off_the_allowlist_is_denied(self) -> None:
        """Acceptance: a user not on OAUTH_ALLOWED_GITHUB_USERS gets no code."""
        h = OAuthHarness(self, user=FakeUser(7, "mallory"), allowed_users=("alice",))
        client_id = h.register()["client_id"]
        page = h.call("GET", h.authorize_query(client_id))
        to_github = h.consent(page)
        callback = h.github_redirect(to_github)
        back = h.call(
            "GET",
            callback.replace("https://auth.example.test", ""),
            cookies={"__Host-oauthproxy-login": to_github.cookies()["__Host-oauthproxy-login"]},
        )
        self.assertEqual(back.status, 303)
        self.assertIn("error=access_denied", back.header("location") or "")

    def test_resource_path_maps_to_the_proxy_resource(self) -> None:
        """MCP-3, MCP-11: a resource below a proxy's URL gives that proxy's audience."""
        tokens = self.h.tokens(self.client_id, resource=RESOURCE + "/mcp")
        claims = self.h.server.verifier.check(tokens["access_token"], RESOURCE)
        self.assertEqual(claims.audience, (RESOURCE,))

    def test_unknown_resource_is_invalid_target(self) -> None:
        """RFC 8707: a resource we do not protect is refused (a page: client not approved)."""
        page = self.h.call("GET", self.h.authorize_query(self.client_id, resource="https://x.test"))
        self.assertIsNone(page.header("location"))
        self.assertIn(b"invalid_target", page.body)

    def test_approved_client_goes_straight_to_github(self) -> None:
        """MCP-20: once the user approved the client (cookie), /authorize skips the page."""
        self.h.login(self.client_id)
        again = self.h.call("GET", self.h.authorize_query(self.client_id))
        self.assertEqual(again.status, 303)
        self.assertTrue((again.header("location") or "").startswith("https://github.test/"))


class RefreshTests(SynchronousTestCase):
    """Refresh token rotation and reuse detection."""

    def setUp(self) -> None:
        self.h = OAuthHarness(self)
        self.h.add_proxy("mcp.example.test")
        self.client_id = self.h.register()["client_id"]
        self.first = self.h.tokens(self.client_id, resource=RESOURCE)

    def refresh(self, token: str) -> dict[str, str]:
        """POST a refresh grant."""
        answer = self.h.token(
            grant_type="refresh_token", refresh_token=token, client_id=self.client_id
        )
        result: dict[str, str] = answer.json()
        return result

    def test_refresh_rotates_the_token(self) -> None:
        """O21-9, MCP-14: a refresh returns a new access and a new refresh token."""
        second = self.refresh(self.first["refresh_token"])
        self.assertNotEqual(second["refresh_token"], self.first["refresh_token"])
        self.assertIsNotNone(self.h.server.verifier.verify(second["access_token"]))

    def test_reuse_revokes_the_family_at_once(self) -> None:
        """ATK-34, BCP-4, ATK-22, MCP-17: any reuse of a rotated token revokes the family."""
        second = self.refresh(self.first["refresh_token"])
        self.assertEqual(self.refresh(self.first["refresh_token"])["error"], "invalid_grant")
        self.assertEqual(self.refresh(second["refresh_token"])["error"], "invalid_grant")
        self.assertIsNone(self.h.server.verifier.verify(second["access_token"]))
        self.assertIsNone(self.h.server.verifier.verify(self.first["access_token"]))


class LoggedIn(SynchronousTestCase):
    """Alice logged in for the protected proxy; ``settings`` configure the server."""

    settings: dict[str, Any] = {}

    def setUp(self) -> None:
        """The login."""
        self.h = OAuthHarness(self, **self.settings)
        self.h.add_proxy("mcp.example.test")
        self.client_id = self.h.register()["client_id"]
        self.first = self.h.tokens(self.client_id, resource=RESOURCE)

    def refresh(self, token: str) -> Answer:
        """POST a refresh grant."""
        return self.h.token(
            grant_type="refresh_token", refresh_token=token, client_id=self.client_id
        )


class MoreRefreshTests(LoggedIn):
    """Refresh edge cases: reuse without a sibling, allowlists applied again."""

    def test_second_use_gets_no_new_pair(self) -> None:
        """ATK-34: a rotated token used again never yields a sibling refresh token."""
        one = self.refresh(self.first["refresh_token"])
        two = self.refresh(self.first["refresh_token"])
        self.assertEqual((one.status, two.status), (200, 400))
        self.assertEqual(self.refresh(one.json()["refresh_token"]).status, 400)

    def test_user_removed_from_allowlist_loses_the_resource(self) -> None:
        """MCP-11: a refresh re-applies the proxy's allowlist."""
        proxy = self.successResultOf(self.h.storage.proxies.get("mcp.example.test"))
        assert proxy is not None and proxy.auth is not None
        auth = evolve(proxy.auth, required_users=("bob",))
        self.successResultOf(self.h.storage.proxies.update(evolve(proxy, auth=auth)))
        answer = self.refresh(self.first["refresh_token"])
        self.assertEqual(answer.json()["error"], "invalid_target")


class RetryWindowTests(LoggedIn):
    """ATK-34: ``OAUTH_REFRESH_RETRY_WINDOW`` replays the kept pair, never a new one."""

    #: the server keeps rotations' answers for 30 s
    settings = {"refresh_retry_window": 30.0}

    def test_retry_inside_the_window_gets_the_same_pair(self) -> None:
        """ATK-34: the retry's answer is the rotation's answer, byte for byte."""
        one = self.refresh(self.first["refresh_token"])
        self.h.clock.advance(30)
        two = self.refresh(self.first["refresh_token"])
        self.assertEqual((one.status, two.status), (200, 200))
        self.assertEqual(one.json(), two.json())
        self.assertIsNotNone(self.h.server.verifier.verify(one.json()["access_token"]))

    def test_retry_after_the_window_revokes_the_family(self) -> None:
        """ATK-34: past the window a retry is reuse: refused, family revoked."""
        one = self.refresh(self.first["refresh_token"]).json()
        self.h.clock.advance(31)
        self.assertEqual(self.refresh(self.first["refresh_token"]).status, 400)
        self.assertIsNone(self.h.server.verifier.verify(one["access_token"]))

    def test_kept_answer_is_sealed_at_rest(self) -> None:
        """ATK-34: the kept pair is stored encrypted, never in clear text."""
        one = self.refresh(self.first["refresh_token"]).json()
        stored = json.dumps(self.h.storage.oauth.expiring["refresh"])
        self.assertNotIn(one["refresh_token"], stored)
        self.assertNotIn(one["access_token"], stored)


class ConsentTests(SynchronousTestCase):
    """The consent page (MCP-20) and error handling of /authorize."""

    def setUp(self) -> None:
        self.h = OAuthHarness(self)
        self.client_id = self.h.register()["client_id"]

    def test_consent_page_cannot_be_framed(self) -> None:
        """O21-13, O21-14: frame-ancestors 'none', X-Frame-Options DENY, no CORS header."""
        page = self.h.call("GET", self.h.authorize_query(self.client_id))
        self.assertIn("frame-ancestors 'none'", page.header("content-security-policy") or "")
        self.assertEqual(page.header("x-frame-options"), "DENY")
        self.assertIsNone(page.header("access-control-allow-origin"))

    def test_forged_csrf_token_is_refused(self) -> None:
        """ATK-23: a consent form with a wrong CSRF token does not reach GitHub."""
        page = self.h.call("GET", self.h.authorize_query(self.client_id))
        forged = page.body.replace(b'name="csrf_token" value="', b'name="csrf_token" value="x')
        answer = self.h.consent(type(page)(page.status, page.headers, forged))
        self.assertEqual(answer.status, 403)
        self.assertIsNone(answer.header("location"))

    def test_unknown_client_gets_a_page_not_a_redirect(self) -> None:
        """O21-5, ATK-3: an unknown client's redirect_uri is never used."""
        answer = self.h.call("GET", self.h.authorize_query("no-such-client"))
        self.assertIsNone(answer.header("location"))
        self.assertEqual(answer.header("x-frame-options"), "DENY")

    def test_provoked_error_of_unapproved_client_is_not_redirected(self) -> None:
        """O21-16, BCP-7: invalid_scope for an unapproved DCR client shows a page."""
        answer = self.h.call("GET", self.h.authorize_query(self.client_id, scope="bogus"))
        self.assertIsNone(answer.header("location"))

    def test_callback_without_binding_cookie_is_refused(self) -> None:
        """ATK-23: a state used from another browser (no login cookie) is refused."""
        to_github = self.h.consent(self.h.call("GET", self.h.authorize_query(self.client_id)))
        callback = self.h.github_redirect(to_github)
        # another browser: a client without the cookies the first one received
        self.h.treq = StubTreq(self.h.server.resource())  # type: ignore[no-untyped-call]
        answer = self.h.call("GET", callback.replace("https://auth.example.test", ""))
        self.assertEqual(answer.status, 403)
        self.assertIsNone(answer.header("location"))


class BrowserBindingTests(SynchronousTestCase):
    """ATK-36: consent and login are bound to the browser that started them."""

    def setUp(self) -> None:
        """A registered client and its consent page, opened in one browser."""
        self.h = OAuthHarness(self)
        self.client_id = self.h.register()["client_id"]
        self.page = self.h.call("GET", self.h.authorize_query(self.client_id))
        text = self.page.body.decode()
        self.fields = {
            name: re.search(rf'name="{name}" value="([^"]+)"', text)[1]  # type: ignore[index]
            for name in ("request_id", "csrf_token")
        }

    def post(self, **headers: str) -> Answer:
        """Submit the page's form (approve) from the current browser, with ``headers``."""
        return self.h.call(
            "POST",
            "/authorize/consent",
            form={**self.fields, "decision": "approve"},
            headers=headers,
        )

    def other_browser(self) -> None:
        """From now on, requests come from another browser (its own cookie jar)."""
        self.h.treq = StubTreq(self.h.server.resource())  # type: ignore[no-untyped-call]

    def test_page_sets_a_host_flow_cookie(self) -> None:
        """ATK-36, ATK-32: the consent page binds the browser with a ``__Host-`` cookie."""
        [line] = [v.decode() for v in self.page.headers[b"set-cookie"] if b"oauthproxy-flow" in v]
        self.assertTrue(line.startswith("__Host-oauthproxy-flow="), line)
        self.assertIn("Secure; HttpOnly; SameSite=Lax", line)

    def test_form_submitted_from_another_browser_is_refused(self) -> None:
        """ATK-36, MCP-20: the form's fields without this browser's cookie reach nobody."""
        self.other_browser()
        answer = self.post()
        self.assertEqual(answer.status, 403, answer.body)
        self.assertIsNone(answer.header("location"))
        self.assertIn(b"another browser", answer.body)

    def test_form_with_another_browsers_cookie_is_refused(self) -> None:
        """ATK-36: a flow cookie of another browser does not match this form."""
        self.other_browser()
        self.h.call("GET", self.h.authorize_query(self.client_id))  # its own flow cookie
        self.assertEqual(self.post().status, 403)

    def test_cross_site_posts_are_refused(self) -> None:
        """ATK-36: a cross-site form post is refused even with the right cookie."""
        for headers in (
            {"Origin": "https://evil.test"},
            {"Origin": "null"},
            {"Sec-Fetch-Site": "cross-site"},
        ):
            answer = self.post(**headers)
            self.assertEqual(answer.status, 403, headers)
            self.assertIsNone(answer.header("location"))

    def test_same_origin_post_from_the_browser_goes_to_github(self) -> None:
        """ATK-36: what a browser sends for our own form is accepted."""
        answer = self.post(Origin="https://auth.example.test", **{"Sec-Fetch-Site": "same-origin"})
        self.assertEqual(answer.status, 303, answer.body)
        self.assertTrue((answer.header("location") or "").startswith("https://github.test/"))

    def test_every_answer_to_a_browser_forbids_framing(self) -> None:
        """O21-13, ATK-36: pages, refusals and redirects all say frame-ancestors 'none'."""
        answers = {
            "consent page": self.page,
            "refused form": self.post(Origin="https://evil.test"),
            "error page": self.h.call("GET", self.h.authorize_query("no-such-client")),
            "to GitHub": self.post(),
            "bad callback": self.h.call("GET", "/callback?state=nope"),
        }
        for name, answer in answers.items():
            self.assertIn(
                "frame-ancestors 'none'", answer.header("content-security-policy") or "", name
            )
            self.assertEqual(answer.header("x-frame-options"), "DENY", name)
