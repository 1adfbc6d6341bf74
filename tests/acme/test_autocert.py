"""Tests for :mod:`oauthproxy.acme.autocert`: which proxies get certificates, and the service.

The service runs on a Clock with :class:`~oauthproxy.testing.MemoryStorage`, a real
:class:`~oauthproxy.acme.service.IssuingService` and the fake CA of
:mod:`tests.acme.fakes`; snapshots come from a stand-in source the test publishes to,
or from the real storage :class:`~oauthproxy.storage.mirror.Mirror`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from attrs import define, evolve, field
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.acme.autocert import (
    AutoCertService,
    Convert,
    Order,
    Unsupported,
    auto_cert_name,
    covers,
    is_public_name,
    plan_certificate,
)
from oauthproxy.acme.service import IssuingService
from oauthproxy.config import Config
from oauthproxy.errors import Conflict, StorageUnavailable
from oauthproxy.interfaces import ISnapshotSource, SnapshotListener
from oauthproxy.model import Certificate, Proxy, Snapshot
from oauthproxy.storage.mirror import Mirror
from oauthproxy.testing import MemoryStorage
from tests.acme.fakes import EPOCH, FakeOrderClient, make_chain

PRODUCTION = "https://acme.test/dir"
STAGING = "https://staging.acme.test/dir"


def proxy(hostname: str, **changes: Any) -> Proxy:
    """An HTTPS proxy for ``hostname``."""
    return evolve(Proxy(hostname=hostname, target_url="http://127.0.0.1:8080"), **changes)


def certificate(name: str, *domains: str, status: str = "ready") -> Certificate:
    """A certificate record for ``domains`` in ``status`` (not due for renewal)."""
    not_before = EPOCH.timestamp()
    return Certificate(
        cert_name=name,
        domains=domains,
        status=status,  # type: ignore[arg-type]
        not_before=not_before,
        not_after=not_before + 90 * 86400,
    )


class CoversTests(SynchronousTestCase):
    """:func:`covers`."""

    def test_exact_name_ignoring_case_and_trailing_dot(self) -> None:
        """Names compare case-insensitively, a trailing dot ignored."""
        self.assertTrue(covers(["API.Example.com."], "api.example.COM"))

    def test_wildcard_covers_exactly_one_label(self) -> None:
        """``*.example.com`` covers ``a.example.com`` but not the apex or deeper names."""
        self.assertEqual(
            [
                covers(["*.example.com"], h)
                for h in ("a.example.com", "example.com", "a.b.example.com")
            ],
            [True, False, False],
        )

    def test_other_names_do_not_cover(self) -> None:
        """A certificate for other names does not cover the host."""
        self.assertFalse(covers(["example.com", "www.example.com"], "api.example.com"))


_LABELS = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z")


class CoversPropertyTests(SynchronousTestCase):
    """Properties of :func:`covers` over generated DNS names."""

    @given(st.lists(_LABELS, min_size=2, max_size=5))
    def test_a_name_covers_itself_in_any_case(self, labels: list[str]) -> None:
        """Every name is covered by a certificate for it, whatever the case or final dot."""
        name = ".".join(labels)
        self.assertTrue(covers([name.upper() + "."], name))

    @given(_LABELS, st.lists(_LABELS, min_size=1, max_size=4), _LABELS)
    def test_wildcard_covers_one_label_only(
        self, first: str, parent: list[str], second: str
    ) -> None:
        """``*.P`` covers ``x.P`` and never ``y.x.P`` nor ``P`` itself."""
        suffix = ".".join(parent)
        wildcard = ["*." + suffix]
        self.assertTrue(covers(wildcard, f"{first}.{suffix}"))
        self.assertFalse(covers(wildcard, f"{second}.{first}.{suffix}"))
        self.assertFalse(covers(wildcard, suffix))

    @given(st.ip_addresses())
    def test_no_ip_address_is_public(self, address: object) -> None:
        """No IPv4 or IPv6 literal ever gets an automatic certificate."""
        self.assertIsNotNone(is_public_name(str(address)))


class PublicNameTests(SynchronousTestCase):
    """:func:`is_public_name`."""

    def test_dns_name_is_public(self) -> None:
        """An ordinary DNS name can get a public certificate."""
        self.assertIsNone(is_public_name("api.example.com"))

    def test_unsupported_names_say_why(self) -> None:
        """IP literals, localhost, single labels and special-use names cannot."""
        for host in ("127.0.0.1", "::1", "localhost", "app.localhost", "intranet", "x.local"):
            self.assertIsNotNone(is_public_name(host), host)


class NameTests(SynchronousTestCase):
    """:func:`auto_cert_name`."""

    def test_dots_become_dashes(self) -> None:
        """``api.example.com`` gets ``proxy-api-example-com``."""
        self.assertEqual(auto_cert_name("API.example.com"), "proxy-api-example-com")

    def test_long_names_are_shortened_with_a_digest(self) -> None:
        """A long hostname gives a name of at most 64 characters, distinct per hostname."""
        first = auto_cert_name("a" * 60 + ".example.com")
        second = auto_cert_name("a" * 60 + ".example.org")
        self.assertLessEqual(max(len(first), len(second)), 64)
        self.assertNotEqual(first, second)


class PlanTests(SynchronousTestCase):
    """:func:`plan_certificate`."""

    def test_uncovered_https_proxy_is_ordered(self) -> None:
        """An HTTPS proxy without a certificate gets an order, production, for its owner."""
        self.assertEqual(
            plan_certificate(proxy("api.example.com", owner="alice"), {}),
            Order("proxy-api-example-com", "api.example.com", False, "alice"),
        )

    def test_staging_proxy_orders_staging(self) -> None:
        """``Proxy.staging`` orders from the staging directory."""
        decision = plan_certificate(proxy("api.example.com", staging=True), {})
        assert isinstance(decision, Order)
        self.assertTrue(decision.staging)

    def test_http_only_proxy_needs_nothing(self) -> None:
        """A proxy without HTTPS needs no certificate."""
        self.assertIsNone(plan_certificate(proxy("api.example.com", enable_https=False), {}))

    def test_any_ready_or_pending_certificate_covering_it_is_enough(self) -> None:
        """A shared or wildcard certificate, ready or pending, covers the proxy."""
        for existing in (
            certificate("shared", "x.example.com", "api.example.com"),
            certificate("wild", "*.example.com", status="pending"),
        ):
            self.assertIsNone(
                plan_certificate(proxy("api.example.com"), {existing.cert_name: existing})
            )

    def test_failed_certificate_of_another_name_does_not_cover(self) -> None:
        """A failed certificate named otherwise does not count: the proxy gets its own."""
        failed = certificate("manual", "api.example.com", status="failed")
        decision = plan_certificate(proxy("api.example.com"), {"manual": failed})
        self.assertIsInstance(decision, Order)

    def test_own_failed_certificate_is_left_to_its_retries(self) -> None:
        """The proxy's own automatic certificate, failed, is not requested again."""
        failed = certificate("proxy-api-example-com", "api.example.com", status="failed")
        self.assertIsNone(plan_certificate(proxy("api.example.com"), {failed.cert_name: failed}))

    def test_name_taken_by_another_host_uses_the_digest_variant(self) -> None:
        """``a-b.com`` and ``a.b-com`` share the plain name: the second gets the hashed one."""
        taken = certificate("proxy-a-b-com", "a-b.com")
        decision = plan_certificate(proxy("a.b-com"), {taken.cert_name: taken})
        assert isinstance(decision, Order)
        self.assertEqual(decision.cert_name, auto_cert_name("a.b-com", hashed=True))

    def test_own_certificate_follows_the_staging_flag(self) -> None:
        """A production proxy whose automatic certificate is staging gets it converted."""
        own = evolve(certificate("proxy-api-example-com", "api.example.com"), staging=True)
        self.assertEqual(
            plan_certificate(proxy("api.example.com"), {own.cert_name: own}),
            Convert("proxy-api-example-com", "api.example.com", False),
        )

    def test_explicit_certificate_is_never_converted(self) -> None:
        """A proxy naming its certificate keeps it, staging or not."""
        own = evolve(certificate("proxy-api-example-com", "api.example.com"), staging=True)
        chosen = proxy("api.example.com", cert_name="proxy-api-example-com")
        self.assertIsNone(plan_certificate(chosen, {own.cert_name: own}))

    def test_ip_literal_is_unsupported(self) -> None:
        """A proxy for an IP address is reported unsupported, not ordered."""
        self.assertIsInstance(plan_certificate(proxy("10.1.2.3"), {}), Unsupported)

    def test_fallback_does_not_cover(self) -> None:
        """The gateway's fallback never counts as a certificate for a proxy."""
        fallback = certificate("_fallback", "api.example.com")
        self.assertIsInstance(
            plan_certificate(proxy("api.example.com"), {"_fallback": fallback}), Order
        )


