# trial and twisted.web are untyped; mypy strict would flag every assertion and request call
# mypy: disable-error-code="no-untyped-call"
"""Tests for the gateway's guard, in memory with StubTreq and a Clock (no sockets)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from attrs import define, evolve, field
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import server
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface import implementer

from oauthproxy.admin.credentials import hash_token
from oauthproxy.gateway.guard import Answered, Guard
from oauthproxy.gateway.guard_rules import is_excluded, login_allowed
from oauthproxy.gateway.guard_streams import MAX_AUTH_BODY, BodyCollector
from oauthproxy.gateway.headers import upstream_request_headers
from oauthproxy.gateway.routing import Forward
from oauthproxy.gateway.table import LiveTable
from oauthproxy.interfaces import ISnapshotSource
from oauthproxy.model import (
    ApiToken,
    Event,
    OAuthRevocation,
    Proxy,
    ProxyAuth,
    ResourceSettings,
    Route,
    RouteAuth,
    Snapshot,
)
from oauthproxy.oauth.errors import InvalidToken
from oauthproxy.oauth.keys import signing_key_record
from oauthproxy.oauth.records import AccessTokenClaims
from oauthproxy.oauth.tokens import mint_access_token
from oauthproxy.oauth.verifier import SnapshotVerifier
from tests.oauth.samples import signing_key

ISSUER = "https://auth.example.test"
API_TOKEN = "acm_" + "a" * 43
ADMIN_TOKEN = "acm_" + "b" * 43


def claims(
    username: str = "alice",
    scopes: tuple[str, ...] = ("mcp:read",),
    audience: str = "https://mcp.example.test",
    jti: str = "jti-1",
    expires_at: int = 1000,
) -> AccessTokenClaims:
    """Verified claims as the verifier returns them."""
    return AccessTokenClaims(
        issuer=ISSUER,
        subject="1001",
        username=username,
        audience=(audience,),
        scopes=scopes,
        client_id="client-1",
        jti=jti,
        issued_at=0,
        expires_at=expires_at,
    )


@implementer(ISnapshotSource)
@define
class FakeSnapshots:
    """An ISnapshotSource twin: a current snapshot and listeners."""

    current: Snapshot
    listeners: list[Callable[[Snapshot, Event | None], None]] = field(factory=list)
    connected: bool = True

    def subscribe(self, listener: Callable[[Snapshot, Event | None], None]) -> Callable[[], None]:
        """Remember ``listener`` and call it once."""
        self.listeners.append(listener)
        listener(self.current, None)
        return lambda: self.listeners.remove(listener)

    def change(self, snapshot: Snapshot, event: Event) -> None:
        """Replace the snapshot and tell the listeners."""
        self.current = snapshot
        for listener in list(self.listeners):
            listener(snapshot, event)


@define
class FakeVerifier:
    """Token text -> claims; audience checked like the real verifier."""

    tokens: dict[str, AccessTokenClaims] = field(factory=dict)
    audiences: list[str | None] = field(factory=list)

    def check(self, token: str, audience: str | None) -> AccessTokenClaims:
        """The claims, or InvalidToken."""
        self.audiences.append(audience)
        found = self.tokens.get(token)
        if found is None:
            raise InvalidToken("the token is not valid")
        if audience is not None and audience not in found.audience:
            raise InvalidToken("the token is not for this resource")
        return found


def oauth_proxy(hostname: str = "mcp.example.test", **auth: Any) -> Proxy:
    """An OAuth-protected proxy."""
    return Proxy(
        hostname=hostname,
        target_url="http://10.0.0.1",
        auth=ProxyAuth(auth_type="oauth", auth_proxy="auth.example.test", **auth),
    )


@define
class Harness:
    """The guard over a routing table, with a resource doing what the gateway hook does."""

    guard: Guard
    table: LiveTable
    snapshots: FakeSnapshots
    verifier: FakeVerifier
    clock: Clock
    forwarded: list[tuple[Forward, dict[str, list[str]]]] = field(factory=list)
    held: list[Request] = field(factory=list)
    hold: bool = False
    #: delivers what the last client's held requests answered since
    flush: Callable[[], None] = lambda: None

    def client(self) -> Any:
        """A StubTreq on the guarded resource."""
        return StubTreq(_Guarded(self))


class _Guarded(Resource):
    """Route, admit, then record what would be forwarded (with the real header hygiene)."""

    isLeaf = True

    def __init__(self, harness: Harness) -> None:
        super().__init__()
        self.harness = harness

    def render(self, request: Request) -> Any:
        """The hook of ``GatewayResource.render``, with a recording forwarder."""
        host = request.getHeader(b"host")
        decision = self.harness.table.current.decide(host, request.uri, "GET", "https", None)
        verdict = self.harness.guard.admit(request, decision, "https", host)
        if isinstance(verdict, Answered):
            return verdict.body
        assert isinstance(verdict, Forward)
        headers = upstream_request_headers(
            request.requestHeaders,
            client_ip="127.0.0.1",
            scheme="https",
            host=host or b"",
            upstream_netloc=verdict.upstream.netloc,
            preserve_host=True,
            custom=verdict.proxy.custom_request_headers,
        )
        seen = {
            k.decode().lower(): [v.decode() for v in vs] for k, vs in headers.getAllRawHeaders()
        }
        self.harness.forwarded.append((verdict, seen))
        if self.harness.hold:
            self.harness.held.append(request)
            return server.NOT_DONE_YET
        return b"forwarded"


def harness(*proxies: Proxy, routes: tuple[Route, ...] = (), **snap: Any) -> Harness:
    """A guard over ``proxies`` with a fake verifier and a Clock at 0."""
    snapshot = Snapshot(
        proxies={p.hostname: p for p in proxies},
        routes={r.route_id: r for r in routes},
        **snap,
    )
    snapshots = FakeSnapshots(snapshot)
    table = LiveTable()
    table.apply(snapshot)
    verifier = FakeVerifier()
    clock = Clock()
    guard = Guard(snapshots, verifier.check, clock, ISSUER)
    guard.start()
    return Harness(guard, table, snapshots, verifier, clock)


def get(h: Harness, path: str, host: str = "mcp.example.test", **headers: str) -> Any:
    """GET ``path`` on ``host`` through the guard; the response (synchronous)."""
    sent = {"Host": host, **{k.replace("_", "-"): v for k, v in headers.items()}}
    d = h.client().get(f"https://{host}{path}", headers=sent)
    return SynchronousTestCase().successResultOf(d)


def body(h: Harness, response: Any) -> Any:
    """The JSON body of a response."""
    text = SynchronousTestCase().successResultOf(response.content())
    return json.loads(text)


class OAuthChallengeTests(SynchronousTestCase):
    """Requests without a usable token get RFC 6750 / RFC 9728 challenges."""

    def test_no_token_is_401_with_resource_metadata(self) -> None:
        """MCP-2: 401 names the protected-resource metadata URL and the scopes."""
        h = harness(oauth_proxy(required_scopes=("mcp:read",)))
        response = get(h, "/mcp")
        self.assertEqual(response.code, 401)
        [challenge] = response.headers.getRawHeaders("www-authenticate")
        self.assertEqual(
            challenge,
            'Bearer resource_metadata="https://mcp.example.test/.well-known/'
            'oauth-protected-resource", scope="mcp:read"',
        )
        self.assertEqual(h.forwarded, [])

    def test_query_string_token_is_ignored(self) -> None:
        """MCP-16: an access_token in the query string is never read."""
        h = harness(oauth_proxy())
        h.verifier.tokens["good"] = claims()
        response = get(h, "/mcp?access_token=good")
        self.assertEqual(response.code, 401)
        self.assertEqual(h.verifier.audiences, [])

    def test_invalid_token_is_401_invalid_token(self) -> None:
        """MCP-17: a token the verifier refuses (expired, revoked, forged) is invalid_token."""
        h = harness(oauth_proxy())
        response = get(h, "/mcp", Authorization="Bearer forged")
        self.assertEqual(response.code, 401)
        [challenge] = response.headers.getRawHeaders("www-authenticate")
        self.assertIn('error="invalid_token"', challenge)

    def test_audience_is_the_proxy_resource(self) -> None:
        """ATK-21, MCP-17: a token for proxy A is refused by proxy B."""
        h = harness(oauth_proxy("a.example.test"), oauth_proxy("b.example.test"))
        h.verifier.tokens["for-a"] = claims(audience="https://a.example.test")
        self.assertEqual(get(h, "/", "a.example.test", Authorization="Bearer for-a").code, 200)
        self.assertEqual(get(h, "/", "b.example.test", Authorization="Bearer for-a").code, 401)
        self.assertEqual(h.verifier.audiences, ["https://a.example.test", "https://b.example.test"])

    def test_two_authorization_headers_are_no_credential(self) -> None:
        """RFC 6750 §2: more than one Authorization header is refused."""
        h = harness(oauth_proxy())
        h.verifier.tokens["good"] = claims()
        request_headers = {"Host": ["mcp.example.test"], "Authorization": ["Bearer good"] * 2}
        d = h.client().get("https://mcp.example.test/", headers=request_headers)
        self.assertEqual(self.successResultOf(d).code, 401)

    def test_missing_scope_is_403_listing_all_scopes(self) -> None:
        """MCP-18: insufficient_scope names every scope the resource needs."""
        h = harness(oauth_proxy(required_scopes=("mcp:read", "mcp:write")))
        h.verifier.tokens["read"] = claims(scopes=("mcp:read",))
        response = get(h, "/mcp", Authorization="Bearer read")
        self.assertEqual(response.code, 403)
        [challenge] = response.headers.getRawHeaders("www-authenticate")
        self.assertIn('scope="mcp:read mcp:write"', challenge)
        self.assertIn('error="insufficient_scope"', challenge)

    def test_user_not_on_allowlist_is_403(self) -> None:
        """BCP-3: a user missing from the proxy's allowlist is refused."""
        h = harness(oauth_proxy(required_users=("bob",)))
        h.verifier.tokens["alice"] = claims(username="alice")
        response = get(h, "/", Authorization="Bearer alice")
        self.assertEqual(response.code, 403)
        self.assertEqual(body(h, response)["error"], "access_denied")

    def test_user_not_on_global_allowlist_is_403(self) -> None:
        """OAUTH_ALLOWED_GITHUB_USERS applies to every proxy."""
        h = harness(oauth_proxy())
        h.guard.allowed_users = ("bob",)
        h.verifier.tokens["alice"] = claims(username="Alice")
        self.assertEqual(get(h, "/", Authorization="Bearer alice").code, 403)


