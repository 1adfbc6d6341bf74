"""Tests for ``/auth/endpoints``: CRUD, the test endpoint, token-management guards, mirroring."""

from __future__ import annotations

from typing import Any

from attrs import evolve, frozen
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from oauthproxy.admin.access import touches_token_management
from oauthproxy.interfaces import IAccessTokenVerifier
from oauthproxy.model import AuthRule, Claims
from oauthproxy.storage.mirror import Mirror
from oauthproxy.testing import MemoryStorage
from tests.admin.harness import Answer, Harness

#: identity headers a client might forge; none of them may count (ATK-6)
FORGED = {
    "X-Auth-User": "admin",
    "X-Auth-Scopes": "service:write admin",
    "X-Forwarded-User": "admin",
    "Remote-User": "admin",
}


@implementer(IAccessTokenVerifier)
@frozen
class TableVerifier:
    """A test verifier: known access token values and their claims."""

    table: dict[str, Claims]

    def verify(self, token: str) -> Claims | None:
        """The claims of ``token`` if it is in the table."""
        return self.table.get(token)


def sync(h: Harness) -> None:
    """Let the snapshot catch up with tokens and auth rules (what the mirror does)."""
    h.sync()
    rules = h.test.successResultOf(h.storage.auth_rules.list())
    h.snapshots.current = evolve(
        h.snapshots.current, auth_rules={rule.config_id: rule for rule in rules}
    )


def add_rule(h: Harness, config_id: str, pattern: str, auth_type: str, **fields: Any) -> None:
    """Store a rule owned by the admin directly and make it visible."""
    rule = AuthRule(config_id=config_id, path_pattern=pattern, auth_type=auth_type, **fields)  # type: ignore[arg-type]
    h.test.successResultOf(h.storage.auth_rules.create(rule))
    sync(h)


def use_verifier(h: Harness, table: dict[str, Claims]) -> None:
    """Make the API accept the access tokens of ``table``."""
    authenticator: Any = h.api.context.authenticator
    authenticator.verifier = TableVerifier(table)


def create(h: Harness, token: str | None, **body: Any) -> Answer:
    """``POST /auth/endpoints`` with ``body``."""
    return h.call("POST", "/auth/endpoints", token=token, body=body)


