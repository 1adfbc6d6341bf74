"""Tests for admin API authentication: bearer tokens, admin-only endpoints, usage records."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from tests.admin.harness import Harness


class BearerTests(SynchronousTestCase):
    """Who is let in, and what a refused caller is told."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")

    def test_missing_token_is_401_with_challenge(self) -> None:
        """No Authorization header: 401 with ``WWW-Authenticate: Bearer`` (RFC 6750)."""
        answer = self.h.call("GET", "/tokens/")
        self.h.assert_error(answer, 401, "unauthorized")
        self.assertEqual(answer.header(b"www-authenticate"), b'Bearer realm="oauthproxy"')

    def test_unknown_token_is_invalid_token(self) -> None:
        """A well-formed but unknown token is 401 ``invalid_token``, also in the challenge."""
        answer = self.h.call("GET", "/tokens/", token="acm_" + "x" * 43)
        self.h.assert_error(answer, 401, "invalid_token")
        self.assertIn(b'error="invalid_token"', answer.header(b"www-authenticate") or b"")

    def test_stored_digest_is_not_a_credential(self) -> None:
        """Presenting the stored SHA-256 digest instead of the value is refused."""
        digest = self.h.stored("alice").token_hash
        self.h.assert_error(self.h.call("GET", "/tokens/", token=digest), 401, "invalid_token")

    def test_other_scheme_is_refused(self) -> None:
        """``Authorization: Basic ...`` is not a bearer token."""
        answer = self.h.call("GET", "/tokens/", headers={"Authorization": f"Basic {self.alice}"})
        self.h.assert_error(answer, 401, "invalid_token")

    def test_scheme_is_case_insensitive(self) -> None:
        """``bearer`` in lower case is accepted (RFC 9110 auth schemes are case-insensitive)."""
        answer = self.h.call("GET", "/tokens/", headers={"Authorization": f"bearer {self.alice}"})
        self.assertEqual(answer.status, 200)

    def test_two_authorization_headers_are_refused(self) -> None:
        """Two Authorization headers are ambiguous and refused."""
        d = self.h.treq.get(  # type: ignore[attr-defined]
            "http://api.test/tokens/",
            headers={"Authorization": [f"Bearer {self.alice}", f"Bearer {self.h.admin_token}"]},
        )
        self.assertEqual(self.successResultOf(d).code, 401)

    def test_token_in_query_is_not_accepted(self) -> None:
        """A token in the query string authenticates nothing (O21-10, MCP-16)."""
        answer = self.h.call("GET", f"/tokens/?access_token={self.h.admin_token}")
        self.h.assert_error(answer, 401, "unauthorized")

    def test_non_admin_on_admin_endpoint_is_403(self) -> None:
        """A valid non-admin token on an admin-only endpoint is 403, not 401."""
        answer = self.h.call(
            "POST", "/tokens/", token=self.alice, body={"name": "x", "owner_email": "x@example.com"}
        )
        self.h.assert_error(answer, 403, "forbidden")

    def test_public_endpoint_ignores_bad_credentials(self) -> None:
        """``/health`` is public: even an invalid token does not stop it."""
        self.assertEqual(self.h.call("GET", "/health", token="acm_bogus").status, 200)


class ForgedHeaderTests(SynchronousTestCase):
    """Identity comes from the bearer token only (ATK-6, BCP-6)."""

    FORGED = {
        "X-Auth-User": "admin",
        "X-Auth-Scopes": "admin",
        "X-Forwarded-User": "admin",
        "X-User-Id": "admin",
        "Remote-User": "admin",
    }

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")

    def test_forged_headers_without_token_gain_nothing(self) -> None:
        """Identity headers without a token still get 401."""
        answer = self.h.call("GET", "/tokens/", headers=self.FORGED)
        self.h.assert_error(answer, 401, "unauthorized")

    def test_forged_headers_do_not_make_a_token_admin(self) -> None:
        """A non-admin token with admin identity headers still gets 403 on admin endpoints."""
        answer = self.h.call(
            "POST",
            "/tokens/",
            token=self.alice,
            headers=self.FORGED,
            body={"name": "x", "owner_email": "x@example.com"},
        )
        self.h.assert_error(answer, 403, "forbidden")

    def test_forged_headers_do_not_widen_a_list(self) -> None:
        """A non-admin token with identity headers still sees only itself."""
        page = self.h.call("GET", "/tokens/", token=self.alice, headers=self.FORGED).json()
        self.assertEqual([t["name"] for t in page["items"]], ["alice"])


class UsageTests(SynchronousTestCase):
    """``last_used_at`` bookkeeping through ``tokens.touch``."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")

    def test_use_is_recorded_with_clock_time(self) -> None:
        """An authenticated request touches its token with the injected clock's time."""
        self.h.call("GET", "/tokens/", token=self.alice)
        self.assertEqual(self.h.tokens.touches, [("alice", self.h.clock.seconds())])

    def test_use_is_recorded_at_most_once_per_interval(self) -> None:
        """Requests within the interval touch once; after it, again."""
        self.h.call("GET", "/tokens/", token=self.alice)
        self.h.clock.advance(30)
        self.h.call("GET", "/tokens/", token=self.alice)
        self.h.clock.advance(31)
        self.h.call("GET", "/tokens/", token=self.alice)
        self.assertEqual(len(self.h.tokens.touches), 2)

    def test_refused_request_records_nothing(self) -> None:
        """A token refused on an admin endpoint is not recorded as used."""
        self.h.call(
            "POST", "/tokens/", token=self.alice, body={"name": "x", "owner_email": "a@b.c"}
        )
        self.assertEqual(self.h.tokens.touches, [])

    def test_slow_store_does_not_delay_the_response(self) -> None:
        """The response is sent while the usage write is still pending."""
        pending: Deferred[None] = Deferred()
        self.h.tokens.pending_touch = pending
        self.assertEqual(self.h.call("GET", "/tokens/alice", token=self.alice).status, 200)
        pending.callback(None)

    def test_failed_usage_write_is_logged_not_fatal(self) -> None:
        """A failing usage write still answers 200 and logs the failure."""
        self.h.tokens.touch_error = RuntimeError("redis is down")
        self.assertEqual(self.h.call("GET", "/tokens/alice", token=self.alice).status, 200)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