class OAuthAdmittedTests(SynchronousTestCase):
    """What reaches the backend for an admitted request."""

    def admitted(self, **headers: str) -> dict[str, list[str]]:
        """Forward one authorized request; the upstream headers."""
        h = harness(oauth_proxy(required_users=("ALICE",)))
        h.verifier.tokens["good"] = claims(scopes=("mcp:read", "mcp:write"))
        response = get(h, "/mcp", Authorization="Bearer good", **headers)
        self.assertEqual(response.code, 200)
        [(_decision, seen)] = h.forwarded
        return seen

    def test_token_not_forwarded(self) -> None:
        """MCP-19: the client's Authorization header never goes upstream."""
        self.assertNotIn("authorization", self.admitted())

    def test_identity_headers_set(self) -> None:
        """BCP-6: the user, scopes and client reach the backend in our headers."""
        seen = self.admitted()
        self.assertEqual(seen["x-auth-user"], ["alice"])
        self.assertEqual(seen["x-auth-scopes"], ["mcp:read mcp:write"])
        self.assertEqual(seen["x-auth-client-id"], ["client-1"])

    def test_inbound_identity_headers_cannot_spoof(self) -> None:
        """ATK-5, ATK-6: client copies of X-Auth-* (any spelling) are replaced by ours."""
        seen = self.admitted(X_Auth_User="mallory", x_auth_scopes="admin")
        self.assertEqual(seen["x-auth-user"], ["alice"])
        self.assertEqual(seen["x-auth-scopes"], ["mcp:read mcp:write"])
        self.assertNotIn("x_auth_user", seen)


