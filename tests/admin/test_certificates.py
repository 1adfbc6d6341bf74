"""Tests for ``/certificates/`` and ``/proxy/targets/{hostname}/cert``.

The admin API of :class:`tests.admin.harness.Harness` gets a real
:class:`~oauthproxy.acme.service.IssuingService` on the harness's clock and store,
ordering from :class:`tests.acme.fakes.FakeOrderClient`.
"""

from __future__ import annotations

from attrs import evolve
from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.acme.service import IssuingService
from oauthproxy.config import Config
from oauthproxy.model import Certificate, Proxy
from tests.acme.fakes import FakeOrderClient, make_chain
from tests.admin.harness import Answer, Harness

PRODUCTION = "https://acme.test/dir"
STAGING = "https://staging.acme.test/dir"


class CertificateTestCase(SynchronousTestCase):
    """A harness whose admin API orders through a running issuing service."""

    def setUp(self) -> None:
        """Harness, fake CA, issuing service (running), a non-admin token ``alice``."""
        self.h = Harness(self)
        self.chain, _ = make_chain(["a.example.com"])
        self.orders = FakeOrderClient(chain=self.chain)
        config = Config(
            acme_directory_url=PRODUCTION,
            acme_staging_url=STAGING,
            admin_email="admin@example.com",
            renewal_check_interval=86400.0,
        )
        self.issuing = IssuingService(
            storage=self.h.storage,
            config=config,
            clock=self.h.clock,
            orders=self.orders,
            random=lambda: 0.0,
        )
        self.issuing.startService()
        self.addCleanup(self.issuing.stopService)
        self.h.api.issuing = self.issuing
        self.h.treq = StubTreq(self.h.api.resource())
        self.alice = self.h.add_token("alice")

    def create(self, body: dict[str, object], token: str | None = None) -> Answer:
        """``POST /certificates/`` (as the admin unless ``token``)."""
        return self.h.call("POST", "/certificates/", token=token or self.h.admin_token, body=body)

    def store(self, certificate: Certificate) -> None:
        """Put ``certificate`` in the store directly."""
        self.successResultOf(self.h.storage.certificates.create(certificate))

    def stored(self, cert_name: str) -> Certificate | None:
        """The certificate as stored now."""
        record: Certificate | None = self.successResultOf(
            self.h.storage.certificates.get(cert_name)
        )
        return record

    def proxy(self, hostname: str, owner: str = "admin") -> None:
        """Store a proxy for ``hostname``."""
        proxy = Proxy(hostname=hostname, target_url="http://127.0.0.1:8080", owner=owner)
        self.successResultOf(self.h.storage.proxies.create(proxy))

    def stored_proxy(self, hostname: str) -> Proxy:
        """The proxy as stored now."""
        proxy: Proxy | None = self.successResultOf(self.h.storage.proxies.get(hostname))
        assert proxy is not None
        return proxy


def ready(name: str, domains: tuple[str, ...], owner: str = "admin") -> Certificate:
    """A ready certificate record with a chain and a key."""
    chain, _ = make_chain(list(domains))
    return Certificate(
        cert_name=name,
        domains=domains,
        status="ready",
        fullchain_pem=chain,
        private_key_pem="-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n",
        fingerprint_sha256="ab" * 32,
        issuer="Test CA",
        owner=owner,
    )