class CrudTests(SynchronousTestCase):
    """Create, list, show, update and delete."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")

    def test_admin_creates_rule_with_defaults(self) -> None:
        """A rule gets its id, owner, clock times and default methods and priority."""
        answer = create(
            self.h, self.h.admin_token, config_id="h", path_pattern="/health", auth_type="none"
        )
        self.assertEqual(answer.status, 201)
        rule = answer.json()
        self.assertEqual(rule["methods"], ["*"])
        self.assertEqual(rule["priority"], 50)
        self.assertEqual(rule["owner"], "admin")
        self.assertEqual(rule["created_at"], self.h.clock.seconds())
        self.assertEqual(answer.header(b"location"), b"/auth/endpoints/h")

    def test_seed_example_creates_oauth_rule(self) -> None:
        """The seed's OAuth rule body is accepted as written, with a generated id."""
        answer = create(
            self.h,
            self.h.admin_token,
            path_pattern="/services/*",
            methods=["POST", "PUT", "DELETE"],
            auth_type="oauth",
            oauth_scopes=["service:write"],
            oauth_allowed_users=["alice", "bob"],
            priority=80,
        )
        self.assertEqual(answer.status, 201)
        rule = answer.json()
        self.assertTrue(rule["config_id"].startswith("rule-"))
        self.assertEqual(rule["methods"], ["DELETE", "POST", "PUT"])
        self.assertEqual(rule["oauth_allowed_users"], ["alice", "bob"])

    def test_duplicate_id_is_conflict(self) -> None:
        """A taken config_id is 409 naming the field."""
        add_rule(self.h, "h", "/health", "none")
        answer = create(
            self.h, self.h.admin_token, config_id="h", path_pattern="/x", auth_type="none"
        )
        self.h.assert_error(answer, 409, "conflict", "/config_id")

    def test_pattern_must_be_a_path(self) -> None:
        """A pattern not starting with '/' is 422 naming ``/path_pattern``."""
        answer = create(self.h, self.h.admin_token, path_pattern="tokens", auth_type="none")
        self.h.assert_error(answer, 422, "invalid_input", "/path_pattern")

    def test_double_slash_pattern_is_refused(self) -> None:
        """'//' can never match (the router refuses it), so such a pattern is 422."""
        answer = create(self.h, self.h.admin_token, path_pattern="/a//b", auth_type="none")
        self.h.assert_error(answer, 422, "invalid_input", "/path_pattern")

    def test_unknown_auth_type_is_refused(self) -> None:
        """Only none, bearer, admin and oauth exist."""
        answer = create(self.h, self.h.admin_token, path_pattern="/x", auth_type="basic")
        self.h.assert_error(answer, 422, "invalid_input", "/auth_type")

    def test_non_admin_may_not_create_by_default(self) -> None:
        """Creating rules is admin-only unless a rule opens it."""
        answer = create(self.h, self.alice, path_pattern="/x", auth_type="none")
        self.h.assert_error(answer, 403, "forbidden")

    def test_list_is_by_priority_and_filterable(self) -> None:
        """Rules come highest priority first; ``auth_type`` filters."""
        add_rule(self.h, "low", "/a", "none", priority=10)
        add_rule(self.h, "high", "/b", "admin", priority=90)
        page = self.h.call("GET", "/auth/endpoints", token=self.h.admin_token).json()
        self.assertEqual([r["config_id"] for r in page["items"]], ["high", "low"])
        page = self.h.call("GET", "/auth/endpoints?auth_type=none", token=self.h.admin_token).json()
        self.assertEqual([r["config_id"] for r in page["items"]], ["low"])

    def test_non_admin_lists_only_its_own(self) -> None:
        """A non-admin token does not see the admin's rules."""
        add_rule(self.h, "a", "/a", "none")
        page = self.h.call("GET", "/auth/endpoints", token=self.alice).json()
        self.assertEqual(page["items"], [])

    def test_show_unknown_is_404(self) -> None:
        """An unknown id is 404."""
        answer = self.h.call("GET", "/auth/endpoints/nope", token=self.h.admin_token)
        self.h.assert_error(answer, 404, "not_found")

    def test_update_changes_only_given_fields(self) -> None:
        """PUT replaces the fields given and keeps the others."""
        add_rule(self.h, "a", "/a", "none", priority=10, description="d")
        self.h.clock.advance(5)
        answer = self.h.call(
            "PUT", "/auth/endpoints/a", token=self.h.admin_token, body={"auth_type": "admin"}
        )
        self.assertEqual(answer.status, 200)
        rule = answer.json()
        self.assertEqual((rule["auth_type"], rule["priority"]), ("admin", 10))
        self.assertEqual(rule["description"], "d")
        self.assertEqual(rule["updated_at"], self.h.clock.seconds())

    def test_delete_removes(self) -> None:
        """DELETE answers 204 and the rule is gone."""
        add_rule(self.h, "a", "/a", "none")
        answer = self.h.call("DELETE", "/auth/endpoints/a", token=self.h.admin_token)
        self.assertEqual(answer.status, 204)
        self.assertIsNone(self.successResultOf(self.h.storage.auth_rules.get("a")))

    def test_rule_changes_publish_events(self) -> None:
        """Creating a rule publishes an ``auth_rule_created`` event for the mirrors."""
        create(self.h, self.h.admin_token, config_id="a", path_pattern="/a", auth_type="none")
        last = self.h.storage.state.events[-1]
        self.assertEqual((last.type, last.kind, last.key), ("auth_rule_created", "auth_rule", "a"))


class TokenManagementTests(SynchronousTestCase):
    """Rules covering ``/tokens`` are the admin's alone."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")
        # open rule management to every token, as an operator might
        add_rule(self.h, "writers", "/auth/endpoints*", "bearer", priority=100)

    def test_patterns_covering_tokens_are_recognised(self) -> None:
        """Exact and wildcard patterns that can match a token path count; others do not."""
        for pattern in ("/tokens", "/tokens/", "/tokens/*", "/tok*", "/*", "*", "/tokens/ci"):
            self.assertTrue(touches_token_management(pattern), pattern)
        for pattern in ("/tokensx", "/tokensx/*", "/health", "/routes/*"):
            self.assertFalse(touches_token_management(pattern), pattern)

    def test_non_admin_cannot_open_token_management(self) -> None:
        """Even with rule writing opened, a non-admin cannot create a rule over /tokens."""
        for pattern in ("/tokens/*", "/*", "/tok*"):
            answer = create(self.h, self.alice, path_pattern=pattern, auth_type="none")
            self.h.assert_error(answer, 403, "forbidden")

    def test_non_admin_cannot_move_a_rule_onto_tokens(self) -> None:
        """Changing one's own rule's pattern to cover /tokens is refused."""
        create(self.h, self.alice, config_id="mine", path_pattern="/x", auth_type="none")
        answer = self.h.call(
            "PUT", "/auth/endpoints/mine", token=self.alice, body={"path_pattern": "/tokens/*"}
        )
        self.h.assert_error(answer, 403, "forbidden")

    def test_non_admin_cannot_delete_the_token_rule(self) -> None:
        """The admin-only rule for token management survives a non-admin's delete."""
        add_rule(self.h, "tokens-admin", "/tokens/*", "admin", priority=90)
        answer = self.h.call("DELETE", "/auth/endpoints/tokens-admin", token=self.alice)
        self.assertIn(answer.status, (403, 404))
        self.assertIsNotNone(self.successResultOf(self.h.storage.auth_rules.get("tokens-admin")))

    def test_non_admin_cannot_delete_a_token_rule_it_may_see(self) -> None:
        """Even a token-covering rule owned by the caller needs the admin to delete."""
        add_rule(self.h, "t", "/tokens/*", "admin", owner="alice")
        answer = self.h.call("DELETE", "/auth/endpoints/t", token=self.alice)
        self.h.assert_error(answer, 403, "forbidden")

    def test_anonymous_never_writes_rules(self) -> None:
        """A ``none`` rule over rule writing still needs a token to write."""
        add_rule(self.h, "anyone", "/auth/endpoints", "none", priority=200)
        answer = create(self.h, None, path_pattern="/x", auth_type="none")
        self.h.assert_error(answer, 401, "unauthorized")