class MetadataTests(SynchronousTestCase):
    """RFC 9728 documents served by the guard for each protected proxy."""

    def test_root_well_known(self) -> None:
        """MCP-1, MCP-3: the document names the proxy's canonical resource and our issuer."""
        h = harness(oauth_proxy(required_scopes=("mcp:read", "offline_access")))
        response = get(h, "/.well-known/oauth-protected-resource")
        self.assertEqual(response.code, 200)
        doc = body(h, response)
        self.assertEqual(doc["resource"], "https://mcp.example.test")
        self.assertEqual(doc["authorization_servers"], [ISSUER])
        self.assertEqual(doc["scopes_supported"], ["mcp:read"])
        self.assertEqual(doc["bearer_methods_supported"], ["header"])

    def test_path_inserted_well_known(self) -> None:
        """MCP-2: the path-inserted URL clients try first is served too."""
        h = harness(oauth_proxy())
        response = get(h, "/.well-known/oauth-protected-resource/mcp")
        self.assertEqual(response.code, 200)

    def test_host_header_never_used(self) -> None:
        """ATK-8: a Host with another port or case does not leak into the document."""
        h = harness(oauth_proxy())
        doc = body(h, get(h, "/.well-known/oauth-protected-resource", "MCP.example.test:8443"))
        self.assertEqual(doc["resource"], "https://mcp.example.test")