class CreateTests(CertificateTestCase):
    """``POST /certificates/``."""

    def test_single_name_certificate_is_created_pending(self) -> None:
        """A single ``domain`` is recorded pending with ADMIN_EMAIL, owned by the caller."""
        self.orders.manual = True
        answer = self.create({"cert_name": "api", "domain": "API.example.com"})
        self.assertEqual(answer.status, 201, answer.body)
        created = answer.json()
        self.assertEqual(created["status"], "pending")
        self.assertEqual(created["domains"], ["api.example.com"])
        self.assertEqual(created["email"], "admin@example.com")
        self.assertEqual(created["owner"], "admin")
        self.assertEqual(answer.header(b"location"), b"/certificates/api")

    def test_multi_domain_certificate_keeps_every_name(self) -> None:
        """``domains`` (cert-create-multi) orders one certificate for all names."""
        answer = self.create(
            {"cert_name": "shared", "domains": ["a.example.com", "b.example.com", "c.example.com"]}
        )
        self.assertEqual(answer.status, 201, answer.body)
        self.assertEqual(
            self.orders.requests[-1].domains, ("a.example.com", "b.example.com", "c.example.com")
        )

    def test_created_certificate_becomes_ready(self) -> None:
        """Once the order completes the record is ready with issuer and fingerprint."""
        self.create({"cert_name": "api", "domain": "a.example.com"})
        self.h.clock.advance(0)
        shown = self.h.call("GET", "/certificates/api", token=self.h.admin_token).json()
        self.assertEqual(shown["status"], "ready")
        self.assertEqual(shown["issuer"], "Test CA")
        self.assertEqual(len(shown["fingerprint_sha256"]), 64)

    def test_staging_and_email_are_used_for_the_order(self) -> None:
        """``staging`` picks the staging directory; ``email`` is the contact."""
        self.create(
            {"cert_name": "t", "domain": "a.example.com", "email": "o@x.org", "staging": True}
        )
        request = self.orders.requests[-1]
        self.assertEqual((request.directory_url, request.email), (STAGING, "o@x.org"))

    def test_non_admin_token_owns_what_it_creates(self) -> None:
        """A non-admin token may create certificates; they are its own."""
        answer = self.create({"cert_name": "mine", "domain": "a.example.com"}, token=self.alice)
        self.assertEqual(answer.json()["owner"], "alice")

    def test_non_admin_may_not_order_names_of_others_proxies(self) -> None:
        """A name served by another token's proxy is refused for a non-admin token (403)."""
        self.proxy("api.example.com", owner="admin")
        answer = self.create(
            {"cert_name": "grab", "domains": ["x.example.com", "api.example.com"]},
            token=self.alice,
        )
        self.h.assert_error(answer, 403, "forbidden", "/domains")
        self.assertIsNone(self.stored("grab"))

    def test_domain_and_domains_together_are_refused(self) -> None:
        """Exactly one of ``domain`` and ``domains``: both is 422 naming ``/domain``."""
        answer = self.create({"cert_name": "x", "domain": "a.example.com", "domains": ["b.c.d"]})
        self.h.assert_error(answer, 422, "invalid_input", "/domain")

    def test_missing_names_are_refused(self) -> None:
        """Neither ``domain`` nor ``domains`` is 422 and nothing is stored."""
        answer = self.create({"cert_name": "x"})
        self.h.assert_error(answer, 422, "invalid_input", "/domain")
        self.assertIsNone(self.stored("x"))

    def test_ip_address_is_refused(self) -> None:
        """An IP address cannot be validated with HTTP-01: 422 naming ``/domains``."""
        answer = self.create({"cert_name": "x", "domains": ["a.example.com", "10.0.0.1"]})
        self.h.assert_error(answer, 422, "invalid_input", "/domains")

    def test_wildcard_is_refused(self) -> None:
        """Wildcards need DNS-01: 422 naming ``/domain``."""
        answer = self.create({"cert_name": "x", "domain": "*.example.com"})
        self.h.assert_error(answer, 422, "invalid_input", "/domain")

    def test_taken_name_is_conflict(self) -> None:
        """A second certificate under a taken name is 409 naming ``/cert_name``."""
        self.store(ready("api", ("a.example.com",)))
        answer = self.create({"cert_name": "api", "domain": "b.example.com"})
        self.h.assert_error(answer, 409, "conflict", "/cert_name")

    def test_reserved_fallback_name_is_refused(self) -> None:
        """``_fallback`` is not a name a client may create."""
        answer = self.create({"cert_name": "_fallback", "domain": "a.example.com"})
        self.h.assert_error(answer, 422, "invalid_input", "/cert_name")

    def test_bad_email_is_refused(self) -> None:
        """A contact that is not an email address is 422 naming ``/email``."""
        answer = self.create({"cert_name": "x", "domain": "a.example.com", "email": "nope"})
        self.h.assert_error(answer, 422, "invalid_input", "/email")

    def test_without_issuing_service_is_503(self) -> None:
        """A daemon without ACME answers 503 and stores nothing."""
        self.h.api.issuing = None
        self.h.treq = StubTreq(self.h.api.resource())
        answer = self.create({"cert_name": "x", "domain": "a.example.com"})
        self.h.assert_error(answer, 503, "issuer_unavailable")
        self.assertIsNone(self.stored("x"))


