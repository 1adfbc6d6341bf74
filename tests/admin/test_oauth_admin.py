"""Tests for ``/oauth/``: clients, sessions, tokens, revocation and metrics (admin only)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.model import OAuthAccessToken
from oauthproxy.oauth.records import TokenFamily, UserIdentity, token_hash
from tests.admin.harness import Harness
from tests.oauth.samples import public_client


class OAuthAdminTests(SynchronousTestCase):
    """The OAuth admin endpoints over the memory store."""

    def setUp(self) -> None:
        """One client with one session and one live access token of alice."""
        self.h = Harness(self)
        self.oauth = self.h.storage.oauth
        now = self.h.clock.seconds()
        self.successResultOf(self.oauth.put_client(public_client(client_id="c1")))
        family = TokenFamily(
            family_id="fam-1",
            client_id="c1",
            user=UserIdentity(subject="1", username="alice"),
            scopes=("read",),
            audience=("https://mcp.example.test",),
            created_at=now,
        )
        self.successResultOf(self.oauth.put_family(family, now + 3600))
        token = OAuthAccessToken(
            jti="jti-1", family_id="fam-1", client_id="c1", username="alice", expires_at=now + 60
        )
        self.successResultOf(self.oauth.put_access_token(token))

    def test_lists_clients_without_secrets(self) -> None:
        """GET /oauth/clients shows the client and no secret field."""
        answer = self.h.call("GET", "/oauth/clients", token=self.h.admin_token)
        self.assertEqual(answer.status, 200)
        item = answer.json()["items"][0]
        self.assertEqual(item["client_id"], "c1")
        self.assertNotIn("client_secret_hash", item)

    def test_non_admin_token_is_forbidden(self) -> None:
        """Only the admin token may see OAuth state."""
        other = self.h.add_token("ci")
        self.assertEqual(self.h.call("GET", "/oauth/clients", token=other).status, 403)

    def test_lists_sessions_by_user(self) -> None:
        """GET /oauth/sessions?username=alice lists her session."""
        answer = self.h.call("GET", "/oauth/sessions?username=alice", token=self.h.admin_token)
        self.assertEqual([s["session_id"] for s in answer.json()["items"]], ["fam-1"])

    def test_revoke_by_user_revokes_sessions_and_tokens(self) -> None:
        """MCP-17: POST /oauth/revoke publishes revocations for the user's live tokens."""
        answer = self.h.call(
            "POST", "/oauth/revoke", token=self.h.admin_token, body={"username": "alice"}
        )
        self.assertEqual(answer.json(), {"sessions": 1, "access_tokens": 1})
        revocation = self.successResultOf(self.oauth.revocations.get("jti-1"))
        self.assertIsNotNone(revocation)

    def test_revoke_needs_a_target(self) -> None:
        """An empty revoke request is refused, naming the field."""
        answer = self.h.call("POST", "/oauth/revoke", token=self.h.admin_token, body={})
        self.h.assert_error(answer, 422, "invalid_input", "/username")

    def test_delete_client(self) -> None:
        """DELETE /oauth/clients/{id} forgets the client; a second delete is 404."""
        first = self.h.call("DELETE", "/oauth/clients/c1", token=self.h.admin_token)
        second = self.h.call("DELETE", "/oauth/clients/c1", token=self.h.admin_token)
        self.assertEqual((first.status, second.status), (204, 404))

    def test_metrics_count_state(self) -> None:
        """GET /oauth/metrics counts clients, sessions and live tokens."""
        metrics = self.h.call("GET", "/oauth/metrics", token=self.h.admin_token).json()
        self.assertEqual(metrics["clients"]["dcr"], 1)
        self.assertEqual(metrics["sessions_active"], 1)
        self.assertEqual(metrics["access_tokens_live"], 1)

    def test_pre_registered_confidential_client_gets_its_secret_once(self) -> None:
        """POST /oauth/clients stores a static client; only the digest of its secret."""
        answer = self.h.call(
            "POST",
            "/oauth/clients",
            token=self.h.admin_token,
            body={
                "client_name": "CI",
                "redirect_uris": ["https://ci.example.com/cb"],
                "token_endpoint_auth_method": "client_secret_basic",
            },
        )
        self.assertEqual(answer.status, 201, answer.body)
        created = answer.json()
        stored = self.successResultOf(self.oauth.get_client(created["client_id"]))
        assert stored is not None
        self.assertEqual(stored.source, "static")
        self.assertEqual(stored.client_secret_hash, token_hash(created["client_secret"]))

    def test_bad_redirect_uri_names_the_field(self) -> None:
        """An invalid redirect URI is refused with 422 naming it."""
        answer = self.h.call(
            "POST",
            "/oauth/clients",
            token=self.h.admin_token,
            body={"client_name": "CI", "redirect_uris": ["javascript:alert(1)"]},
        )
        self.h.assert_error(answer, 422, "invalid_input")
