"""Tests for :mod:`oauthproxy.oauth.grants`: client auth, code redemption, refresh rotation."""

from __future__ import annotations

import base64
from typing import Any

from attrs import evolve
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.oauth.errors import InvalidClient, InvalidGrant, InvalidScope, InvalidTarget
from oauthproxy.oauth.grants import (
    TOKEN_RESPONSE_HEADERS,
    CodeRedemption,
    Replay,
    Rotation,
    authenticate_client,
    issue_code,
    new_refresh_token,
    parse_basic_auth,
    redeem_code,
    rotate_refresh_token,
    token_response,
)
from oauthproxy.oauth.records import AuthorizationCode, RefreshTokenRecord, TokenFamily, token_hash
from tests.oauth.samples import (
    ALICE,
    CLIENT_SECRET,
    RESOURCE_A,
    RESOURCE_B,
    VERIFIER,
    authorization_request,
    confidential_client,
    public_client,
)

NOW = 1_700_000_000.0
DAY = 86400.0


def code_record(**overrides: Any) -> tuple[str, AuthorizationCode]:
    """A code for the public client, audience A and B, with overrides."""
    code, record = issue_code(
        authorization_request(), ALICE, audience=(RESOURCE_A, RESOURCE_B), now=NOW
    )
    return code, evolve(record, **overrides)


class ClientAuthTests(SynchronousTestCase):
    """Client authentication at the token endpoint (O21-11)."""

    def test_basic_header_is_parsed_and_urldecoded(self) -> None:
        """RFC 6749 §2.3.1: id and secret are form-urlencoded inside Basic."""
        header = "Basic " + base64.b64encode(b"my%3Aclient:p%40ss+word").decode()
        self.assertEqual(parse_basic_auth(header), ("my:client", "p@ss word"))

    def test_malformed_basic_header_is_none(self) -> None:
        """Anything but valid Basic credentials yields None."""
        for header in (None, "Bearer x", "Basic !!!", "Basic " + base64.b64encode(b"x").decode()):
            self.assertIsNone(parse_basic_auth(header))

    def test_confidential_client_with_right_secret(self) -> None:
        """O21-11: the secret is accepted whether it came by Basic or in the body."""
        client = confidential_client()
        self.assertEqual(authenticate_client(client, secret=CLIENT_SECRET, now=NOW), client)

    def test_wrong_or_missing_secret_is_invalid_client(self) -> None:
        """RFC 6749 §5.2: a wrong or missing secret is 401 invalid_client."""
        for secret in ("wrong", None, ""):
            with self.assertRaises(InvalidClient) as cm:
                authenticate_client(confidential_client(), secret=secret, now=NOW)
            self.assertEqual(cm.exception.status, 401)

    def test_expired_secret_is_invalid_client(self) -> None:
        """RFC 7591: a secret past client_secret_expires_at is refused."""
        client = evolve(confidential_client(), client_secret_expires_at=NOW)
        with self.assertRaises(InvalidClient):
            authenticate_client(client, secret=CLIENT_SECRET, now=NOW)

    def test_public_client_needs_no_secret_and_may_not_send_one(self) -> None:
        """MCP-10: public clients authenticate with nothing."""
        client = public_client()
        self.assertEqual(authenticate_client(client, secret=None, now=NOW), client)
        with self.assertRaises(InvalidClient):
            authenticate_client(client, secret="guess", now=NOW)

    def test_unknown_client_is_invalid_client(self) -> None:
        """RFC 6749 §5.2: an unknown client is invalid_client."""
        with self.assertRaises(InvalidClient):
            authenticate_client(None, secret=None, now=NOW)


