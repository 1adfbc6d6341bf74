"""What endpoint auth rules do to requests: each auth type on an endpoint, and matching."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.admin.access import NoAccessTokens, matching_rule
from oauthproxy.model import AuthRule, Claims
from tests.admin.harness import Harness
from tests.admin.test_auth_rules import FORGED, add_rule, create, sync, use_verifier


class EndpointEffectTests(SynchronousTestCase):
    """Each auth type on an endpoint (``GET /auth/endpoints``, declared bearer)."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")

    def test_without_rules_the_declared_requirement_stands(self) -> None:
        """No rule: a bearer endpoint refuses anonymous callers (secure default)."""
        self.h.assert_error(self.h.call("GET", "/auth/endpoints"), 401, "unauthorized")

    def test_none_opens_the_endpoint(self) -> None:
        """A ``none`` rule lets anonymous callers in."""
        add_rule(self.h, "open", "/auth/endpoints", "none")
        self.assertEqual(self.h.call("GET", "/auth/endpoints").status, 200)

    def test_none_still_identifies_a_token(self) -> None:
        """On a ``none`` endpoint a valid token still counts (the admin sees all)."""
        add_rule(self.h, "open", "/auth/endpoints", "none")
        page = self.h.call("GET", "/auth/endpoints", token=self.h.admin_token).json()
        self.assertEqual([r["config_id"] for r in page["items"]], ["open"])

    def test_bearer_admits_any_token(self) -> None:
        """A ``bearer`` rule on an admin endpoint lets a non-admin token through."""
        add_rule(self.h, "b", "/auth/endpoints", "bearer", methods=("POST",))
        answer = create(self.h, self.alice, config_id="mine", path_pattern="/x", auth_type="none")
        self.assertEqual(answer.status, 201)
        self.assertEqual(answer.json()["owner"], "alice")

    def test_admin_rule_refuses_other_tokens(self) -> None:
        """An ``admin`` rule: another token gets 403, the admin token 200."""
        add_rule(self.h, "adm", "/auth/endpoints", "admin")
        self.h.assert_error(
            self.h.call("GET", "/auth/endpoints", token=self.alice), 403, "forbidden"
        )
        self.assertEqual(
            self.h.call("GET", "/auth/endpoints", token=self.h.admin_token).status, 200
        )

    def test_oauth_with_the_default_verifier_refuses_every_token(self) -> None:
        """Until the OAuth server provides a verifier, an oauth rule admits no OAuth token."""
        self.assertIsInstance(self.h.api.access_tokens, NoAccessTokens)
        add_rule(self.h, "o", "/auth/endpoints", "oauth")
        for token in (self.alice, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", None):
            answer = self.h.call("GET", "/auth/endpoints", token=token)
            self.assertEqual(answer.status, 401, token)

    def test_oauth_admits_a_verified_access_token(self) -> None:
        """A token the verifier accepts passes; it acts as ``oauth:<user>``."""
        use_verifier(self.h, {"at-1": Claims(username="alice", scopes=("service:write",))})
        add_rule(self.h, "o", "/auth/endpoints", "oauth", oauth_scopes=("service:write",))
        answer = self.h.call("GET", "/auth/endpoints", token="at-1")
        self.assertEqual(answer.status, 200)
        self.assertEqual(answer.json()["items"], [])

    def test_oauth_missing_scope_is_403(self) -> None:
        """A verified token without a required scope is 403 ``insufficient_scope``."""
        use_verifier(self.h, {"at-1": Claims(username="alice", scopes=("read",))})
        add_rule(self.h, "o", "/auth/endpoints", "oauth", oauth_scopes=("service:write",))
        answer = self.h.call("GET", "/auth/endpoints", token="at-1")
        self.h.assert_error(answer, 403, "insufficient_scope")

    def test_forged_scope_headers_do_not_add_scopes(self) -> None:
        """Scopes and user come from the verified token only, never from headers (ATK-6)."""
        use_verifier(self.h, {"at-1": Claims(username="mallory", scopes=("read",))})
        add_rule(
            self.h,
            "o",
            "/auth/endpoints",
            "oauth",
            oauth_scopes=("service:write",),
            oauth_allowed_users=("admin",),
        )
        answer = self.h.call("GET", "/auth/endpoints", token="at-1", headers=FORGED)
        self.h.assert_error(answer, 403, "insufficient_scope")

    def test_oauth_user_not_allowed_is_403(self) -> None:
        """A verified token of a user not in ``oauth_allowed_users`` is 403."""
        use_verifier(self.h, {"at-1": Claims(username="mallory")})
        add_rule(self.h, "o", "/auth/endpoints", "oauth", oauth_allowed_users=("alice", "bob"))
        answer = self.h.call("GET", "/auth/endpoints", token="at-1")
        self.h.assert_error(answer, 403, "insufficient_scope")

    def test_oauth_rule_refuses_api_tokens_but_not_the_admin(self) -> None:
        """API tokens are not OAuth tokens; the admin token passes so no rule locks it out."""
        use_verifier(self.h, {})
        add_rule(self.h, "o", "/auth/endpoints", "oauth")
        self.h.assert_error(
            self.h.call("GET", "/auth/endpoints", token=self.alice), 401, "invalid_token"
        )
        self.assertEqual(
            self.h.call("GET", "/auth/endpoints", token=self.h.admin_token).status, 200
        )

    def test_rule_applies_only_once_the_snapshot_has_it(self) -> None:
        """Authentication reads the in-memory snapshot, not the store."""
        self.successResultOf(
            self.h.storage.auth_rules.create(
                AuthRule(config_id="open", path_pattern="/auth/endpoints", auth_type="none")
            )
        )
        self.assertEqual(self.h.call("GET", "/auth/endpoints").status, 401)
        sync(self.h)
        self.assertEqual(self.h.call("GET", "/auth/endpoints").status, 200)


class MatchingTests(SynchronousTestCase):
    """Which rule decides: patterns, methods, priority, canonical paths."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")

    def test_highest_priority_wins(self) -> None:
        """Of two matching rules the higher priority decides."""
        add_rule(self.h, "open", "/auth/*", "none", priority=10)
        add_rule(self.h, "closed", "/auth/endpoints", "admin", priority=20)
        self.h.assert_error(
            self.h.call("GET", "/auth/endpoints", token=self.alice), 403, "forbidden"
        )

    def test_ties_go_to_the_lower_id(self) -> None:
        """Equal priorities: the lower config_id decides, whatever the insertion order."""
        rules = [
            AuthRule(config_id="b", path_pattern="/x", auth_type="none"),
            AuthRule(config_id="a", path_pattern="/x", auth_type="admin"),
        ]
        for order in (rules, rules[::-1]):
            found = matching_rule(order, "/x", "GET")
            self.assertEqual(found.config_id if found else None, "a")

    def test_methods_limit_a_rule(self) -> None:
        """A rule for POST does not touch GET."""
        add_rule(self.h, "p", "/auth/endpoints", "none", methods=("POST",))
        self.assertEqual(self.h.call("GET", "/auth/endpoints").status, 401)

    def test_head_is_matched_as_get(self) -> None:
        """A GET rule also governs HEAD, which the router serves with the GET handler."""
        add_rule(self.h, "t", "/tokens/*", "admin", methods=("GET",))
        d = self.h.treq.head(  # type: ignore[attr-defined]
            "http://api.test/tokens/", headers={"Authorization": [f"Bearer {self.alice}"]}
        )
        self.h.treq.flush()
        self.assertEqual(self.successResultOf(d).code, 403)

    def test_trailing_wildcard_covers_the_bare_path(self) -> None:
        """``/tokens/*`` also covers ``/tokens``, which the router serves as ``/tokens/``."""
        add_rule(self.h, "t", "/tokens/*", "admin", priority=90)
        for path in ("/tokens", "/tokens/", "/tokens/alice", "/tokens/alice/"):
            self.h.assert_error(self.h.call("GET", path, token=self.alice), 403, "forbidden")

    def test_query_does_not_change_the_match(self) -> None:
        """Rules match the path without the query (ATK-10)."""
        add_rule(self.h, "t", "/tokens/*", "admin")
        answer = self.h.call("GET", "/tokens/alice?x=/health", token=self.alice)
        self.h.assert_error(answer, 403, "forbidden")

    def test_encoded_slash_does_not_dodge_a_rule(self) -> None:
        """``%2F`` is no separator: such a path reaches no endpoint (ATK-11)."""
        add_rule(self.h, "t", "/tokens/*", "admin")
        self.assertEqual(self.h.call("GET", "/tokens%2Falice", token=self.alice).status, 404)

    def test_dot_segments_do_not_reach_another_endpoint(self) -> None:
        """An open pattern plus ``..`` does not reach token management (ATK-11)."""
        add_rule(self.h, "open", "/auth/*", "none")
        answer = self.h.call("GET", "/auth/../tokens/")
        self.assertNotEqual(answer.status, 200)

    def test_forged_headers_gain_nothing(self) -> None:
        """Identity headers neither satisfy an oauth rule nor lift an admin rule (ATK-6)."""
        add_rule(self.h, "o", "/auth/endpoints", "oauth")
        add_rule(self.h, "a", "/tokens/*", "admin")
        self.assertEqual(self.h.call("GET", "/auth/endpoints", headers=FORGED).status, 401)
        answer = self.h.call("GET", "/tokens/", token=self.alice, headers=FORGED)
        self.h.assert_error(answer, 403, "forbidden")
