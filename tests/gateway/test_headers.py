"""Tests for header hygiene (ATK-5, ATK-6, ATK-7, BCP-6)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from oauthproxy.gateway.headers import (
    copy_response_headers,
    is_owned,
    upstream_request_headers,
)


def rebuild(pairs: list[tuple[bytes, bytes]], **kw: Any) -> Headers:
    """Run ``upstream_request_headers`` over raw (name, value) pairs."""
    inbound = Headers()
    for name, value in pairs:
        inbound.addRawHeader(name, value)
    args: dict[str, Any] = {
        "client_ip": "192.0.2.7",
        "scheme": "https",
        "host": b"web.example",
        "upstream_netloc": b"10.0.0.1:8080",
        "preserve_host": True,
    }
    args.update(kw)
    return upstream_request_headers(inbound, **args)


#: spellings of headers a client must never get through
_SPOOFS = st.sampled_from(
    [
        b"X-Forwarded-For",
        b"x-forwarded-host",
        b"X_Forwarded_Host",
        b"X-FORWARDED-PROTO",
        b"x_forwarded_uri",
        b"X-Forwarded-Prefix",
        b"Forwarded",
        b"X-Real-IP",
        b"x_real_ip",
        b"X-Auth-User",
        b"x-user-email",
        b"X_User_Id",
        b"True-Client-IP",
        b"X-Original-URL",
    ]
)


class RequestHeaderTests(SynchronousTestCase):
    """What the upstream receives."""

    def test_forwarded_headers_come_from_the_connection(self) -> None:
        """ATK-5: a client-sent X-Forwarded-For is replaced by the transport's address."""
        out = rebuild([(b"X-Forwarded-For", b"6.6.6.6"), (b"X-Real-IP", b"6.6.6.6")])
        self.assertEqual(out.getRawHeaders(b"x-forwarded-for"), [b"192.0.2.7"])
        self.assertEqual(out.getRawHeaders(b"x-real-ip"), [b"192.0.2.7"])
        self.assertEqual(out.getRawHeaders(b"x-forwarded-proto"), [b"https"])
        self.assertEqual(out.getRawHeaders(b"x-forwarded-host"), [b"web.example"])

    def test_connection_cannot_nominate_our_headers(self) -> None:
        """ATK-7: ``Connection: close, X-Forwarded-For`` does not delete what we add."""
        out = rebuild([(b"Connection", b"close, X-Forwarded-For, X-Real-IP")])
        self.assertEqual(out.getRawHeaders(b"x-forwarded-for"), [b"192.0.2.7"])
        self.assertEqual(out.getRawHeaders(b"x-real-ip"), [b"192.0.2.7"])

    def test_connection_nominated_client_headers_are_removed(self) -> None:
        """RFC 9110: names listed in Connection are hop-by-hop."""
        out = rebuild([(b"Connection", b"x-secret"), (b"X-Secret", b"1"), (b"X-Keep", b"1")])
        self.assertFalse(out.hasHeader(b"x-secret"))
        self.assertFalse(out.hasHeader(b"connection"))
        self.assertEqual(out.getRawHeaders(b"x-keep"), [b"1"])

    def test_hop_by_hop_and_length_are_removed(self) -> None:
        """TE, Upgrade, Keep-Alive, Proxy-Authorization, Content-Length, Expect do not pass."""
        out = rebuild(
            [
                (b"TE", b"trailers"),
                (b"Upgrade", b"h2c"),
                (b"Keep-Alive", b"5"),
                (b"Proxy-Authorization", b"Basic x"),
                (b"Content-Length", b"5"),
                (b"Expect", b"100-continue"),
            ]
        )
        for name in (
            b"te",
            b"upgrade",
            b"keep-alive",
            b"proxy-authorization",
            b"content-length",
            b"expect",
        ):
            self.assertFalse(out.hasHeader(name), name)

    def test_websocket_upgrade_keeps_upgrade(self) -> None:
        """With ``upgrade=True`` the handshake headers survive."""
        out = rebuild([(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")], upgrade=True)
        self.assertEqual(out.getRawHeaders(b"upgrade"), [b"websocket"])
        self.assertEqual(out.getRawHeaders(b"connection"), [b"Upgrade"])

    def test_host_is_preserved(self) -> None:
        """``preserve_host_header=True`` sends the client's Host."""
        out = rebuild([(b"Host", b"web.example")])
        self.assertEqual(out.getRawHeaders(b"host"), [b"web.example"])

    def test_host_is_replaced_when_not_preserved(self) -> None:
        """``preserve_host_header=False`` sends the upstream's authority."""
        out = rebuild([(b"Host", b"web.example")], preserve_host=False)
        self.assertEqual(out.getRawHeaders(b"host"), [b"10.0.0.1:8080"])

    def test_custom_headers_replace_client_values(self) -> None:
        """A proxy's custom request header wins over the client's."""
        out = rebuild([(b"X-Tenant", b"evil")], custom=(("X-Tenant", "acme"),))
        self.assertEqual(out.getRawHeaders(b"x-tenant"), [b"acme"])

    def test_custom_headers_cannot_spoof_forwarding(self) -> None:
        """Forwarding headers are set after custom ones."""
        out = rebuild([], custom=(("X-Forwarded-For", "1.1.1.1"),))
        self.assertEqual(out.getRawHeaders(b"x-forwarded-for"), [b"192.0.2.7"])

    def test_repeated_headers_are_kept(self) -> None:
        """Multi-value headers keep every value in order."""
        out = rebuild([(b"Accept", b"a"), (b"Accept", b"b")])
        self.assertEqual(out.getRawHeaders(b"accept"), [b"a", b"b"])

    def test_identity_headers_are_set_last(self) -> None:
        """ATK-6: identity headers from the guard replace any client copy."""
        out = rebuild([(b"X-User-Id", b"root")], identity=[(b"X-User-Id", b"alice")])
        self.assertEqual(out.getRawHeaders(b"x-user-id"), [b"alice"])

    @given(
        st.lists(
            st.tuples(_SPOOFS, st.binary(min_size=1, max_size=20).map(bytes.strip)), max_size=8
        )
    )
    def test_no_spoofed_header_survives(self, spoofs: list[tuple[bytes, bytes]]) -> None:
        """ATK-5/6, BCP-6: no alias or case form of an owned header reaches the upstream."""
        pairs = [(n, v.replace(b"\r", b"").replace(b"\n", b"") or b"v") for n, v in spoofs]
        out = rebuild([*pairs, (b"Connection", b", ".join(n for n, _ in pairs) or b"close")])
        for name, values in out.getAllRawHeaders():
            if is_owned(name):
                self.assertIn(
                    name.lower(),
                    (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-real-ip"),
                )
                self.assertEqual(len(values), 1)
        self.assertEqual(out.getRawHeaders(b"x-forwarded-for"), [b"192.0.2.7"])


class ResponseHeaderTests(SynchronousTestCase):
    """What the client receives."""

    def test_hop_by_hop_removed_and_length_and_cookies_kept(self) -> None:
        """Content-Length is copied, Set-Cookie repeats are kept, Connection is dropped."""
        upstream = Headers()
        for name, value in [
            (b"Content-Length", b"12"),
            (b"Set-Cookie", b"a=1"),
            (b"Set-Cookie", b"b=2"),
            (b"Connection", b"keep-alive, X-Internal"),
            (b"X-Internal", b"1"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Content-Encoding", b"gzip"),
        ]:
            upstream.addRawHeader(name, value)
        into = Headers()
        copy_response_headers(upstream, into, (("X-Frame-Options", "DENY"),))
        self.assertEqual(into.getRawHeaders(b"content-length"), [b"12"])
        self.assertEqual(into.getRawHeaders(b"set-cookie"), [b"a=1", b"b=2"])
        self.assertEqual(into.getRawHeaders(b"content-encoding"), [b"gzip"])
        self.assertEqual(into.getRawHeaders(b"x-frame-options"), [b"DENY"])
        for name in (b"connection", b"x-internal", b"transfer-encoding"):
            self.assertFalse(into.hasHeader(name), name)


class IdentityHeaderTests(SynchronousTestCase):
    """Issue 10 defect 8: identity headers from clients never reach the backend."""

    def test_identity_families_of_other_proxies_are_stripped(self) -> None:
        """Remote-User, oauth2-proxy, Authelia, Pomerium, Vouch, cloud proxies..."""
        names = [
            b"Remote-User", b"Remote-Groups", b"X-Remote-User", b"X-Auth-Request-Email",
            b"X-Pomerium-Claim-Email", b"X-Vouch-User", b"X-Webauth-User", b"X-User",
            b"Cf-Access-Authenticated-User-Email", b"X-Amzn-Oidc-Identity",
            b"X-Ms-Client-Principal-Name", b"X-Goog-Authenticated-User-Email",
        ]  # fmt: skip
        out = rebuild([(name, b"eve") for name in names] + [(b"X-Request-Id", b"r")])
        for name in names:
            self.assertFalse(out.hasHeader(name), name)
        self.assertEqual(out.getRawHeaders(b"x-request-id"), [b"r"])

    def test_names_with_underscores_are_dropped_unless_kept(self) -> None:
        """Like nginx: ``X_Tenant`` could be read as ``X-Tenant`` by a backend."""
        self.assertFalse(rebuild([(b"X_Tenant", b"a")]).hasHeader(b"X_Tenant"))
        kept = rebuild([(b"X_Tenant", b"a")], keep_underscores=True)
        self.assertEqual(kept.getRawHeaders(b"X_Tenant"), [b"a"])

    def test_per_proxy_strip_list(self) -> None:
        """Names in ``strip`` are dropped; a custom header of that name is still set."""
        out = rebuild(
            [(b"X-Tenant", b"client"), (b"X-Role", b"admin")],
            strip=frozenset({b"x-tenant", b"x-role"}),
            custom=(("X-Tenant", "ours"),),
        )
        self.assertEqual(out.getRawHeaders(b"x-tenant"), [b"ours"])
        self.assertFalse(out.hasHeader(b"x-role"))