class ListShowTests(CertificateTestCase):
    """``GET /certificates/`` and ``GET /certificates/{cert_name}``."""

    def test_list_hides_the_fallback(self) -> None:
        """The gateway's ``_fallback`` certificate never appears in listings."""
        self.store(ready("_fallback", ("fallback.oauthproxy.invalid",)))
        self.store(ready("api", ("a.example.com",)))
        listed = self.h.call("GET", "/certificates/", token=self.h.admin_token).json()
        self.assertEqual([item["cert_name"] for item in listed["items"]], ["api"])
        self.assertEqual(listed["total"], 1)

    def test_non_admin_lists_only_its_own(self) -> None:
        """A non-admin token sees only the certificates it owns."""
        self.store(ready("theirs", ("a.example.com",)))
        self.store(ready("mine", ("b.example.com",), owner="alice"))
        listed = self.h.call("GET", "/certificates/", token=self.alice).json()
        self.assertEqual([item["cert_name"] for item in listed["items"]], ["mine"])

    def test_list_filters_by_status_and_pages(self) -> None:
        """``status`` filters exactly; ``limit`` pages with ``next_offset``."""
        for name in ("a", "b", "c"):
            self.store(ready(name, (f"{name}.example.com",)))
        self.store(Certificate(cert_name="p", domains=("p.example.com",)))
        listed = self.h.call(
            "GET", "/certificates/?status=ready&limit=2", token=self.h.admin_token
        ).json()
        self.assertEqual([item["cert_name"] for item in listed["items"]], ["a", "b"])
        self.assertEqual((listed["total"], listed["next_offset"]), (3, 2))

    def test_list_filters_by_covered_hostname(self) -> None:
        """``covers`` keeps the certificates valid for a hostname, wildcards included."""
        self.store(ready("exact", ("api.example.com",)))
        self.store(ready("wild", ("*.example.com",)))
        self.store(ready("other", ("api.example.org",)))
        listed = self.h.call(
            "GET", "/certificates/?covers=api.example.com", token=self.h.admin_token
        ).json()
        self.assertEqual([item["cert_name"] for item in listed["items"]], ["exact", "wild"])

    def test_show_has_chain_but_no_key(self) -> None:
        """Show gives the chain and the facts, never the key unless asked."""
        self.store(ready("api", ("a.example.com",)))
        shown = self.h.call("GET", "/certificates/api", token=self.h.admin_token)
        self.assertEqual(shown.status, 200)
        self.assertIn("BEGIN CERTIFICATE", shown.json()["fullchain_pem"])
        self.assertNotIn("private_key_pem", shown.json())
        self.assertNotIn(b"secret", shown.body)

    def test_admin_gets_the_key_on_request(self) -> None:
        """``include_private_key=true`` with the admin token adds the key."""
        self.store(ready("api", ("a.example.com",)))
        shown = self.h.call(
            "GET", "/certificates/api?include_private_key=true", token=self.h.admin_token
        ).json()
        self.assertIn("secret", shown["private_key_pem"])

    def test_owner_may_not_read_the_key(self) -> None:
        """Even the owning non-admin token gets 403 for the key."""
        self.store(ready("mine", ("a.example.com",), owner="alice"))
        answer = self.h.call("GET", "/certificates/mine?include_private_key=true", token=self.alice)
        self.h.assert_error(answer, 403, "forbidden")
        self.assertNotIn(b"secret", answer.body)

    def test_others_certificate_is_not_found(self) -> None:
        """A non-admin token cannot tell another token's certificate exists."""
        self.store(ready("theirs", ("a.example.com",)))
        answer = self.h.call("GET", "/certificates/theirs", token=self.alice)
        self.h.assert_error(answer, 404, "not_found")

    def test_failed_certificate_shows_reason_and_retry(self) -> None:
        """A failed order is shown with its error and the time of the next attempt."""
        self.store(
            Certificate(
                cert_name="bad",
                domains=("a.example.com",),
                status="failed",
                error="urn:ietf:params:acme:error:connection: no route",
                retry_at=1_000_300.0,
                failures=1,
            )
        )
        shown = self.h.call("GET", "/certificates/bad", token=self.h.admin_token).json()
        self.assertEqual(
            (shown["status"], shown["retry_at"], shown["failures"]), ("failed", 1_000_300.0, 1)
        )
        self.assertIn("no route", shown["error"])


