"""Tests for :mod:`oauthproxy.gateway.sni` and :mod:`oauthproxy.gateway.tls`.

Handshakes run in memory (no sockets) through Twisted's TLS protocol, so what
is checked is what a client sees: the certificate presented and the ALPN
protocol chosen.
"""

from __future__ import annotations

from attrs import evolve
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.test.requesthelper import DummyRequest

from oauthproxy.gateway.sni import (
    FALLBACK_CERT_NAME,
    CertificateMap,
    UnusableCertificate,
    server_name_of,
)
from oauthproxy.gateway.tls import (
    FALLBACK_DOMAIN,
    CertificateMapService,
    _thd_generate_fallback,
    ensure_fallback,
)
from oauthproxy.model import Certificate, Proxy, Snapshot
from oauthproxy.storage.mirror import Mirror
from oauthproxy.testing import MemoryStorage
from tests.support.tls import TestAuthority, handshake_in_memory

_FALLBACK = _thd_generate_fallback(1_800_000_000.0)


def _snapshot(*certificates: Certificate, proxies: tuple[Proxy, ...] = ()) -> Snapshot:
    return Snapshot(
        certificates={c.cert_name: c for c in certificates},
        proxies={p.hostname: p for p in proxies},
    )


def _map(*certificates: Certificate, proxies: tuple[Proxy, ...] = ()) -> CertificateMap:
    certificate_map = CertificateMap()
    certificate_map.set_fallback(_FALLBACK)
    certificate_map.apply_snapshot(_snapshot(*certificates, proxies=proxies))
    return certificate_map


class CertificateSelectionTests(SynchronousTestCase):
    """Which certificate a handshake gets for which server name."""

    def setUp(self) -> None:
        self.ca = TestAuthority.create()

    def test_exact_name_gets_its_certificate(self) -> None:
        """A client asking for a covered name is served that name's certificate."""
        certificate_map = _map(self.ca.issue("a.example.test"), self.ca.issue("b.example.test"))
        outcome = handshake_in_memory(certificate_map, "b.example.test")
        self.assertEqual(outcome.common_name, "b.example.test")

    def test_server_name_is_case_insensitive(self) -> None:
        """SNI names compare without regard to case or a trailing dot."""
        certificate_map = _map(self.ca.issue("a.example.test"))
        outcome = handshake_in_memory(certificate_map, "A.Example.TEST.")
        self.assertEqual(outcome.common_name, "a.example.test")

    def test_wildcard_covers_one_label(self) -> None:
        """``*.example.test`` is served for ``app.example.test``."""
        certificate_map = _map(self.ca.issue("*.example.test", cert_name="wild"))
        outcome = handshake_in_memory(certificate_map, "app.example.test")
        self.assertEqual(outcome.common_name, "*.example.test")

    def test_wildcard_does_not_cover_two_labels_or_the_apex(self) -> None:
        """``*.example.test`` is not used for ``a.b.example.test`` nor ``example.test``."""
        certificate_map = _map(self.ca.issue("*.example.test", cert_name="wild"))
        self.assertIsNone(certificate_map.certificate_name_for("a.b.example.test"))
        self.assertIsNone(certificate_map.certificate_name_for("example.test"))

    def test_exact_name_wins_over_wildcard(self) -> None:
        """A certificate naming the host exactly is preferred to a wildcard covering it."""
        certificate_map = _map(
            self.ca.issue("*.example.test", cert_name="wild"),
            self.ca.issue("app.example.test", cert_name="exact"),
        )
        self.assertEqual(certificate_map.certificate_name_for("app.example.test"), "exact")

    def test_unknown_name_gets_the_fallback(self) -> None:
        """A name no certificate covers still completes the handshake, with the fallback."""
        certificate_map = _map(self.ca.issue("a.example.test"))
        outcome = handshake_in_memory(certificate_map, "nobody.example.test")
        self.assertIsNone(outcome.error)
        self.assertEqual(outcome.common_name, FALLBACK_DOMAIN)

    def test_client_without_sni_gets_the_fallback(self) -> None:
        """A client that sends no server name is served the fallback certificate."""
        certificate_map = _map(self.ca.issue("a.example.test"))
        outcome = handshake_in_memory(certificate_map, None)
        self.assertEqual(outcome.common_name, FALLBACK_DOMAIN)

    def test_proxy_cert_name_wins(self) -> None:
        """A proxy's explicit ``cert_name`` beats another certificate listing the host."""
        proxy = Proxy(hostname="app.example.test", target_url="http://x", cert_name="chosen")
        certificate_map = _map(
            self.ca.issue("app.example.test", cert_name="listed"),
            self.ca.issue("app.example.test", cert_name="chosen", common_name="the chosen one"),
            proxies=(proxy,),
        )
        outcome = handshake_in_memory(certificate_map, "app.example.test")
        self.assertEqual(outcome.common_name, "the chosen one")

    def test_pending_certificate_is_not_served(self) -> None:
        """Only ``ready`` certificates are served."""
        pending = evolve(self.ca.issue("a.example.test"), status="pending")
        certificate_map = _map(pending)
        self.assertIsNone(certificate_map.certificate_name_for("a.example.test"))

    def test_unusable_certificate_is_skipped(self) -> None:
        """A certificate whose key does not match is left out; the others still apply."""
        good = self.ca.issue("good.example.test")
        other = self.ca.issue("bad.example.test")
        bad = evolve(other, private_key_pem=good.private_key_pem)
        certificate_map = _map(good, bad)
        self.assertEqual(certificate_map.certificate_name_for("good.example.test"), good.cert_name)
        self.assertIsNone(certificate_map.certificate_name_for("bad.example.test"))

    def test_fallback_record_is_not_indexed_by_name(self) -> None:
        """The stored fallback is never selected by its own name (it serves unknown names)."""
        certificate_map = _map(_FALLBACK)
        self.assertIsNone(certificate_map.certificate_name_for(FALLBACK_DOMAIN))


