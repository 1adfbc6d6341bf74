"""The pure modules chained as the Klein resource will chain them: one whole login."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from attrs import evolve
from joserfc.jwk import KeySet
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.oauth.access import allowed_resources, resolve_audience
from oauthproxy.oauth.authorize import check_authorization_request, success_redirect
from oauthproxy.oauth.consent import (
    approve,
    check_callback_state,
    is_approved,
    login_binding,
    new_login_session,
)
from oauthproxy.oauth.errors import InvalidGrant, InvalidTarget, InvalidToken
from oauthproxy.oauth.grants import issue_code, new_refresh_token, redeem_code, rotate_refresh_token
from oauthproxy.oauth.records import AuthorizationRequest, token_hash
from oauthproxy.oauth.tokens import mint_access_token, verify_access_token
from tests.oauth.samples import (
    ALICE,
    BOB,
    CHALLENGE,
    ISSUER,
    RESOURCE_A,
    RESOURCE_B,
    SCOPES,
    VERIFIER,
    public_client,
    signing_key,
)

SECRET = b"s" * 32
NOW = 1_750_000_000.0
PROXIES = {RESOURCE_A: ("alice",), RESOURCE_B: ()}


class WholeFlowTests(SynchronousTestCase):
    """Authorize, consent, GitHub callback, code, token, guard, refresh."""

    def authorize(self, resources: list[str]) -> AuthorizationRequest:
        """Steps 1-2: the /authorize request of an MCP client is valid."""
        client = public_client()
        request = check_authorization_request(
            {
                "response_type": ["code"],
                "client_id": [client.client_id],
                "redirect_uri": ["http://127.0.0.1:50123/callback"],
                "state": ["client-state"],
                "code_challenge": [CHALLENGE],
                "code_challenge_method": ["S256"],
                "resource": resources,
                "scope": ["mcp:read"],
            },
            client,
            issuer=ISSUER,
            scopes_supported=SCOPES,
            known_resources=set(PROXIES),
        )
        assert isinstance(request, AuthorizationRequest), request
        return request

    def test_login_to_token_to_guard_to_refresh(self) -> None:
        """MCP-10, MCP-11, MCP-20, ATK-21, ATK-22, ATK-24: the happy path and its guards."""
        client = public_client()
        request = self.authorize([RESOURCE_A + "/mcp"])
        # consent first (MCP-20), then the GitHub leg with a browser-bound state
        cookie = approve(SECRET, None, client.client_id, now=NOW)
        self.assertTrue(is_approved(SECRET, cookie, client.client_id, now=NOW + 1))
        session = new_login_session(request, now=NOW + 1)
        back = check_callback_state(
            session,
            session.state,
            now=NOW + 30,
            secret=SECRET,
            binding_cookie=login_binding(SECRET, session.state),
        )
        # GitHub said the user is Alice; she may use A (on its allowlist) and B (open)
        allowed = allowed_resources(ALICE, PROXIES, ("*",))
        audience = resolve_audience(back.request.resources, allowed=allowed)
        code, code_record = issue_code(back.request, ALICE, audience=audience, now=NOW + 31)
        location = success_redirect(back.request, code, ISSUER)
        self.assertEqual(parse_qs(urlsplit(location).query)["iss"], [ISSUER])
        # token endpoint
        redemption = redeem_code(
            code_record,
            client=client,
            code_verifier=VERIFIER,
            redirect_uri="http://127.0.0.1:50123/callback",
            now=NOW + 32,
        )
        self.assertEqual(redemption.used_code.code_hash, token_hash(code))
        token, _ = mint_access_token(
            signing_key(),
            issuer=ISSUER,
            subject=ALICE.subject,
            username=ALICE.username,
            audience=redemption.audience,
            scopes=redemption.family.scopes,
            client_id=client.client_id,
            now=NOW + 32,
            lifetime=60,
        )
        keys = KeySet([signing_key()])
        # the guard of proxy A accepts it, proxy B refuses it (ATK-21)
        claims = verify_access_token(token, keys, issuer=ISSUER, audience=RESOURCE_A, now=NOW + 40)
        self.assertEqual(claims.username, "Alice")
        with self.assertRaises(InvalidToken):
            verify_access_token(token, keys, issuer=ISSUER, audience=RESOURCE_B, now=NOW + 40)
        # refresh after expiry; reuse of the old refresh token later revokes the family
        refresh, refresh_record = new_refresh_token(
            redemption.family, scopes=redemption.family.scopes, now=NOW + 32, lifetime=3600
        )
        self.assertEqual(refresh_record.token_hash, token_hash(refresh))
        rotation = rotate_refresh_token(
            refresh_record, redemption.family, client=client, now=NOW + 100, lifetime=3600
        )
        with self.assertRaises(InvalidGrant) as cm:
            rotate_refresh_token(
                rotation.rotated, redemption.family, client=client, now=NOW + 200, lifetime=3600
            )
        self.assertEqual(cm.exception.revoke_family, redemption.family.family_id)
        # a replay of the code also points at the family (O21-6)
        with self.assertRaises(InvalidGrant) as replay:
            redeem_code(
                redemption.used_code,
                client=client,
                code_verifier=VERIFIER,
                redirect_uri="http://127.0.0.1:50123/callback",
                now=NOW + 33,
            )
        self.assertEqual(replay.exception.revoke_family, redemption.family.family_id)

    def test_user_off_the_allowlist_cannot_get_that_audience(self) -> None:
        """Acceptance: Bob is not on A's allowlist and gets no token including A."""
        request = self.authorize([RESOURCE_A, RESOURCE_B])
        allowed = allowed_resources(BOB, PROXIES, ("*",))
        with self.assertRaises(InvalidTarget):
            resolve_audience(request.resources, allowed=allowed)
        only_b = evolve(request, resources=(RESOURCE_B,))
        self.assertEqual(resolve_audience(only_b.resources, allowed=allowed), (RESOURCE_B,))