class RenewConvertDeleteTests(CertificateTestCase):
    """``renew``, ``convert`` and ``DELETE``."""

    def test_renew_orders_again(self) -> None:
        """Renewing a ready certificate answers 202 and places a new order."""
        self.store(ready("api", ("a.example.com",)))
        answer = self.h.call("POST", "/certificates/api/renew", token=self.h.admin_token)
        self.assertEqual(answer.status, 202, answer.body)
        self.assertEqual([r.domains for r in self.orders.requests], [("a.example.com",)])

    def test_renew_with_spent_failure_budget_is_conflict(self) -> None:
        """Five failed validations of a name within the hour: 409, no order."""
        now = self.h.clock.seconds()
        self.store(
            Certificate(
                cert_name="bad",
                domains=("a.example.com",),
                status="failed",
                failed_authorizations=tuple(("a.example.com", now - i) for i in range(5)),
            )
        )
        answer = self.h.call("POST", "/certificates/bad/renew", token=self.h.admin_token)
        self.h.assert_error(answer, 409, "conflict")
        self.assertEqual(self.orders.requests, [])

    def test_fallback_cannot_be_renewed(self) -> None:
        """The reserved fallback certificate is refused with 403."""
        self.store(ready("_fallback", ("fallback.oauthproxy.invalid",)))
        answer = self.h.call("POST", "/certificates/_fallback/renew", token=self.h.admin_token)
        self.h.assert_error(answer, 403, "forbidden")

    def test_convert_staging_to_production(self) -> None:
        """Convert moves the record to the production directory and reorders it."""
        self.store(
            Certificate(
                cert_name="t",
                domains=("a.example.com",),
                staging=True,
                acme_directory_url=STAGING,
                status="failed",
            )
        )
        answer = self.h.call(
            "POST", "/certificates/t/convert", token=self.h.admin_token, body={"staging": False}
        )
        self.assertEqual(answer.status, 202, answer.body)
        self.assertEqual(answer.json()["acme_directory_url"], PRODUCTION)
        self.assertEqual(self.orders.requests[-1].directory_url, PRODUCTION)

    def test_convert_without_body_means_production(self) -> None:
        """No body converts to production."""
        self.store(evolve_staging(ready("t", ("a.example.com",))))
        answer = self.h.call("POST", "/certificates/t/convert", token=self.h.admin_token)
        self.assertEqual(answer.json()["staging"], False)

    def test_convert_to_the_same_directory_is_conflict(self) -> None:
        """A production certificate converted to production is 409 naming ``/staging``."""
        self.store(ready("api", ("a.example.com",)))
        answer = self.h.call("POST", "/certificates/api/convert", token=self.h.admin_token)
        self.h.assert_error(answer, 409, "conflict", "/staging")

    def test_delete_removes_it(self) -> None:
        """DELETE answers 204 and the record is gone."""
        self.store(ready("api", ("a.example.com",)))
        answer = self.h.call("DELETE", "/certificates/api", token=self.h.admin_token)
        self.assertEqual(answer.status, 204)
        self.assertIsNone(self.stored("api"))

    def test_fallback_cannot_be_deleted(self) -> None:
        """Deleting ``_fallback`` is 403 and it stays."""
        self.store(ready("_fallback", ("fallback.oauthproxy.invalid",)))
        answer = self.h.call("DELETE", "/certificates/_fallback", token=self.h.admin_token)
        self.h.assert_error(answer, 403, "forbidden")
        self.assertIsNotNone(self.stored("_fallback"))

    def test_others_certificate_cannot_be_deleted(self) -> None:
        """A non-admin token gets 404 for another token's certificate, which stays."""
        self.store(ready("theirs", ("a.example.com",)))
        answer = self.h.call("DELETE", "/certificates/theirs", token=self.alice)
        self.h.assert_error(answer, 404, "not_found")
        self.assertIsNotNone(self.stored("theirs"))


