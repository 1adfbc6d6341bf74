"""The OAuthServer's other endpoints in memory: registration, token services, mounting."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.oauth.records import InitialAccessToken, token_hash
from tests.admin.harness import Harness
from tests.oauth.samples import CLIENT_SECRET, confidential_client
from tests.oauth.server_harness import (
    ISSUER,
    REDIRECT,
    RESOURCE,
    VERIFIER,
    Answer,
    OAuthHarness,
)


class RegistrationTests(SynchronousTestCase):
    """RFC 7591/7592 registration (ATK-28)."""

    def setUp(self) -> None:
        self.h = OAuthHarness(
            self, max_clients=2, client_lifetime=100.0, unused_client_lifetime=10.0
        )

    def test_identical_metadata_gives_the_same_client(self) -> None:
        """ATK-28: registering the same public client twice returns one client_id."""
        self.assertEqual(self.h.register()["client_id"], self.h.register()["client_id"])

    def test_full_registry_makes_room_by_evicting_an_unused_client(self) -> None:
        """ATK-37, ATK-28: at the cap the oldest never-used client goes, not the newcomer."""
        first = self.h.register(client_name="one")["client_id"]
        self.h.clock.advance(1)
        self.h.register(client_name="two")
        self.h.clock.advance(1)
        self.h.register(client_name="three")
        self.assertIsNone(self.successResultOf(self.h.storage.oauth.get_client(first)))

    def test_registrations_are_capped_when_every_client_is_used(self) -> None:
        """ATK-28: when every client completed an authorization, the cap holds: 503."""
        for name in ("one", "two"):
            client_id = self.h.register(client_name=name)["client_id"]
            self.successResultOf(self.h.storage.oauth.touch_client(client_id, 1.0))
        answer = self.h.call(
            "POST", "/register", body={"redirect_uris": [REDIRECT], "client_name": "three"}
        )
        self.assertEqual(answer.status, 503)

    def test_never_used_clients_are_reaped_early(self) -> None:
        """ATK-37: a client that completed no authorization goes after the short lifetime."""
        client_id = self.h.register()["client_id"]
        self.h.clock.advance(11)
        self.successResultOf(Deferred.fromCoroutine(self.h.server.revoker.reap()))
        self.assertIsNone(self.successResultOf(self.h.storage.oauth.get_client(client_id)))

    def test_used_clients_are_reaped_after_the_lifetime(self) -> None:
        """ATK-28: a client used once stays the whole lifetime after that use."""
        client_id = self.h.register()["client_id"]
        self.successResultOf(self.h.storage.oauth.touch_client(client_id, self.h.clock.seconds()))
        self.h.clock.advance(50)
        self.successResultOf(Deferred.fromCoroutine(self.h.server.revoker.reap()))
        self.assertIsNotNone(self.successResultOf(self.h.storage.oauth.get_client(client_id)))
        self.h.clock.advance(51)
        self.successResultOf(Deferred.fromCoroutine(self.h.server.revoker.reap()))
        self.assertIsNone(self.successResultOf(self.h.storage.oauth.get_client(client_id)))

    def test_wildcard_redirect_uri_is_refused(self) -> None:
        """O21-4, MCP-13: ``https://*.example.test/cb`` could never match exactly: 400."""
        answer = self.h.call(
            "POST",
            "/register",
            body={"redirect_uris": ["https://*.example.test/cb"], "client_name": "wild"},
        )
        self.assertEqual(answer.status, 400, answer.body)
        self.assertEqual(answer.json()["error"], "invalid_redirect_uri")
        self.assertEqual(self.successResultOf(self.h.storage.oauth.list_clients()), [])

    def test_registration_token_reads_the_client(self) -> None:
        """RFC 7592: the registration access token reads the client; a wrong one is 401."""
        body = self.h.register()
        uri = body["registration_client_uri"]
        token = body["registration_access_token"]
        ok = self.h.call("GET", uri, headers={"Authorization": f"Bearer {token}"})
        bad = self.h.call("GET", uri, headers={"Authorization": "Bearer wrong"})
        self.assertEqual((ok.status, bad.status), (200, 401))