@define
class StandInSource:
    """An ISnapshotSource the test publishes snapshots to."""

    current: Snapshot = field(factory=Snapshot)
    connected: bool = True
    listeners: list[SnapshotListener] = field(factory=list)

    def subscribe(self, listener: SnapshotListener) -> Callable[[], None]:
        """Call ``listener`` now and on every :meth:`publish`."""
        self.listeners.append(listener)
        listener(self.current, None)
        return lambda: self.listeners.remove(listener)

    def publish(self, snapshot: Snapshot) -> None:
        """Make ``snapshot`` current and tell every listener."""
        self.current = snapshot
        for listener in list(self.listeners):
            listener(snapshot, None)


@define
class RecordingIssuer:
    """Records requests; answers with ``error`` when set."""

    requests: list[tuple[str, tuple[str, ...], str | None, bool, str]] = field(factory=list)
    conversions: list[tuple[str, bool]] = field(factory=list)
    error: Exception | None = None

    def convert(self, cert_name: str, staging: bool) -> Deferred[Certificate]:
        """Record the conversion."""
        self.conversions.append((cert_name, staging))
        return Deferred()

    def request_certificate(
        self,
        cert_name: str,
        domains: tuple[str, ...] | list[str],
        email: str | None = None,
        staging: bool = False,
        owner: str = "admin",
    ) -> Deferred[Certificate]:
        """Record the request."""
        self.requests.append((cert_name, tuple(domains), email, staging, owner))
        if self.error is not None:
            return fail(self.error)
        return Deferred()