class TestEndpointTests(SynchronousTestCase):
    """``POST /auth/endpoints/test``."""

    def setUp(self) -> None:
        self.h = Harness(self)

    def probe(self, path: str, method: str = "GET") -> Answer:
        """Ask which auth applies to ``method`` on ``path``."""
        return self.h.call(
            "POST",
            "/auth/endpoints/test",
            token=self.h.admin_token,
            body={"path": path, "method": method},
        )

    def test_declared_default_without_rules(self) -> None:
        """No rule: the endpoint's own requirement, and its operation."""
        result = self.probe("/tokens/", "POST").json()
        self.assertEqual(
            (result["source"], result["auth_type"], result["endpoint"]),
            ("endpoint", "admin", "tokens_create"),
        )

    def test_public_defaults(self) -> None:
        """``/health`` and ``/openapi.json`` are public by declaration."""
        for path in ("/health", "/openapi.json"):
            self.assertEqual(self.probe(path).json()["auth_type"], "none", path)

    def test_matching_rule_is_shown(self) -> None:
        """The deciding rule and its OAuth requirements are in the answer."""
        add_rule(self.h, "o", "/services/*", "oauth", oauth_scopes=("service:write",))
        result = self.probe("/services/external/x?y=1", "PUT").json()
        self.assertEqual(result["rule"]["config_id"], "o")
        self.assertEqual(result["oauth_scopes"], ["service:write"])
        self.assertEqual(result["path"], "/services/external/x")

    def test_unknown_path_has_no_auth(self) -> None:
        """A path no endpoint serves and no rule matches: source ``none``."""
        result = self.probe("/nowhere").json()
        self.assertEqual((result["source"], result["auth_type"]), ("none", None))

    def test_encoded_slash_is_refused(self) -> None:
        """A path the router refuses is 422 naming ``/path``."""
        self.h.assert_error(self.probe("/tokens%2Fx"), 422, "invalid_input", "/path")


class MirrorTests(SynchronousTestCase):
    """Rules reach the snapshot the authenticator reads through the storage mirror."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.storage = MemoryStorage(self.clock)
        self.successResultOf(
            self.storage.auth_rules.create(AuthRule(config_id="a", path_pattern="/a"))
        )
        self.mirror = Mirror(self.storage, self.clock, random_value=lambda: 0.0)
        self.mirror.startService()
        self.addCleanup(self.stop)

    def stop(self) -> None:
        """Stop the mirror; it must stop at once and leave no timer behind."""
        self.successResultOf(self.mirror.stopService())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_load_includes_rules(self) -> None:
        """The first full load puts stored rules into the snapshot."""
        self.assertEqual(list(self.mirror.current.auth_rules), ["a"])

    def test_rule_events_are_applied(self) -> None:
        """Created, changed and deleted rules follow through the event stream."""
        rule = AuthRule(config_id="b", path_pattern="/b", auth_type="admin")
        self.successResultOf(self.storage.auth_rules.create(rule))
        self.assertEqual(self.mirror.current.auth_rules["b"], rule)
        self.successResultOf(self.storage.auth_rules.update(evolve(rule, priority=7)))
        self.assertEqual(self.mirror.current.auth_rules["b"].priority, 7)
        self.successResultOf(self.storage.auth_rules.delete("a"))
        self.assertEqual(list(self.mirror.current.auth_rules), ["b"])