class ClosedRegistrationTests(SynchronousTestCase):
    """``OAUTH_REGISTRATION=token``: initial access tokens (RFC 7591 §3, ATK-37)."""

    def setUp(self) -> None:
        """A server with token-only registration and one token allowing two uses."""
        self.h = OAuthHarness(self, registration="token")
        token = InitialAccessToken(
            name="ci", token_hash=token_hash("oit_secret"), created_at=0.0, max_uses=2
        )
        self.successResultOf(self.h.storage.oauth.put_initial_token(token))

    def register(self, body: object, token: str | None = "oit_secret") -> Answer:
        """POST /register with ``token`` as bearer."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.h.call("POST", "/register", body=body, headers=headers)

    def test_invalid_registration_does_not_spend_a_use(self) -> None:
        """ATK-37: metadata is checked first; a refused registration costs no use."""
        self.assertEqual(self.register({"redirect_uris": []}).status, 400)
        [token] = self.successResultOf(self.h.storage.oauth.list_initial_tokens())
        self.assertEqual(token.uses, 0)

    def test_wrong_token_gets_a_bearer_challenge(self) -> None:
        """RFC 6750 §3: 401 invalid_token with WWW-Authenticate."""
        answer = self.register({"redirect_uris": [REDIRECT]}, token="oit_wrong")
        self.assertEqual((answer.status, answer.json()["error"]), (401, "invalid_token"))
        self.assertEqual(answer.header("www-authenticate"), 'Bearer error="invalid_token"')

    def test_metadata_still_advertises_registration(self) -> None:
        """RFC 8414: token-only registration keeps ``registration_endpoint``."""
        metadata = self.h.call("GET", "/.well-known/oauth-authorization-server").json()
        self.assertEqual(metadata["registration_endpoint"], f"{ISSUER}/register")


class TokenServiceTests(SynchronousTestCase):
    """Introspection, revocation, JWKS, metadata and /verify."""

    def setUp(self) -> None:
        self.h = OAuthHarness(self)
        self.h.add_proxy("mcp.example.test", scopes=("read",))
        self.client_id = self.h.register()["client_id"]
        self.tokens = self.h.tokens(self.client_id, resource=RESOURCE, scope="read")

    def test_revoked_access_token_is_refused_by_the_verifier(self) -> None:
        """MCP-17: /revoke publishes a revocation; the mirror applies it; verify refuses."""
        access = self.tokens["access_token"]
        answer = self.h.call("POST", "/revoke", form={"token": access, "client_id": self.client_id})
        self.assertEqual(answer.status, 200)
        self.assertIsNone(self.h.server.verifier.verify(access))

    def test_revoking_an_unknown_token_is_200(self) -> None:
        """RFC 7009 §2.2: an unknown token is not an error."""
        answer = self.h.call(
            "POST", "/revoke", form={"token": "nonsense", "client_id": self.client_id}
        )
        self.assertEqual(answer.status, 200)

    def test_public_client_cannot_introspect(self) -> None:
        """Introspection is protected: a public client is refused."""
        answer = self.h.call(
            "POST",
            "/introspect",
            form={"token": self.tokens["access_token"], "client_id": self.client_id},
        )
        self.assertEqual(answer.status, 401)

    def test_metadata_issuer_comes_from_configuration(self) -> None:
        """ATK-8, MCP-5, MCP-12: issuer exact whatever Host says; S256 and iss advertised."""
        answer = self.h.call(
            "GET",
            "http://evil.example/.well-known/oauth-authorization-server",
            headers={"Host": "evil.example"},
        )
        document = answer.json()
        self.assertEqual(document["issuer"], ISSUER)
        self.assertEqual(document["code_challenge_methods_supported"], ["S256"])
        self.assertTrue(document["authorization_response_iss_parameter_supported"])

    def test_openid_configuration_is_served(self) -> None:
        """MCP-4: the OpenID discovery path carries the same document."""
        answer = self.h.call("GET", "/.well-known/openid-configuration")
        self.assertEqual(answer.json()["token_endpoint"], ISSUER + "/token")

    def test_jwks_lists_the_signing_key(self) -> None:
        """The JWKS has the public key only."""
        keys = self.h.call("GET", "/jwks").json()["keys"]
        self.assertEqual(len(keys), 1)
        self.assertNotIn("d", keys[0])

    def test_verify_accepts_a_token_for_the_host(self) -> None:
        """/verify answers 200 with the user for a token whose audience is the host."""
        answer = self.h.call(
            "GET",
            "/verify",
            headers={
                "Authorization": f"Bearer {self.tokens['access_token']}",
                "X-Forwarded-Host": "mcp.example.test",
            },
        )
        self.assertEqual(answer.status, 200)
        self.assertEqual(answer.header("x-auth-request-user"), "alice")

    def test_verify_challenges_without_a_token(self) -> None:
        """MCP-2, MCP-18: 401 with resource_metadata and the needed scope."""
        answer = self.h.call("GET", "/verify", headers={"X-Forwarded-Host": "mcp.example.test"})
        self.assertEqual(answer.status, 401)
        challenge = answer.header("www-authenticate") or ""
        self.assertIn('resource_metadata="https://mcp.example.test/.well-known/', challenge)
        self.assertIn('scope="read"', challenge)


class TrustedClientTests(SynchronousTestCase):
    """A pre-registered confidential client (source "static")."""

    def setUp(self) -> None:
        """The harness knows the sample confidential client."""
        self.client = confidential_client()
        self.h = OAuthHarness(self, static_clients=(self.client,))
        self.redirect = self.client.redirect_uris[0]

    def query(self, **extra: str) -> str:
        """An /authorize path for the confidential client."""
        return self.h.authorize_query(self.client.client_id, redirect_uri=self.redirect, **extra)

    def test_provoked_error_is_redirected_with_iss(self) -> None:
        """ATK-24, O21-15: an error to a trusted client is redirected and carries iss."""
        answer = self.h.call("GET", self.query(scope="bogus"))
        self.assertEqual(answer.status, 303)
        params = parse_qs(urlsplit(answer.header("location") or "").query)
        self.assertEqual(params["error"], ["invalid_scope"])
        self.assertEqual(params["iss"], [ISSUER])
        self.assertEqual(params["state"], ["client-state"])

    def test_wrong_secret_is_invalid_client_with_challenge(self) -> None:
        """O21-11: a wrong client secret is 401 invalid_client with WWW-Authenticate."""
        basic = base64.b64encode(f"{self.client.client_id}:wrong".encode()).decode()
        answer = self.h.call(
            "POST",
            "/token",
            form={"grant_type": "authorization_code", "code": "x"},
            headers={"Authorization": f"Basic {basic}"},
        )
        self.assertEqual((answer.status, answer.json()["error"]), (401, "invalid_client"))
        self.assertIn("Basic", answer.header("www-authenticate") or "")

    def test_confidential_client_introspects_an_active_token(self) -> None:
        """RFC 7662: a confidential client learns that a live token is active."""
        page = self.h.call("GET", self.query())
        to_github = self.h.consent(page)
        callback = self.h.github_redirect(to_github)
        back = self.h.call("GET", callback.replace("https://auth.example.test", ""))
        code = parse_qs(urlsplit(back.header("location") or "").query)["code"][0]
        basic = base64.b64encode(f"{self.client.client_id}:{CLIENT_SECRET}".encode()).decode()
        auth = {"Authorization": f"Basic {basic}"}
        tokens = self.h.call(
            "POST",
            "/token",
            form={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect,
                "code_verifier": VERIFIER,
            },
            headers=auth,
        ).json()
        answer = self.h.call(
            "POST", "/introspect", form={"token": tokens["access_token"]}, headers=auth
        )
        self.assertEqual((answer.json()["active"], answer.json()["username"]), (True, "alice"))

    def test_unsupported_grant_type(self) -> None:
        """O21-7: the password grant does not exist here."""
        basic = base64.b64encode(f"{self.client.client_id}:{CLIENT_SECRET}".encode()).decode()
        answer = self.h.call(
            "POST",
            "/token",
            form={"grant_type": "password", "username": "a", "password": "b"},
            headers={"Authorization": f"Basic {basic}"},
        )
        self.assertEqual(answer.json()["error"], "unsupported_grant_type")


class ManagementTests(SynchronousTestCase):
    """RFC 7592 update and delete, and a path issuer's metadata."""

    def test_client_deletes_its_registration(self) -> None:
        """RFC 7592: DELETE with the registration token removes the client."""
        h = OAuthHarness(self)
        body = h.register()
        auth = {"Authorization": f"Bearer {body['registration_access_token']}"}
        answer = h.call("DELETE", body["registration_client_uri"], headers=auth)
        self.assertEqual(answer.status, 204)
        client = self.successResultOf(h.storage.oauth.get_client(body["client_id"]))
        self.assertIsNone(client)

    def test_issuer_with_path_uses_path_inserted_metadata(self) -> None:
        """MCP-4, RFC 8414 §3.1: metadata of an issuer with a path is path-inserted."""
        h = OAuthHarness(self, issuer="https://auth.example.test/tenant")
        inserted = h.call("GET", "/.well-known/oauth-authorization-server/tenant")
        root = h.call("GET", "/.well-known/oauth-authorization-server")
        self.assertEqual(inserted.json()["issuer"], "https://auth.example.test/tenant")
        self.assertNotEqual(root.status, 200)