class ExcludedPathTests(SynchronousTestCase):
    """Excluded paths pass without a token, matched without the query."""

    def test_excluded_path_passes(self) -> None:
        """An excluded path is forwarded without authentication."""
        h = harness(oauth_proxy(excluded_paths=("/health",)))
        self.assertEqual(get(h, "/health").code, 200)
        self.assertEqual(get(h, "/health/deep").code, 200)

    def test_query_cannot_fake_an_excluded_path(self) -> None:
        """ATK-11: ``/mcp?/health`` is ``/mcp``, not an excluded path."""
        h = harness(oauth_proxy(excluded_paths=("/health",)))
        self.assertEqual(get(h, "/mcp?/health").code, 401)

    def test_dot_segments_cannot_escape_into_a_protected_path(self) -> None:
        """ATK-11: ``/health/../mcp`` is the canonical ``/mcp``."""
        h = harness(oauth_proxy(excluded_paths=("/health",)))
        self.assertEqual(get(h, "/health/%2e%2e/mcp").code, 401)

    def test_patterns(self) -> None:
        """``*`` is any run of characters; a plain pattern covers its subtree only."""
        self.assertTrue(is_excluded("/static/app.js", ["/static/*"]))
        self.assertTrue(is_excluded("/static", ["/static/*"]))
        self.assertFalse(is_excluded("/staticx", ["/static"]))
        self.assertTrue(is_excluded("/a/b/c.png", ["/*.png"]))