class CodeTests(SynchronousTestCase):
    """Authorization codes: single use, short-lived, bound (O21-6)."""

    def redeem(self, record: AuthorizationCode | None, **overrides: object) -> CodeRedemption:
        """Redeem with the right client, verifier and redirect URI unless overridden."""
        args: dict[str, object] = {
            "client": public_client(),
            "code_verifier": VERIFIER,
            "redirect_uri": "https://app.example.test/cb",
            "now": NOW + 5,
        }
        args.update(overrides)
        return redeem_code(record, **args)  # type: ignore[arg-type]

    def test_code_is_stored_hashed_and_short_lived(self) -> None:
        """O21-6: the code is kept as a hash and lives at most ten minutes."""
        code, record = issue_code(
            authorization_request(), ALICE, audience=(RESOURCE_A,), now=NOW, lifetime=3600
        )
        self.assertEqual(record.code_hash, token_hash(code))
        self.assertEqual(record.expires_at, NOW + 600)

    def test_valid_redemption_marks_code_used_and_opens_family(self) -> None:
        """O21-6: redemption returns the used code and a family bound to client and user."""
        _, record = code_record()
        result = self.redeem(record)
        self.assertEqual(result.used_code.used_at, NOW + 5)
        family = result.family
        self.assertEqual(
            (family.family_id, family.client_id, family.user),
            (record.family_id, "client-pub", ALICE),
        )
        self.assertEqual(result.audience, (RESOURCE_A, RESOURCE_B))

    def test_second_redemption_revokes_the_family(self) -> None:
        """O21-6, ATK-20: a code used twice is refused and its family must be revoked."""
        _, record = code_record(used_at=NOW + 1)
        with self.assertRaises(InvalidGrant) as cm:
            self.redeem(record)
        self.assertEqual(cm.exception.revoke_family, record.family_id)

    def test_code_past_ten_minutes_is_refused(self) -> None:
        """O21-6, ATK-20: a code past its lifetime is invalid_grant."""
        _, record = code_record()
        self.redeem(record, now=NOW + 599)
        with self.assertRaises(InvalidGrant):
            self.redeem(record, now=NOW + 600)

    def test_code_of_another_client_is_refused(self) -> None:
        """ATK-20: a code presented by a second client is invalid_grant."""
        _, record = code_record()
        with self.assertRaises(InvalidGrant) as cm:
            self.redeem(record, client=confidential_client())
        self.assertIsNone(cm.exception.revoke_family)

    def test_wrong_verifier_is_refused(self) -> None:
        """ATK-20: a wrong code_verifier is invalid_grant."""
        _, record = code_record()
        with self.assertRaises(InvalidGrant):
            self.redeem(record, code_verifier="w" * 43)

    def test_verifier_for_code_without_challenge_is_refused(self) -> None:
        """O21-3, ATK-20: the PKCE downgrade is blocked."""
        _, record = code_record(code_challenge=None, code_challenge_method=None)
        with self.assertRaises(InvalidGrant):
            self.redeem(record)

    def test_changed_redirect_uri_is_refused(self) -> None:
        """O21-7, ATK-2: the token request's redirect_uri must equal the authorize one."""
        _, record = code_record()
        for uri in ("https://app.example.test/cb/", None, "http://127.0.0.1/callback"):
            with self.assertRaises(InvalidGrant):
                self.redeem(record, redirect_uri=uri)

    def test_redirect_uri_may_be_omitted_if_authorize_omitted_it(self) -> None:
        """O21-7: OAuth 2.1 clients send no redirect_uri when authorize had none."""
        _, record = code_record(redirect_uri_given=False)
        self.redeem(record, redirect_uri=None)

    def test_unknown_code_is_refused(self) -> None:
        """O21-6: an unknown code is invalid_grant."""
        with self.assertRaises(InvalidGrant):
            self.redeem(None)

    def test_token_request_may_narrow_the_audience(self) -> None:
        """MCP-11, RFC 8707 §2.2: resource at the token endpoint selects a subset."""
        _, record = code_record()
        result = self.redeem(record, resources=[RESOURCE_B])
        self.assertEqual(result.audience, (RESOURCE_B,))

    def test_token_request_cannot_widen_the_audience(self) -> None:
        """MCP-11, ATK-21: a resource outside the code's audience is invalid_target."""
        _, record = code_record(audience=(RESOURCE_A,))
        with self.assertRaises(InvalidTarget):
            self.redeem(record, resources=[RESOURCE_B])