class AlpnTests(SynchronousTestCase):
    """ALPN on the certificates' Contexts."""

    def test_h2_is_negotiated_when_offered(self) -> None:
        """A client offering h2 and http/1.1 gets h2 (Twisted's Site speaks it)."""
        ca = TestAuthority.create()
        outcome = handshake_in_memory(_map(ca.issue("a.example.test")), "a.example.test")
        self.assertEqual(outcome.alpn, b"h2")

    def test_http11_when_only_that_is_offered(self) -> None:
        """A client offering only http/1.1 gets http/1.1."""
        ca = TestAuthority.create()
        outcome = handshake_in_memory(
            _map(ca.issue("a.example.test")), "a.example.test", protocols=(b"http/1.1",)
        )
        self.assertEqual(outcome.alpn, b"http/1.1")

    def test_fallback_negotiates_alpn_too(self) -> None:
        """Unknown names negotiate ALPN like known ones."""
        outcome = handshake_in_memory(_map(), "unknown.example.test")
        self.assertEqual(outcome.alpn, b"h2")


class HotReloadTests(SynchronousTestCase):
    """Certificates are added, replaced and removed without a new listener."""

    def setUp(self) -> None:
        self.ca = TestAuthority.create()
        self.map = _map()

    def test_added_certificate_is_served_by_the_next_handshake(self) -> None:
        """A certificate that appears in a snapshot is presented on the next handshake."""
        self.assertEqual(
            handshake_in_memory(self.map, "a.example.test").common_name, FALLBACK_DOMAIN
        )
        self.map.apply_snapshot(_snapshot(self.ca.issue("a.example.test")))
        self.assertEqual(
            handshake_in_memory(self.map, "a.example.test").common_name, "a.example.test"
        )

    def test_renewed_certificate_replaces_the_old_one(self) -> None:
        """New PEMs under the same cert_name are served from a new Context."""
        first = self.ca.issue("a.example.test")
        self.map.apply_snapshot(_snapshot(first))
        before = handshake_in_memory(self.map, "a.example.test").certificate
        self.map.apply_snapshot(_snapshot(self.ca.issue("a.example.test")))
        after = handshake_in_memory(self.map, "a.example.test").certificate
        assert before is not None and after is not None
        self.assertNotEqual(before.serial_number, after.serial_number)

    def test_unchanged_certificate_keeps_its_context(self) -> None:
        """Re-applying the same certificate reuses its (already used) Context."""
        certificate = self.ca.issue("a.example.test")
        self.map.apply_snapshot(_snapshot(certificate))
        first = self.map.context_for_server_name(b"a.example.test")
        handshake_in_memory(self.map, "a.example.test")
        self.map.apply_snapshot(_snapshot(certificate, self.ca.issue("b.example.test")))
        self.assertIs(self.map.context_for_server_name(b"a.example.test"), first)

    def test_removed_certificate_falls_back(self) -> None:
        """After a certificate disappears from the snapshot its names get the fallback."""
        self.map.apply_snapshot(_snapshot(self.ca.issue("a.example.test")))
        self.map.apply_snapshot(_snapshot())
        self.assertEqual(
            handshake_in_memory(self.map, "a.example.test").common_name, FALLBACK_DOMAIN
        )