class ApiTokenTests(SynchronousTestCase):
    """``bearer`` and ``admin`` proxies and routes take our API tokens."""

    def tokens(self) -> dict[str, ApiToken]:
        """One ordinary token and the admin token, by digest."""
        return {
            "ci": ApiToken(name="ci", token_hash=hash_token(API_TOKEN)),
            "admin": ApiToken(name="admin", token_hash=hash_token(ADMIN_TOKEN), is_admin=True),
        }

    def proxy(self, auth_type: str) -> Proxy:
        """A proxy requiring ``auth_type``."""
        return Proxy(
            hostname="api.example.test",
            target_url="http://10.0.0.2",
            auth=ProxyAuth(auth_type=auth_type),  # type: ignore[arg-type]
        )

    def test_bearer_accepts_any_api_token(self) -> None:
        """A snapshot token passes a ``bearer`` proxy and is named to the backend."""
        h = harness(self.proxy("bearer"), tokens=self.tokens())
        response = get(h, "/", "api.example.test", Authorization=f"Bearer {API_TOKEN}")
        self.assertEqual(response.code, 200)
        [(_d, seen)] = h.forwarded
        self.assertEqual(seen["x-auth-user"], ["ci"])
        self.assertNotIn("authorization", seen)

    def test_bearer_refuses_unknown_token(self) -> None:
        """An unknown value is 401."""
        h = harness(self.proxy("bearer"), tokens=self.tokens())
        response = get(h, "/", "api.example.test", Authorization="Bearer acm_nope")
        self.assertEqual(response.code, 401)

    def test_admin_requires_the_admin_token(self) -> None:
        """An ordinary token is 403 on an ``admin`` proxy; the admin token passes."""
        h = harness(self.proxy("admin"), tokens=self.tokens())
        ordinary = get(h, "/", "api.example.test", Authorization=f"Bearer {API_TOKEN}")
        self.assertEqual(ordinary.code, 403)
        admin = get(h, "/", "api.example.test", Authorization=f"Bearer {ADMIN_TOKEN}")
        self.assertEqual(admin.code, 200)

    def test_route_overrides_proxy_auth(self) -> None:
        """A route with ``override_proxy_auth`` replaces the proxy's requirement."""
        route = Route(
            route_id="open",
            path_pattern="/public",
            target_type="url",
            target_value="http://10.0.0.3",
            auth=RouteAuth(auth_type="none", override_proxy_auth=True),
        )
        h = harness(oauth_proxy(), routes=(route,))
        self.assertEqual(get(h, "/public").code, 200)
        self.assertEqual(get(h, "/private").code, 401)

    def test_route_oauth_scopes(self) -> None:
        """An oauth route's own scopes apply instead of the proxy's."""
        route = Route(
            route_id="write",
            path_pattern="/write",
            target_type="url",
            target_value="http://10.0.0.3",
            auth=RouteAuth(auth_type="oauth", override_proxy_auth=True, oauth_scopes=("w",)),
        )
        h = harness(oauth_proxy(), routes=(route,))
        h.verifier.tokens["r"] = claims(scopes=("mcp:read",))
        self.assertEqual(get(h, "/write", Authorization="Bearer r").code, 403)
        self.assertEqual(get(h, "/read", Authorization="Bearer r").code, 200)


class ModeTests(SynchronousTestCase):
    """Passthrough leaves authentication to the backend."""

    def test_passthrough_forwards_untouched(self) -> None:
        """``auth_mode: passthrough``: no check, the backend sees the Authorization header."""
        h = harness(oauth_proxy(auth_mode="passthrough"))
        response = get(h, "/", Authorization="Bearer whatever")
        self.assertEqual(response.code, 200)
        [(_d, seen)] = h.forwarded
        self.assertEqual(seen["authorization"], ["Bearer whatever"])

    def test_unprotected_proxy_untouched(self) -> None:
        """A proxy without auth is forwarded as it is."""
        h = harness(Proxy(hostname="mcp.example.test", target_url="http://10.0.0.1"))
        self.assertEqual(get(h, "/", Authorization="Bearer x").code, 200)
        [(_d, seen)] = h.forwarded
        self.assertEqual(seen["authorization"], ["Bearer x"])