class ServiceTests(SynchronousTestCase):
    """:class:`AutoCertService` on a stand-in snapshot source."""

    def setUp(self) -> None:
        """A started service with a recording issuer."""
        self.clock = Clock()
        self.source = StandInSource()
        self.issuer = RecordingIssuer()
        self.service = AutoCertService(cast(ISnapshotSource, self.source), self.issuer, self.clock)
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def test_new_https_proxy_is_requested_once(self) -> None:
        """A new HTTPS proxy is requested; further snapshots do not ask again."""
        snapshot = Snapshot(proxies={"api.example.com": proxy("api.example.com", owner="bob")})
        self.source.publish(snapshot)
        self.source.publish(evolve(snapshot, stream_id="2-0"))
        self.assertEqual(
            self.issuer.requests,
            [("proxy-api-example-com", ("api.example.com",), None, False, "bob")],
        )

    def test_request_is_repeated_if_the_record_never_appears(self) -> None:
        """A request whose record never reached the snapshot is asked again after a while."""
        snapshot = Snapshot(proxies={"api.example.com": proxy("api.example.com")})
        self.source.publish(snapshot)
        self.clock.advance(61)
        self.source.publish(snapshot)
        self.assertEqual(len(self.issuer.requests), 2)

    def test_conflict_is_tolerated(self) -> None:
        """Another daemon created the certificate first: Conflict is not logged as an error."""
        self.issuer.error = Conflict("exists")
        self.source.publish(Snapshot(proxies={"api.example.com": proxy("api.example.com")}))
        self.assertEqual(self.flushLoggedErrors(Conflict), [])

    def test_other_failures_are_logged(self) -> None:
        """A store failure while requesting is logged (and retried after the hold)."""
        self.issuer.error = StorageUnavailable("redis down")
        self.source.publish(Snapshot(proxies={"api.example.com": proxy("api.example.com")}))
        self.assertEqual(len(self.flushLoggedErrors(StorageUnavailable)), 1)

    def test_conversion_is_asked_once_until_the_snapshot_shows_it(self) -> None:
        """A staging flag change converts the automatic certificate once, not per snapshot."""
        own = evolve(certificate("proxy-api-example-com", "api.example.com"), staging=True)
        snapshot = Snapshot(
            proxies={"api.example.com": proxy("api.example.com")},
            certificates={own.cert_name: own},
        )
        self.source.publish(snapshot)
        self.source.publish(evolve(snapshot, stream_id="2-0"))
        self.assertEqual(self.issuer.conversions, [("proxy-api-example-com", False)])

    def test_unsupported_host_is_skipped(self) -> None:
        """A proxy for ``localhost`` gets no request."""
        self.source.publish(Snapshot(proxies={"localhost": proxy("localhost")}))
        self.assertEqual(self.issuer.requests, [])

    def test_stopped_service_requests_nothing(self) -> None:
        """After stopService, snapshots are not followed."""
        self.service.stopService()
        self.source.publish(Snapshot(proxies={"api.example.com": proxy("api.example.com")}))
        self.assertEqual(self.issuer.requests, [])