class ReadinessTests(SynchronousTestCase):
    """A TLS listener waits for the fallback certificate."""

    def test_when_ready_fires_once_the_fallback_is_loaded(self) -> None:
        """``when_ready`` waits for ``set_fallback``."""
        certificate_map = CertificateMap()
        ready = certificate_map.when_ready()
        self.assertNoResult(ready)
        certificate_map.set_fallback(_FALLBACK)
        self.successResultOf(ready)
        self.successResultOf(certificate_map.when_ready())

    def test_no_connection_before_the_fallback(self) -> None:
        """Without a fallback there is no Context to start a handshake on."""
        self.assertRaises(UnusableCertificate, CertificateMap().serverConnectionForTLS, None)

    def test_plain_request_has_no_server_name(self) -> None:
        """``server_name_of`` is None for a request that did not arrive over TLS."""
        self.assertIsNone(server_name_of(DummyRequest([b""])))


class FallbackTests(TestCase):
    """The shared fallback certificate is generated once and stored."""

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.storage = MemoryStorage(self.clock)

    async def test_generated_and_stored_when_missing(self) -> None:
        """With no stored fallback, one is generated (in a thread) and stored."""
        made = await ensure_fallback(self.storage.certificates, self.reactor, self.clock)
        stored = await self.storage.certificates.get(FALLBACK_CERT_NAME)
        self.assertEqual(stored, made)
        self.assertEqual(made.domains, (FALLBACK_DOMAIN,))

    async def test_stored_fallback_is_reused(self) -> None:
        """A fallback already in the store (another daemon's) is used as is."""
        await self.storage.certificates.create(_FALLBACK)
        found = await ensure_fallback(self.storage.certificates, self.reactor, self.clock)
        self.assertEqual(found.fullchain_pem, _FALLBACK.fullchain_pem)

    async def test_store_down_still_gives_a_local_fallback(self) -> None:
        """When the store is unreachable a local fallback keeps TLS working."""
        self.storage.set_available(False)
        made = await ensure_fallback(self.storage.certificates, self.reactor, self.clock)
        self.assertEqual(made.cert_name, FALLBACK_CERT_NAME)

    async def test_service_feeds_the_map_from_the_mirror(self) -> None:
        """The service loads the fallback and applies stored certificates."""
        ca = TestAuthority.create()
        await self.storage.certificates.create(ca.issue("a.example.test"))
        mirror = Mirror(self.storage, self.clock)
        mirror.startService()
        self.addCleanup(mirror.stopService)
        await mirror.when_loaded()
        certificate_map = CertificateMap()
        service = CertificateMapService(
            certificate_map, mirror, self.storage.certificates, self.reactor, self.clock
        )
        service.startService()
        self.addCleanup(service.stopService)
        await certificate_map.when_ready()
        self.assertEqual(certificate_map.certificate_name_for("a.example.test"), "a.example.test")