class FailureTests(SynchronousTestCase):
    """Failures outside the protocol are OAuth errors too."""

    def test_storage_outage_is_temporarily_unavailable(self) -> None:
        """With the store down, /token answers 503 temporarily_unavailable."""
        h = OAuthHarness(self)
        client_id = h.register()["client_id"]
        h.storage.set_available(False)
        answer = h.token(grant_type="refresh_token", refresh_token="x", client_id=client_id)
        self.assertEqual((answer.status, answer.json()["error"]), (503, "temporarily_unavailable"))

    def test_unknown_path_is_404_json(self) -> None:
        """An unrouted path is a JSON 404, not a server error."""
        answer = OAuthHarness(self).call("GET", "/nonexistent")
        self.assertEqual((answer.status, answer.json()), (404, {"error": "not_found"}))


class MountTests(SynchronousTestCase):
    """The server mounted on the admin API listener next to the admin resources."""

    def test_admin_api_serves_the_protocol_endpoints(self) -> None:
        """AdminAPI.resource(server) answers the OAuth metadata and keeps /health."""
        oauth = OAuthHarness(self)
        admin = Harness(self, extra=lambda context: [oauth.server])
        metadata = admin.call("GET", "/.well-known/oauth-authorization-server")
        self.assertEqual(metadata.json()["issuer"], ISSUER)
        self.assertEqual(admin.call("GET", "/health").status, 200)
