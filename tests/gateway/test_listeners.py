"""Tests for :mod:`oauthproxy.gateway.listeners`: the layer order of every listener.

A ``MemoryReactor`` records what would be bound; the factory it was given
shows the stack, outermost first.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import MemoryReactor
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from oauthproxy.config import Config
from oauthproxy.errors import ConfigError
from oauthproxy.gateway.listeners import (
    gateway_endpoints,
    gateway_listeners,
    http_listener,
    https_listener,
    proxy_http_listener,
    proxy_https_listener,
    with_backlog,
)
from oauthproxy.gateway.proxyproto import TrustedNetworks, TrustedProxyFactory
from oauthproxy.gateway.sni import CertificateMap
from oauthproxy.gateway.tls import _thd_generate_fallback

_TRUSTED = TrustedNetworks.parse(["127.0.0.0/8"])


def _ready_map() -> CertificateMap:
    certificate_map = CertificateMap()
    certificate_map.set_fallback(_thd_generate_fallback(1_800_000_000.0))
    return certificate_map


class ListenerStackTests(SynchronousTestCase):
    """Each builder binds the plain socket and layers TLS / PROXY in code."""

    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.site = Site(Resource())

    def _bound(self, service: Any) -> tuple[int, Any, str]:
        service.startService()
        self.addCleanup(service.stopService)
        port, factory, _, interface = self.reactor.tcpServers[-1]
        return port, factory, interface

    def test_http_serves_the_site_directly(self) -> None:
        """``http`` binds the endpoint with the Site itself."""
        port, factory, interface = self._bound(
            http_listener(self.reactor, "tcp:8080:interface=127.0.0.1", self.site)
        )
        self.assertEqual((port, interface), (8080, "127.0.0.1"))
        self.assertIs(factory, self.site)

    def test_https_wraps_the_site_in_tls(self) -> None:
        """``https``: socket -> TLS (the certificate map) -> Site."""
        certificate_map = _ready_map()
        _, factory, _ = self._bound(
            https_listener(self.reactor, "tcp:8443", self.site, certificate_map)
        )
        self.assertIsInstance(factory, TLSMemoryBIOFactory)
        self.assertIs(factory.wrappedFactory, self.site)

    def test_https_binds_only_once_certificates_are_ready(self) -> None:
        """No TLS port is bound before the fallback certificate is loaded."""
        certificate_map = CertificateMap()
        service = https_listener(self.reactor, "tcp:8443", self.site, certificate_map)
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(self.reactor.tcpServers, [])
        certificate_map.set_fallback(_thd_generate_fallback(1_800_000_000.0))
        self.assertEqual(len(self.reactor.tcpServers), 1)

    def test_proxy_http_reads_proxy_then_http(self) -> None:
        """``proxy-http``: socket -> PROXY -> Site."""
        _, factory, _ = self._bound(
            proxy_http_listener(self.reactor, "tcp:10080", self.site, _TRUSTED, 5.0)
        )
        self.assertIsInstance(factory, TrustedProxyFactory)
        self.assertIs(factory.wrappedFactory, self.site)

    def test_proxy_https_reads_proxy_before_tls(self) -> None:
        """``proxy-https``: socket -> PROXY -> TLS -> Site (the header precedes the ClientHello)."""
        _, factory, _ = self._bound(
            proxy_https_listener(self.reactor, "tcp:10443", self.site, _ready_map(), _TRUSTED, 5.0)
        )
        self.assertIsInstance(factory, TrustedProxyFactory)
        self.assertIsInstance(factory.wrappedFactory, TLSMemoryBIOFactory)
        self.assertIs(factory.wrappedFactory.wrappedFactory, self.site)

    def test_layered_endpoint_strings_are_refused(self) -> None:
        """``haproxy:``/``ssl:`` strings would nest the layers wrongly: a ConfigError."""
        for description in ("haproxy:tcp:10443", "ssl:443", "tls:/pems:port=443"):
            error = self.assertRaises(
                ConfigError,
                proxy_https_listener,
                self.reactor,
                description,
                self.site,
                _ready_map(),
                _TRUSTED,
                5.0,
            )
            self.assertEqual(error.field, "proxy_https_endpoint")

    def test_invalid_endpoint_names_the_setting(self) -> None:
        """A malformed endpoint string is a ConfigError on the setting."""
        error = self.assertRaises(
            ConfigError, http_listener, self.reactor, "tcp:notaport", self.site
        )
        self.assertEqual(error.field, "http_endpoint")


class GatewayListenersTests(SynchronousTestCase):
    """``gateway_listeners`` builds what the configuration enables."""

    def test_only_enabled_listeners_are_built(self) -> None:
        """Endpoints set to None are off; the PROXY ones are off by default."""
        config = Config(http_endpoint="tcp:80", https_endpoint=None)
        services = gateway_listeners(MemoryReactor(), config, Site(Resource()), _ready_map())
        self.assertEqual(len(services), 1)

    def test_all_four_listeners(self) -> None:
        """With every endpoint set there are four listeners."""
        config = Config(
            http_endpoint="tcp:80",
            https_endpoint="tcp:443",
            proxy_http_endpoint="tcp:10080",
            proxy_https_endpoint="tcp:10443",
        )
        services = gateway_listeners(MemoryReactor(), config, Site(Resource()), _ready_map())
        self.assertEqual(len(services), 4)

    def test_endpoints_are_named_like_the_options(self) -> None:
        """``gateway_endpoints`` names each stack as ``twistd oauthproxy`` options do."""
        config = Config(
            http_endpoint="tcp:80",
            https_endpoint="tcp:443",
            proxy_http_endpoint="tcp:10080",
            proxy_https_endpoint="tcp:10443",
        )
        found = gateway_endpoints(MemoryReactor(), config, _ready_map())
        self.assertEqual(
            [(e.name, e.description) for e in found],
            [
                ("http", "tcp:80"),
                ("https", "tcp:443"),
                ("proxy-http", "tcp:10080"),
                ("proxy-https", "tcp:10443"),
            ],
        )


class BacklogTests(SynchronousTestCase):
    """``with_backlog``: every TCP and unix listener gets the configured backlog."""

    def test_added_where_missing(self) -> None:
        """tcp, tcp6 and unix descriptions get ``backlog=``; others are left alone."""
        self.assertEqual(with_backlog("tcp:80", 4096), "tcp:80:backlog=4096")
        self.assertEqual(
            with_backlog("tcp6:443:interface=\\:\\:", 100), "tcp6:443:interface=\\:\\::backlog=100"
        )
        self.assertEqual(with_backlog("unix:/run/x.sock", 10), "unix:/run/x.sock:backlog=10")
        self.assertEqual(
            with_backlog("systemd:domain=INET:index=0", 10), "systemd:domain=INET:index=0"
        )

    def test_a_backlog_in_the_description_wins(self) -> None:
        """An operator's explicit ``backlog=`` stays."""
        self.assertEqual(with_backlog("tcp:80:backlog=10", 4096), "tcp:80:backlog=10")
