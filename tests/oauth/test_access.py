"""Tests for :mod:`oauthproxy.oauth.access`: allowlists, scopes, resources, audience."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.oauth.access import (
    allowed_resources,
    canonical_resources,
    narrower_scopes,
    parse_scope,
    resolve_audience,
    resolve_scopes,
    user_allowed,
)
from oauthproxy.oauth.errors import InvalidScope, InvalidTarget
from tests.oauth.samples import ALICE, BOB, RESOURCE_A, RESOURCE_B, SCOPES


class AllowlistTests(SynchronousTestCase):
    """Who may log in and use which proxy."""

    def test_star_allows_everyone(self) -> None:
        """OAUTH_ALLOWED_GITHUB_USERS=* lets every GitHub user in."""
        self.assertTrue(user_allowed(BOB, ("*",)))

    def test_login_match_is_case_insensitive(self) -> None:
        """GitHub logins are case-insensitive."""
        self.assertTrue(user_allowed(ALICE, ("alice",)))
        self.assertFalse(user_allowed(BOB, ("alice",)))

    def test_org_and_team_entries(self) -> None:
        """Allowlists may name an organisation or a team."""
        self.assertTrue(user_allowed(ALICE, ("org:ACME",)))
        self.assertTrue(user_allowed(ALICE, ("team:acme/ops",)))
        self.assertFalse(user_allowed(BOB, ("org:acme", "team:acme/ops")))

    def test_empty_list_allows_nobody(self) -> None:
        """An empty allowlist is closed, not open."""
        self.assertFalse(user_allowed(ALICE, ()))

    def test_user_missing_from_proxy_list_gets_no_such_resource(self) -> None:
        """Acceptance: a user not on a proxy's allowlist cannot get a token for it."""
        resources = {RESOURCE_A: ("alice",), RESOURCE_B: ()}
        self.assertEqual(allowed_resources(BOB, resources, ("*",)), {RESOURCE_B})
        self.assertEqual(allowed_resources(ALICE, resources, ("*",)), {RESOURCE_A, RESOURCE_B})

    def test_global_list_applies_to_every_resource(self) -> None:
        """OAUTH_ALLOWED_GITHUB_USERS gates every proxy."""
        self.assertEqual(allowed_resources(BOB, {RESOURCE_A: ()}, ("alice",)), frozenset())


class ScopeTests(SynchronousTestCase):
    """Scope parsing and granting."""

    def test_parse_deduplicates_in_order(self) -> None:
        """RFC 6749 §3.3: space-separated tokens; repeats collapse."""
        self.assertEqual(parse_scope("b a b"), ("b", "a"))

    def test_malformed_scope_is_invalid_scope(self) -> None:
        """RFC 6749 §3.3: quotes, backslashes and double spaces are malformed."""
        for value in ('a"b', "a\\b", "a  b", "é"):
            with self.assertRaises(InvalidScope):
                parse_scope(value)

    def test_unknown_scope_is_rejected(self) -> None:
        """RFC 6749 §4.1.2.1: an unknown scope is invalid_scope."""
        with self.assertRaises(InvalidScope):
            resolve_scopes(("admin",), supported=SCOPES)

    def test_default_scopes_apply_without_request(self) -> None:
        """Without scope the defaults are granted."""
        self.assertEqual(resolve_scopes((), supported=SCOPES, default=("mcp:read",)), ("mcp:read",))

    def test_scope_beyond_client_registration_is_rejected(self) -> None:
        """RFC 7591: a client gets at most the scopes it registered."""
        with self.assertRaises(InvalidScope):
            resolve_scopes(("mcp:write",), supported=SCOPES, client_scope="mcp:read")

    def test_narrower_scope_is_allowed(self) -> None:
        """O21-9: a refresh may ask for the same or fewer scopes."""
        self.assertEqual(narrower_scopes(("a",), ("a", "b")), ("a",))
        self.assertEqual(narrower_scopes((), ("a", "b")), ("a", "b"))

    def test_wider_scope_is_rejected(self) -> None:
        """ATK-22: a refresh asking for more scope is invalid_scope."""
        with self.assertRaises(InvalidScope):
            narrower_scopes(("a", "c"), ("a", "b"))


class ResourceTests(SynchronousTestCase):
    """RFC 8707 resources and the token audience (MCP-11, BCP-3)."""

    def test_resources_are_canonicalised(self) -> None:
        """MCP-3: upper-case scheme and host and a trailing slash name the same resource."""
        self.assertEqual(
            canonical_resources(["HTTPS://MCP-A.example.test/"], {RESOURCE_A}), (RESOURCE_A,)
        )

    def test_uri_below_a_resource_names_it(self) -> None:
        """MCP-11: the MCP endpoint URL maps to its proxy's resource."""
        self.assertEqual(canonical_resources([RESOURCE_A + "/mcp"], {RESOURCE_A}), (RESOURCE_A,))

    def test_unknown_resource_is_invalid_target(self) -> None:
        """RFC 8707 §2: a resource we do not protect is invalid_target."""
        with self.assertRaises(InvalidTarget):
            canonical_resources(["https://elsewhere.test"], {RESOURCE_A})

    def test_lookalike_host_is_not_below_a_resource(self) -> None:
        """ATK-21: a host that merely starts with the resource's host is another resource."""
        with self.assertRaises(InvalidTarget):
            canonical_resources([RESOURCE_A + ".evil.test"], {RESOURCE_A})

    def test_fragment_or_relative_resource_is_invalid_target(self) -> None:
        """RFC 8707 §2: resource is an absolute URI without a fragment."""
        for value in ("https://mcp-a.example.test/#x", "/mcp", "mcp-a.example.test"):
            with self.assertRaises(InvalidTarget):
                canonical_resources([value])

    def test_audience_is_the_requested_allowed_resources(self) -> None:
        """MCP-11, BCP-3: aud = the requested resources when the user may use them."""
        self.assertEqual(
            resolve_audience((RESOURCE_A,), allowed={RESOURCE_A, RESOURCE_B}), (RESOURCE_A,)
        )

    def test_forbidden_resource_is_invalid_target(self) -> None:
        """Acceptance: a token whose audience includes a forbidden proxy is never minted."""
        with self.assertRaises(InvalidTarget):
            resolve_audience((RESOURCE_A, RESOURCE_B), allowed={RESOURCE_B})

    def test_default_audience_without_resource(self) -> None:
        """Without resource the allowed defaults are the audience; none is invalid_target."""
        self.assertEqual(
            resolve_audience((), allowed={RESOURCE_B}, default=(RESOURCE_A, RESOURCE_B)),
            (RESOURCE_B,),
        )
        with self.assertRaises(InvalidTarget):
            resolve_audience((), allowed={RESOURCE_B})