class StreamLifetimeTests(SynchronousTestCase):
    """ATK-27: long responses end when their token expires or is revoked."""

    def waiting(self) -> tuple[Harness, Request, Any]:
        """An admitted request still waiting for its upstream, and its pending response."""
        h = harness(oauth_proxy())
        h.hold = True
        h.verifier.tokens["good"] = claims(expires_at=60)
        client = h.client()
        d = client.get(
            "https://mcp.example.test/sse",
            headers={"Host": "mcp.example.test", "Authorization": "Bearer good"},
        )
        self.assertNoResult(d)
        [request] = h.held
        h.flush = client.flush
        return h, request, d

    def streaming(self) -> tuple[Harness, Request]:
        """An admitted request whose response has started and stays open."""
        h, request, _ = self.waiting()
        request.write(b"")  # the head is out (as the forwarder sends it)
        return h, request

    def revoke(self, h: Harness) -> None:
        """Publish the revocation of the test token's jti."""
        revoked = OAuthRevocation(jti="jti-1", expires_at=60.0)
        snapshot = Snapshot(
            proxies=h.snapshots.current.proxies, oauth_revocations={"jti-1": revoked}
        )
        h.snapshots.change(snapshot, Event("2-0", "put", "oauth_revocation", "jti-1"))

    def test_stream_closed_at_expiry(self) -> None:
        """ATK-27: the stream is aborted when ``exp`` passes."""
        h, request = self.streaming()
        transport: Any = request.channel.transport
        h.clock.advance(59)
        self.assertFalse(transport.disconnecting)
        h.clock.advance(1)
        self.assertTrue(transport.disconnecting or transport.disconnected)

    def test_stream_closed_on_revocation(self) -> None:
        """ATK-27, MCP-17: revoking the token's jti aborts its open stream at once."""
        h, request = self.streaming()
        transport: Any = request.channel.transport
        self.revoke(h)
        self.assertTrue(transport.disconnecting or transport.disconnected)
        self.assertEqual(h.guard.streams.watched, {})

    def test_request_waiting_for_upstream_gets_401_on_revocation(self) -> None:
        """MCP-17: a revoked token's request with no answer yet gets a clean 401, not an abort.

        (That the connection then serves on is checked on the wire, in
        ``tests/integration/test_revocation_races.py``.)
        """
        h, _, d = self.waiting()
        self.revoke(h)
        h.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 401)
        [challenge] = response.headers.getRawHeaders("www-authenticate")
        self.assertIn('error="invalid_token"', challenge)
        self.assertIn("revoked", challenge)
        self.assertEqual(body(h, response)["error"], "invalid_token")
        self.assertEqual(h.guard.streams.watched, {})

    def test_request_waiting_for_upstream_gets_401_at_expiry(self) -> None:
        """ATK-27: the token expiring before the upstream answered is a 401 too."""
        h, _, d = self.waiting()
        h.clock.advance(60)
        h.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 401)
        self.assertIn("expired", response.headers.getRawHeaders("www-authenticate")[0])

    def test_revocation_leaves_other_tokens_requests_alone(self) -> None:
        """Only requests carrying the revoked jti are ended."""
        h, request = self.streaming()
        transport: Any = request.channel.transport
        revoked = OAuthRevocation(jti="another", expires_at=60.0)
        snapshot = Snapshot(
            proxies=h.snapshots.current.proxies, oauth_revocations={"another": revoked}
        )
        h.snapshots.change(snapshot, Event("2-0", "put", "oauth_revocation", "another"))
        self.assertFalse(transport.disconnecting or transport.disconnected)
        self.assertEqual(len(h.guard.streams.watched), 1)

    def test_finished_request_forgets_timer(self) -> None:
        """A request that finished is no longer watched, its timer cancelled."""
        h, request = self.streaming()
        request.write(b"done")
        request.finish()
        self.assertEqual(h.guard.streams.watched, {})
        self.assertEqual(h.clock.getDelayedCalls(), [])


class AllowlistTests(SynchronousTestCase):
    """Login matching at the guard."""

    def test_login_case_insensitive(self) -> None:
        """GitHub logins compare case-insensitively; ``*`` allows everyone."""
        self.assertTrue(login_allowed("Alice", ("alice",)))
        self.assertTrue(login_allowed("bob", ("*",)))
        self.assertFalse(login_allowed("bob", ("alice",)))
        self.assertTrue(login_allowed("bob", ()))