class WithIssuingServiceTests(SynchronousTestCase):
    """The service with the storage Mirror, a real IssuingService and the fake CA."""

    def setUp(self) -> None:
        """Clock, store, mirror, issuing and autocert services, all started."""
        self.clock = Clock()
        self.clock.advance(EPOCH.timestamp())
        self.storage = MemoryStorage(self.clock)
        chain, _ = make_chain(["api.example.com"])
        self.orders = FakeOrderClient(chain=chain)
        config = Config(
            acme_directory_url=PRODUCTION,
            acme_staging_url=STAGING,
            admin_email="admin@example.com",
        )
        self.issuing = IssuingService(
            storage=self.storage, config=config, clock=self.clock, orders=self.orders
        )
        self.mirror = Mirror(self.storage, self.clock, block=1.0)
        self.autocert = AutoCertService(self.mirror, self.issuing, self.clock)
        for service in (self.mirror, self.issuing, self.autocert):
            service.startService()
        self.addCleanup(self.stop)

    def stop(self) -> None:
        """Stop the services in reverse order and let the mirror's read end."""
        self.autocert.stopService()
        self.successResultOf(self.issuing.stopService())
        stopped = self.mirror.stopService()
        self.clock.advance(1)
        self.successResultOf(stopped)

    def settle(self) -> None:
        """Let the mirror apply events and the services react (a few clock turns)."""
        for _ in range(5):
            self.clock.advance(0.5)

    def test_proxy_created_with_https_gets_a_ready_certificate(self) -> None:
        """Creating an HTTPS proxy leads to a ready certificate for its hostname."""
        self.successResultOf(self.storage.proxies.create(proxy("api.example.com")))
        self.settle()
        record = self.mirror.current.certificates["proxy-api-example-com"]
        self.assertEqual((record.status, record.domains), ("ready", ("api.example.com",)))
        self.assertEqual(record.email, "admin@example.com")
        self.assertEqual([r.directory_url for r in self.orders.requests], [PRODUCTION])

    def test_two_daemons_create_the_certificate_once(self) -> None:
        """A second autocert on the same store asking too gets Conflict, tolerated."""
        second = AutoCertService(self.mirror, self.issuing, self.clock)
        second.startService()
        self.addCleanup(second.stopService)
        self.successResultOf(self.storage.proxies.create(proxy("api.example.com")))
        self.settle()
        self.assertEqual(len(self.orders.requests), 1)
        self.assertEqual(self.flushLoggedErrors(Conflict), [])

    def test_switching_a_proxy_to_production_converts_its_certificate(self) -> None:
        """A staging proxy's certificate is reordered from production when the flag changes."""
        staged = proxy("api.example.com", staging=True)
        self.successResultOf(self.storage.proxies.create(staged))
        self.settle()
        self.successResultOf(self.storage.proxies.update(evolve(staged, staging=False)))
        self.settle()
        record = self.mirror.current.certificates["proxy-api-example-com"]
        self.assertEqual((record.status, record.staging), ("ready", False))
        self.assertEqual([r.directory_url for r in self.orders.requests], [STAGING, PRODUCTION])

    def test_existing_certificate_is_used(self) -> None:
        """A proxy whose name a certificate already covers orders nothing."""
        self.successResultOf(
            self.storage.certificates.create(
                certificate("shared", "api.example.com", "www.example.com")
            )
        )
        self.settle()
        self.successResultOf(self.storage.proxies.create(proxy("api.example.com")))
        self.settle()
        self.assertEqual(self.orders.requests, [])