def evolve_staging(certificate: Certificate) -> Certificate:
    """``certificate`` as a staging certificate."""
    return evolve(certificate, staging=True, acme_directory_url=STAGING)


class AttachTests(CertificateTestCase):
    """``POST`` and ``DELETE /proxy/targets/{hostname}/cert``."""

    def attach(self, hostname: str, cert_name: str, token: str | None = None) -> Answer:
        """Attach ``cert_name`` to ``hostname``'s proxy."""
        return self.h.call(
            "POST",
            f"/proxy/targets/{hostname}/cert",
            token=token or self.h.admin_token,
            body={"cert_name": cert_name},
        )

    def test_attach_sets_the_proxy_certificate(self) -> None:
        """A certificate covering the hostname is attached: the proxy's cert_name is set."""
        self.proxy("api.example.com")
        self.store(ready("shared", ("api.example.com", "app.example.com")))
        answer = self.attach("api.example.com", "shared")
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(self.stored_proxy("api.example.com").cert_name, "shared")

    def test_wildcard_certificate_covers_one_label(self) -> None:
        """``*.example.com`` may be attached to ``api.example.com``."""
        self.proxy("api.example.com")
        self.store(ready("wild", ("*.example.com",)))
        self.assertEqual(self.attach("api.example.com", "wild").status, 200)

    def test_certificate_not_covering_the_host_is_refused(self) -> None:
        """A certificate for other names is 422 naming ``/cert_name``; the proxy is unchanged."""
        self.proxy("api.example.com")
        self.store(ready("other", ("*.other.com", "example.com")))
        answer = self.attach("api.example.com", "other")
        self.h.assert_error(answer, 422, "invalid_input", "/cert_name")
        self.assertIsNone(self.stored_proxy("api.example.com").cert_name)

    def test_unknown_certificate_is_not_found(self) -> None:
        """Attaching a certificate that does not exist is 404 naming ``/cert_name``."""
        self.proxy("api.example.com")
        self.h.assert_error(self.attach("api.example.com", "nope"), 404, "not_found", "/cert_name")

    def test_others_certificate_cannot_be_attached(self) -> None:
        """A non-admin token cannot attach another token's certificate to its proxy."""
        self.proxy("api.example.com", owner="alice")
        self.store(ready("theirs", ("api.example.com",)))
        answer = self.attach("api.example.com", "theirs", token=self.alice)
        self.h.assert_error(answer, 404, "not_found", "/cert_name")

    def test_others_proxy_is_not_found(self) -> None:
        """A non-admin token cannot attach to another token's proxy."""
        self.proxy("api.example.com")
        self.store(ready("mine", ("api.example.com",), owner="alice"))
        answer = self.attach("api.example.com", "mine", token=self.alice)
        self.h.assert_error(answer, 404, "not_found")

    def test_fallback_cannot_be_attached(self) -> None:
        """The fallback is served to unknown names only; its name is refused (422)."""
        self.proxy("api.example.com")
        self.h.assert_error(self.attach("api.example.com", "_fallback"), 422, "invalid_input")

    def test_detach_clears_the_choice(self) -> None:
        """DELETE clears cert_name: any certificate covering the name is served again."""
        self.proxy("api.example.com")
        self.store(ready("shared", ("api.example.com",)))
        self.attach("api.example.com", "shared")
        answer = self.h.call(
            "DELETE", "/proxy/targets/api.example.com/cert", token=self.h.admin_token
        )
        self.assertEqual(answer.status, 200)
        self.assertIsNone(self.stored_proxy("api.example.com").cert_name)