class _AuthServer(Resource):
    """Stands in for the authorization server: echoes path and body."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        """``auth:<path>:<body>``."""
        content = request.content.read() if request.content is not None else b""
        return b"auth:/" + b"/".join(request.postpath or []) + b":" + content


class AuthHostTests(SynchronousTestCase):
    """The issuer's hostname is answered by the authorization server itself."""

    def guarded(self) -> Harness:
        """A harness whose guard knows the auth host ``auth.example.test``."""
        h = harness(oauth_proxy())
        h.guard.auth_resource = _AuthServer()
        h.guard.auth_hosts = frozenset({"auth.example.test"})
        return h

    def test_auth_host_served_by_the_server(self) -> None:
        """Requests for the issuer's host go to the authorization server, not upstream."""
        h = self.guarded()
        response = get(h, "/.well-known/oauth-authorization-server", "auth.example.test")
        self.assertEqual(response.code, 200)
        text = self.successResultOf(response.content())
        self.assertEqual(text, b"auth:/.well-known/oauth-authorization-server:")
        self.assertEqual(h.forwarded, [])

    def test_auth_host_post_body_reaches_the_server(self) -> None:
        """A form body (spooled here) is what the server reads."""
        h = self.guarded()
        d = h.client().post(
            "https://auth.example.test/token",
            data=b"grant_type=x",
            headers={"Host": "auth.example.test"},
        )
        self.assertEqual(
            self.successResultOf(self.successResultOf(d).content()), b"auth:/token:grant_type=x"
        )

    def test_other_hosts_not_intercepted(self) -> None:
        """A protected proxy's own host is still guarded."""
        h = self.guarded()
        self.assertEqual(get(h, "/").code, 401)


class _Producer:
    """A streamed-body twin: records stopProducing."""

    stopped = False

    def stopProducing(self) -> None:
        """Note it."""
        self.stopped = True


class BodyCollectorTests(SynchronousTestCase):
    """The authorization server's streamed bodies are collected with a limit."""

    def test_collects_chunks(self) -> None:
        """Chunks are kept in order."""
        collector = BodyCollector(_Producer())
        collector.write(b"a=1")
        collector.write(b"&b=2")
        self.assertEqual(b"".join(collector.chunks), b"a=1&b=2")

    def test_too_large_stops_the_body(self) -> None:
        """Past MAX_AUTH_BODY the body is stopped and nothing is kept."""
        producer = _Producer()
        collector = BodyCollector(producer)
        collector.write(b"x" * (MAX_AUTH_BODY + 1))
        self.assertTrue(collector.too_large)
        self.assertTrue(producer.stopped)
        self.assertEqual(collector.chunks, [])


class RealVerifierTests(SynchronousTestCase):
    """The guard with the daemon's SnapshotVerifier and real signed tokens."""

    def setUp(self) -> None:
        """A snapshot holding our signing key, a guard verifying against it."""
        key = signing_key()
        record = signing_key_record(key, box=None, now=0.0)
        self.h = harness(oauth_proxy(), oauth_signing_keys={record.kid: record})
        self.verifier = SnapshotVerifier(self.h.snapshots, self.h.clock, ISSUER)
        self.h.guard.check_token = self.verifier.check
        self.token, self.claims = mint_access_token(
            key,
            issuer=ISSUER,
            subject="1001",
            username="alice",
            audience=("https://mcp.example.test",),
            scopes=("read",),
            client_id="c",
            now=0.0,
            lifetime=60,
        )

    def test_signed_token_admitted(self) -> None:
        """A valid token of ours for this proxy passes."""
        self.assertEqual(get(self.h, "/", Authorization=f"Bearer {self.token}").code, 200)

    def test_revoked_token_refused(self) -> None:
        """MCP-17: once the snapshot holds its revocation, the token is refused."""
        revoked = OAuthRevocation(jti=self.claims.jti, expires_at=60.0)
        current = self.h.snapshots.current
        snapshot = Snapshot(
            proxies=current.proxies,
            oauth_signing_keys=current.oauth_signing_keys,
            oauth_revocations={self.claims.jti: revoked},
        )
        self.h.snapshots.change(snapshot, Event("2-0", "put", "oauth_revocation", "x"))
        self.assertEqual(get(self.h, "/", Authorization=f"Bearer {self.token}").code, 401)

    def test_expired_token_refused(self) -> None:
        """O21-10: after ``exp`` the token is refused."""
        self.h.clock.advance(61)
        self.assertEqual(get(self.h, "/", Authorization=f"Bearer {self.token}").code, 401)

    def test_token_for_another_proxy_refused(self) -> None:
        """ATK-21: a signed token whose audience is another resource is refused."""
        other = oauth_proxy("other.example.test")
        snapshot = Snapshot(
            proxies={**self.h.snapshots.current.proxies, other.hostname: other},
            oauth_signing_keys=self.h.snapshots.current.oauth_signing_keys,
        )
        self.h.table.apply(snapshot)
        self.h.snapshots.current = snapshot
        response = get(self.h, "/", "other.example.test", Authorization=f"Bearer {self.token}")
        self.assertEqual(response.code, 401)