class RefreshTests(SynchronousTestCase):
    """Refresh-token rotation with reuse detection (BCP-4, O21-9, MCP-14)."""

    def setUp(self) -> None:
        """A family for the public client and its first refresh token."""
        self.client = public_client()
        self.family = TokenFamily(
            family_id="fam-1",
            client_id=self.client.client_id,
            user=ALICE,
            scopes=("mcp:read", "mcp:write"),
            audience=(RESOURCE_A, RESOURCE_B),
            created_at=NOW,
        )
        self.token, self.record = new_refresh_token(
            self.family, scopes=self.family.scopes, now=NOW, lifetime=30 * DAY
        )

    def outcome(
        self, record: RefreshTokenRecord | None = None, **overrides: object
    ) -> Rotation | Replay:
        """Use ``record`` (default: the first token) one hour later."""
        args: dict[str, Any] = {"client": self.client, "now": NOW + 3600, "lifetime": 30 * DAY}
        args.update(overrides)
        family: TokenFamily = args.pop("family", self.family)
        return rotate_refresh_token(record or self.record, family, **args)

    def rotate(self, record: RefreshTokenRecord | None = None, **overrides: object) -> Rotation:
        """Rotate ``record``; the rotation (a replay fails the test)."""
        outcome = self.outcome(record, **overrides)
        assert isinstance(outcome, Rotation), outcome
        return outcome

    def test_rotation_issues_successor_and_marks_old_used(self) -> None:
        """MCP-14, O21-9: each refresh returns a new token and retires the old one."""
        rotation = self.rotate()
        self.assertNotEqual(rotation.new_token, self.token)
        self.assertEqual(rotation.new_record.token_hash, token_hash(rotation.new_token))
        self.assertEqual(rotation.rotated.rotated_at, NOW + 3600)
        self.assertEqual(rotation.rotated.replaced_by, rotation.new_record.token_hash)
        self.assertEqual(rotation.new_record.family_id, "fam-1")

    def test_successor_never_outlives_the_original(self) -> None:
        """O21-9: rotation does not extend the refresh token's absolute lifetime."""
        rotation = self.rotate()
        self.assertEqual(rotation.new_record.expires_at, self.record.expires_at)

    def test_any_reuse_revokes_family(self) -> None:
        """ATK-34, BCP-4, ATK-22: a rotated token used again, even at once, revokes the family."""
        used = evolve(self.record, rotated_at=NOW + 3600, replaced_by="first-successor")
        for later in (0.0, 0.001, 10.0, 3600.0):
            with self.assertRaises(InvalidGrant) as cm:
                self.outcome(used, now=NOW + 3600 + later)
            self.assertEqual(cm.exception.revoke_family, "fam-1")

    def test_retry_inside_the_window_replays_the_kept_pair(self) -> None:
        """ATK-34: inside a configured retry window the rotation's own answer is replayed."""
        used = evolve(self.record, rotated_at=NOW + 3600, sealed_response="sealed")
        outcome = self.outcome(used, now=NOW + 3630, retry_window=30.0)
        self.assertEqual(outcome, Replay(used))

    def test_retry_after_the_window_is_reuse(self) -> None:
        """ATK-34: past the retry window a retry is reuse: the family is revoked."""
        used = evolve(self.record, rotated_at=NOW + 3600, sealed_response="sealed")
        with self.assertRaises(InvalidGrant) as cm:
            self.outcome(used, now=NOW + 3631, retry_window=30.0)
        self.assertEqual(cm.exception.revoke_family, "fam-1")

    def test_retry_without_a_kept_answer_is_reuse(self) -> None:
        """ATK-34: a window never mints a new pair: without the kept answer it is reuse."""
        used = evolve(self.record, rotated_at=NOW + 3600)
        with self.assertRaises(InvalidGrant):
            self.outcome(used, now=NOW + 3601, retry_window=30.0)

    def test_wider_scope_is_rejected(self) -> None:
        """ATK-22: a refresh asking for a scope beyond the grant is invalid_scope."""
        with self.assertRaises(InvalidScope):
            self.rotate(requested_scopes=("mcp:read", "admin"))

    def test_narrower_scope_keeps_refresh_scope(self) -> None:
        """O21-9: the access token may be narrowed; the refresh token keeps its scope."""
        rotation = self.rotate(requested_scopes=("mcp:read",))
        self.assertEqual(rotation.scopes, ("mcp:read",))
        self.assertEqual(rotation.new_record.scopes, ("mcp:read", "mcp:write"))

    def test_other_clients_token_is_rejected(self) -> None:
        """ATK-22, O21-9: a refresh with another client's credentials is invalid_grant."""
        with self.assertRaises(InvalidGrant) as cm:
            self.rotate(client=confidential_client())
        self.assertIsNone(cm.exception.revoke_family)

    def test_revoked_family_is_rejected(self) -> None:
        """BCP-4: once the family is revoked, none of its tokens refresh."""
        with self.assertRaises(InvalidGrant):
            self.rotate(family=evolve(self.family, revoked_at=NOW + 1))

    def test_expired_refresh_token_is_rejected(self) -> None:
        """O21-9: an expired refresh token is invalid_grant."""
        with self.assertRaises(InvalidGrant):
            self.rotate(now=NOW + 30 * DAY)

    def test_unknown_token_is_rejected(self) -> None:
        """O21-9: a forged or guessed refresh token finds no record and is refused."""
        with self.assertRaises(InvalidGrant):
            rotate_refresh_token(None, self.family, client=self.client, now=NOW, lifetime=DAY)

    def test_resource_outside_family_is_invalid_target(self) -> None:
        """MCP-11: refresh cannot add a resource to the audience."""
        with self.assertRaises(InvalidTarget):
            self.rotate(resources=["https://other.example.test"])

    def test_lost_allowlist_membership_narrows_audience(self) -> None:
        """A user removed from a proxy's allowlist loses it at the next refresh."""
        rotation = self.rotate(allowed={RESOURCE_B})
        self.assertEqual(rotation.audience, (RESOURCE_B,))
        with self.assertRaises(InvalidTarget):
            self.rotate(allowed=set())


class TokenResponseTests(SynchronousTestCase):
    """The token endpoint's answer."""

    def test_response_body_and_no_store(self) -> None:
        """O21-8: token responses are Bearer JSON sent with Cache-Control: no-store."""
        body = token_response("at", expires_in=300, scopes=("a", "b"), refresh_token="rt")
        self.assertEqual(
            body,
            {
                "access_token": "at",
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "a b",
                "refresh_token": "rt",
            },
        )
        self.assertIn(("Cache-Control", "no-store"), TOKEN_RESPONSE_HEADERS)
