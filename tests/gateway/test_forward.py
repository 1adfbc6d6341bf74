"""Tests for the forwarder's pure parts and upstream connection settings."""

from __future__ import annotations

from typing import Any

from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from oauthproxy.gateway.forward import wants_websocket
from oauthproxy.gateway.routing import Upstream, parse_upstream
from oauthproxy.gateway.upstreams import UnusableUpstreamTLS, UpstreamConnector, tls_creator
from oauthproxy.model import Proxy


def upstream(url: str, **kw: Any) -> Upstream:
    """An Upstream for ``url`` with proxy settings ``kw``."""
    return parse_upstream(url, Proxy(hostname="h", target_url=url, **kw))


class TlsSettingsTests(SynchronousTestCase):
    """Upstream HTTPS is verified unless a proxy explicitly opts out."""

    def test_verification_is_on_by_default(self) -> None:
        """The default creator is Twisted's hostname-verifying client options."""
        creator = tls_creator(upstream("https://api.example"))
        self.assertIsInstance(creator, type(optionsForClientTLS("x")))

    def test_verification_off_only_when_asked(self) -> None:
        """``verify_upstream_tls=False`` gives the unverified creator."""
        creator = tls_creator(upstream("https://api.example", verify_upstream_tls=False))
        self.assertNotIsInstance(creator, type(optionsForClientTLS("x")))

    def test_different_tls_settings_do_not_share_connections(self) -> None:
        """The pool key includes verification and CA bundle."""
        a = upstream("https://api.example")
        b = upstream("https://api.example", verify_upstream_tls=False)
        self.assertNotEqual(a.key, b.key)

    def test_endpoint_is_built_once_per_upstream(self) -> None:
        """No per-request endpoint construction: the second lookup is the cached object."""
        connector = UpstreamConnector(MemoryReactorClock())
        u = upstream("http://127.0.0.1:8080")
        self.assertIs(connector.endpoint(u, 5.0), connector.endpoint(u, 5.0))

    def test_broken_ca_bundle_is_a_named_error(self) -> None:
        """A CA bundle that does not load raises an error naming the field."""
        u = upstream(
            "https://api.example",
            upstream_ca_pem="-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----",
        )
        error = self.assertRaises(UnusableUpstreamTLS, tls_creator, u)
        self.assertEqual(error.field, "upstream_ca_pem")


class UpgradeTests(SynchronousTestCase):
    """Which requests the WebSocket tunnel takes."""

    def test_websocket_get_is_an_upgrade(self) -> None:
        """HTTP/1.1 GET with ``Upgrade: websocket``."""
        request = DummyRequest([b""])
        request.requestHeaders.addRawHeader(b"upgrade", b"WebSocket")
        request.clientproto = b"HTTP/1.1"
        self.assertTrue(wants_websocket(request))  # type: ignore[arg-type]

    def test_h2c_is_not_an_upgrade(self) -> None:
        """ATK-16: ``Upgrade: h2c`` is not tunnelled."""
        request = DummyRequest([b""])
        request.requestHeaders.addRawHeader(b"upgrade", b"h2c")
        request.clientproto = b"HTTP/1.1"
        self.assertFalse(wants_websocket(request))  # type: ignore[arg-type]