class ResourceSettingsTests(SynchronousTestCase):
    """``/proxy/targets/{hostname}/resource`` settings shape what the guard checks and serves."""

    def proxy(self) -> Proxy:
        """A protected proxy whose resource URI names a port."""
        return evolve(
            oauth_proxy(),
            oauth_resource=ResourceSettings(
                resource="https://mcp.example.test:8443/", resource_name="Tools"
            ),
        )

    def test_configured_resource_is_the_audience(self) -> None:
        """MCP-3: the audience checked is the configured (canonical) resource URI."""
        h = harness(self.proxy())
        h.verifier.tokens["t"] = claims(audience="https://mcp.example.test:8443")
        self.assertEqual(get(h, "/", Authorization="Bearer t").code, 200)
        self.assertEqual(h.verifier.audiences, ["https://mcp.example.test:8443"])

    def test_configured_resource_in_metadata_and_challenge(self) -> None:
        """MCP-2: the challenge and the document name the configured resource."""
        h = harness(self.proxy())
        [challenge] = get(h, "/mcp").headers.getRawHeaders("www-authenticate")
        self.assertIn(
            "https://mcp.example.test:8443/.well-known/oauth-protected-resource", challenge
        )
        doc = body(h, get(h, "/.well-known/oauth-protected-resource"))
        self.assertEqual(doc["resource"], "https://mcp.example.test:8443")
        self.assertEqual(doc["resource_name"], "Tools")

    def test_authorization_server_metadata_at_proxy_host(self) -> None:
        """MCP-4: RFC 8414 metadata asked for at the proxy's own host comes from the server."""
        h = harness(oauth_proxy())
        asked: list[str] = []

        def proxy_metadata(request: Request, hostname: str) -> bytes:
            asked.append(hostname)
            return b'{"issuer": "x"}'

        h.guard.proxy_metadata = proxy_metadata
        response = get(h, "/.well-known/oauth-authorization-server")
        self.assertEqual(response.code, 200)
        self.assertEqual(asked, ["mcp.example.test"])
        self.assertEqual(h.forwarded, [])


class TokenNeverForwardedTests(SynchronousTestCase):
    """MCP-19 also where an OAuth-protected proxy asks for no token."""

    def test_excluded_path_drops_authorization(self) -> None:
        """MCP-19: a token sent to an excluded path of an OAuth proxy is not forwarded."""
        h = harness(oauth_proxy(excluded_paths=("/health",)))
        self.assertEqual(get(h, "/health", Authorization="Bearer secret").code, 200)
        [(_d, seen)] = h.forwarded
        self.assertNotIn("authorization", seen)

    def test_open_route_drops_authorization(self) -> None:
        """MCP-19: a route without auth on an OAuth proxy does not get the token either."""
        route = Route(
            route_id="open",
            path_pattern="/public",
            target_type="url",
            target_value="http://10.0.0.3",
            auth=RouteAuth(auth_type="none", override_proxy_auth=True),
        )
        h = harness(oauth_proxy(), routes=(route,))
        self.assertEqual(get(h, "/public", Authorization="Bearer secret").code, 200)
        [(_d, seen)] = h.forwarded
        self.assertNotIn("authorization", seen)
