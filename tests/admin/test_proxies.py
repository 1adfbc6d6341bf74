"""Tests for ``/proxy/targets/``: proxy CRUD, validation, ownership and route filtering."""

from __future__ import annotations

from typing import Any

from attrs import evolve
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.model import Certificate, Proxy
from tests.admin.harness import Answer, Harness
from tests.support.tls import TestAuthority


def create_proxy(h: Harness, token: str, hostname: str, **fields: Any) -> Answer:
    """``POST /proxy/targets/`` for ``hostname`` → a local backend, plus ``fields``."""
    body = {"hostname": hostname, "target_url": "http://127.0.0.1:8080", **fields}
    return h.call("POST", "/proxy/targets/", token=token, body=body)


def add_certificate(h: Harness, name: str, *domains: str, owner: str = "admin") -> None:
    """Store a certificate record for ``domains`` owned by ``owner``."""
    h.test.successResultOf(h.storage.certificates.create(Certificate(name, domains, owner=owner)))


def stored_proxy(h: Harness, hostname: str) -> Proxy | None:
    """The proxy record the store holds for ``hostname``."""
    proxy: Proxy | None = h.test.successResultOf(h.storage.proxies.get(hostname))
    return proxy


class CreateTests(SynchronousTestCase):
    """``POST /proxy/targets/``."""

    def setUp(self) -> None:
        self.h = Harness(self)

    def test_creates_with_defaults_owner_and_clock_times(self) -> None:
        """A minimal body gives a proxy with the model defaults, owned by the caller."""
        answer = create_proxy(self.h, self.h.admin_token, "API.Example.com")
        self.assertEqual(answer.status, 201, answer.body)
        created = answer.json()
        self.assertEqual(created["hostname"], "api.example.com")
        self.assertEqual(answer.header(b"location"), b"/proxy/targets/api.example.com")
        self.assertEqual(created["owner"], "admin")
        self.assertEqual(created["created_at"], self.h.clock.seconds())
        self.assertEqual(created["updated_at"], self.h.clock.seconds())
        self.assertTrue(created["enable_https"] and created["verify_upstream_tls"])
        self.assertEqual(created["route_mode"], "all")
        self.assertEqual(
            stored_proxy(self.h, "api.example.com"),
            Proxy(
                hostname="api.example.com",
                target_url="http://127.0.0.1:8080",
                created_at=self.h.clock.seconds(),
                updated_at=self.h.clock.seconds(),
            ),
        )

    def test_every_field_is_stored(self) -> None:
        """All settable fields reach the record; headers become ordered pairs."""
        ca = TestAuthority.create().ca_pem
        add_certificate(self.h, "shared-cert", "*.example.com")
        answer = create_proxy(
            self.h,
            self.h.admin_token,
            "app.example.com",
            target_url="https://backend.internal:8443/base",
            enable_http=False,
            preserve_host_header=False,
            custom_request_headers={"X-Team": "ops", "X-Env": "prod"},
            custom_response_headers={"Strict-Transport-Security": "max-age=60"},
            connect_timeout=2.5,
            read_timeout=30,
            cert_name="shared-cert",
            staging=True,
            verify_upstream_tls=True,
            upstream_ca_pem=ca,
            route_mode="selective",
            enabled_routes=["api"],
            disabled_routes=["old"],
        )
        self.assertEqual(answer.status, 201, answer.body)
        proxy = stored_proxy(self.h, "app.example.com")
        assert proxy is not None
        self.assertEqual(proxy.custom_request_headers, (("X-Team", "ops"), ("X-Env", "prod")))
        self.assertEqual(
            answer.json()["custom_request_headers"], {"X-Team": "ops", "X-Env": "prod"}
        )
        self.assertEqual((proxy.connect_timeout, proxy.read_timeout), (2.5, 30.0))
        self.assertEqual(
            (proxy.cert_name, proxy.staging, proxy.upstream_ca_pem), ("shared-cert", True, ca)
        )
        self.assertEqual((proxy.enabled_routes, proxy.disabled_routes), (("api",), ("old",)))
        self.assertFalse(proxy.enable_http or proxy.preserve_host_header)

    def test_creation_publishes_an_event(self) -> None:
        """The write comes with a ``proxy_created`` event, which makes it live everywhere."""
        create_proxy(self.h, self.h.admin_token, "api.example.com")
        [event] = [e for e in self.h.storage.state.events if e.kind == "proxy"]
        self.assertEqual((event.type, event.key), ("proxy_created", "api.example.com"))

    def test_duplicate_hostname_is_conflict_regardless_of_case(self) -> None:
        """A second proxy for the same hostname (other case) is 409 naming hostname."""
        create_proxy(self.h, self.h.admin_token, "api.example.com")
        answer = create_proxy(self.h, self.h.admin_token, "API.example.COM")
        self.h.assert_error(answer, 409, "conflict", "/hostname")

    def test_invalid_hostnames_are_named(self) -> None:
        """Wildcards, underscores, empty labels, ports and trailing dots are 422 /hostname."""
        for bad in ("*.example.com", "bad_host.example", "a..b", "a.example:80", "a.example.", ""):
            answer = create_proxy(self.h, self.h.admin_token, bad)
            self.h.assert_error(answer, 422, "invalid_input", "/hostname")
        self.assertEqual(self.successResultOf(self.h.storage.proxies.list()), [])

    def test_target_url_must_be_absolute_http(self) -> None:
        """ftp, relative, host-less, credential-carrying and bad-port URLs are 422 /target_url."""
        for bad in (
            "ftp://x.example",
            "/relative",
            "http://",
            "http://u:p@x.example",
            "http://x:99999",
        ):
            answer = create_proxy(self.h, self.h.admin_token, "a.example.com", target_url=bad)
            self.h.assert_error(answer, 422, "invalid_input", "/target_url")

    def test_missing_target_url_is_named(self) -> None:
        """A body without target_url is 422 /target_url."""
        answer = self.h.call(
            "POST", "/proxy/targets/", token=self.h.admin_token, body={"hostname": "a.example"}
        )
        self.h.assert_error(answer, 422, "invalid_input", "/target_url")

    def test_header_name_must_be_a_token(self) -> None:
        """A header name with a space is 422 naming that header."""
        answer = create_proxy(
            self.h, self.h.admin_token, "a.example", custom_request_headers={"Bad Name": "x"}
        )
        self.h.assert_error(answer, 422, "invalid_input", "/custom_request_headers/Bad Name")

    def test_header_value_cannot_inject_lines(self) -> None:
        """A CR/LF in a header value is 422 naming the header (no response splitting)."""
        answer = create_proxy(
            self.h,
            self.h.admin_token,
            "a.example",
            custom_response_headers={"X-A": "ok\r\nSet-Cookie: evil=1"},
        )
        self.h.assert_error(answer, 422, "invalid_input", "/custom_response_headers/X-A")

    def test_gateway_managed_headers_cannot_be_set(self) -> None:
        """Host, hop-by-hop and X-Forwarded-* request headers are refused (ATK: spoofing)."""
        for name in ("Host", "Connection", "X-Forwarded-For", "X-Auth-User"):
            answer = create_proxy(
                self.h, self.h.admin_token, "a.example", custom_request_headers={name: "x"}
            )
            self.h.assert_error(answer, 422, "invalid_input", f"/custom_request_headers/{name}")

    def test_duplicate_header_names_differing_in_case_are_refused(self) -> None:
        """Header names are case-insensitive: X-A and x-a together are 422."""
        answer = create_proxy(
            self.h, self.h.admin_token, "a.example", custom_request_headers={"X-A": "1", "x-a": "2"}
        )
        self.h.assert_error(answer, 422, "invalid_input", "/custom_request_headers/x-a")

    def test_upstream_ca_must_be_pem_certificates(self) -> None:
        """Text that is not PEM certificates is 422 /upstream_ca_pem."""
        for bad in ("hello", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"):
            answer = create_proxy(self.h, self.h.admin_token, "a.example", upstream_ca_pem=bad)
            self.h.assert_error(answer, 422, "invalid_input", "/upstream_ca_pem")

    def test_certificate_must_exist_be_visible_and_cover_the_hostname(self) -> None:
        """cert_name names a certificate the caller may use for this hostname, else 422."""
        alice = self.h.add_token("alice")
        add_certificate(self.h, "admins", "a.example")
        add_certificate(self.h, "alices", "other.example", owner="alice")
        for cert_name in ("missing", "admins", "alices"):
            answer = create_proxy(self.h, alice, "a.example", cert_name=cert_name)
            self.h.assert_error(answer, 422, "invalid_input", "/cert_name")
        self.assertIsNone(stored_proxy(self.h, "a.example"))

    def test_timeouts_must_be_positive(self) -> None:
        """A zero connect timeout is 422 /connect_timeout."""
        answer = create_proxy(self.h, self.h.admin_token, "a.example", connect_timeout=0)
        self.h.assert_error(answer, 422, "invalid_input", "/connect_timeout")

    def test_a_proxy_must_serve_something(self) -> None:
        """HTTP and HTTPS both disabled is 422 /enable_https."""
        answer = create_proxy(
            self.h, self.h.admin_token, "a.example", enable_http=False, enable_https=False
        )
        self.h.assert_error(answer, 422, "invalid_input", "/enable_https")

    def test_owner_cannot_be_chosen(self) -> None:
        """``owner`` is not a settable field: 422 naming it."""
        answer = create_proxy(self.h, self.h.admin_token, "a.example", owner="bob")
        self.h.assert_error(answer, 422, "invalid_input", "/owner")

    def test_without_token_is_401(self) -> None:
        """Creating a proxy needs a bearer token."""
        answer = self.h.call(
            "POST", "/proxy/targets/", body={"hostname": "a.example", "target_url": "http://x"}
        )
        self.h.assert_error(answer, 401, "unauthorized")

    def test_non_admin_token_owns_what_it_creates(self) -> None:
        """A non-admin token may create proxies; they record its name as owner."""
        alice = self.h.add_token("alice")
        answer = create_proxy(self.h, alice, "alice.example")
        self.assertEqual(answer.json()["owner"], "alice")


class ReadTests(SynchronousTestCase):
    """``GET /proxy/targets/`` and ``GET /proxy/targets/{hostname}``, with ownership."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")
        self.bob = self.h.add_token("bob")
        create_proxy(self.h, self.alice, "a1.example", staging=True)
        create_proxy(self.h, self.alice, "a2.example")
        create_proxy(self.h, self.bob, "b1.example")

    def hostnames(self, path: str, token: str) -> list[str]:
        """The hostnames of a list page."""
        answer = self.h.call("GET", path, token=token)
        self.assertEqual(answer.status, 200, answer.body)
        return [p["hostname"] for p in answer.json()["items"]]

    def test_admin_lists_every_proxy(self) -> None:
        """The admin token sees all proxies, by hostname."""
        self.assertEqual(
            self.hostnames("/proxy/targets/", self.h.admin_token),
            ["a1.example", "a2.example", "b1.example"],
        )

    def test_non_admin_lists_only_its_own(self) -> None:
        """A non-admin token's list holds only the proxies it created."""
        self.assertEqual(self.hostnames("/proxy/targets/", self.bob), ["b1.example"])

    def test_filters_and_pages(self) -> None:
        """Filters select by exact value; limit/offset page through the rest."""
        self.assertEqual(
            self.hostnames("/proxy/targets/?owner=alice&staging=true", self.h.admin_token),
            ["a1.example"],
        )
        page = self.h.call("GET", "/proxy/targets/?limit=1&offset=1", token=self.h.admin_token)
        self.assertEqual((page.json()["total"], page.json()["next_offset"]), (3, 2))

    def test_unknown_filter_is_named(self) -> None:
        """An undeclared query parameter is 422 naming it."""
        answer = self.h.call("GET", "/proxy/targets/?colour=red", token=self.h.admin_token)
        self.h.assert_error(answer, 422, "invalid_input", "colour")

    def test_show_is_case_insensitive(self) -> None:
        """``GET /proxy/targets/A1.Example`` finds the lower-case record."""
        answer = self.h.call("GET", "/proxy/targets/A1.Example", token=self.alice)
        self.assertEqual((answer.status, answer.json()["hostname"]), (200, "a1.example"))

    def test_other_owners_proxy_is_404(self) -> None:
        """Token B cannot read token A's proxy: 404, as if it did not exist."""
        answer = self.h.call("GET", "/proxy/targets/a1.example", token=self.bob)
        self.h.assert_error(answer, 404, "not_found")

    def test_admin_reads_any_proxy(self) -> None:
        """The admin token reads a proxy another token owns."""
        answer = self.h.call("GET", "/proxy/targets/b1.example", token=self.h.admin_token)
        self.assertEqual((answer.status, answer.json()["owner"]), (200, "bob"))

    def test_unknown_is_404(self) -> None:
        """An unknown hostname is 404."""
        answer = self.h.call("GET", "/proxy/targets/none.example", token=self.h.admin_token)
        self.h.assert_error(answer, 404, "not_found")

    def test_malformed_hostname_in_path_is_named(self) -> None:
        """A path hostname that is no DNS name is 422 naming the parameter."""
        answer = self.h.call("GET", "/proxy/targets/bad_name", token=self.h.admin_token)
        self.h.assert_error(answer, 422, "invalid_input", "hostname")


class UpdateTests(SynchronousTestCase):
    """``PUT``/``PATCH /proxy/targets/{hostname}``."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")
        self.bob = self.h.add_token("bob")
        add_certificate(self.h, "c1", "a.example", owner="alice")
        create_proxy(
            self.h, self.alice, "a.example", cert_name="c1", custom_request_headers={"X-A": "1"}
        )
        self.before = stored_proxy(self.h, "a.example")
        self.h.clock.advance(10)

    def test_patch_changes_only_the_given_fields(self) -> None:
        """PATCH with one field changes it and updated_at; everything else stays."""
        answer = self.h.call(
            "PATCH", "/proxy/targets/a.example", token=self.alice, body={"read_timeout": 5}
        )
        self.assertEqual(answer.status, 200, answer.body)
        after = stored_proxy(self.h, "a.example")
        assert after is not None and self.before is not None
        self.assertEqual(after.read_timeout, 5.0)
        self.assertEqual(after.updated_at, self.before.updated_at + 10)
        self.assertEqual(after, evolve(self.before, read_timeout=5.0, updated_at=after.updated_at))

    def test_put_also_changes_only_the_given_fields(self) -> None:
        """PUT takes any subset of the fields, like PATCH."""
        answer = self.h.call(
            "PUT",
            "/proxy/targets/a.example",
            token=self.alice,
            body={"target_url": "https://new.internal", "custom_request_headers": {}},
        )
        self.assertEqual(answer.status, 200, answer.body)
        after = stored_proxy(self.h, "a.example")
        assert after is not None
        self.assertEqual(
            (after.target_url, after.custom_request_headers), ("https://new.internal", ())
        )
        self.assertEqual(after.cert_name, "c1")

    def test_null_clears_the_certificate_name(self) -> None:
        """``cert_name: null`` goes back to any certificate covering the hostname."""
        self.h.call("PATCH", "/proxy/targets/a.example", token=self.alice, body={"cert_name": None})
        after = stored_proxy(self.h, "a.example")
        assert after is not None
        self.assertIsNone(after.cert_name)

    def test_changing_to_another_owners_certificate_is_refused(self) -> None:
        """Token A cannot switch its proxy to token B's certificate: 422 /cert_name."""
        add_certificate(self.h, "bobs", "a.example", owner="bob")
        answer = self.h.call(
            "PATCH", "/proxy/targets/a.example", token=self.alice, body={"cert_name": "bobs"}
        )
        self.h.assert_error(answer, 422, "invalid_input", "/cert_name")
        self.assertEqual(stored_proxy(self.h, "a.example"), self.before)

    def test_invalid_change_is_named_and_not_stored(self) -> None:
        """An invalid field is 422 naming it; the record does not change."""
        answer = self.h.call(
            "PATCH", "/proxy/targets/a.example", token=self.alice, body={"target_url": "nope"}
        )
        self.h.assert_error(answer, 422, "invalid_input", "/target_url")
        self.assertEqual(stored_proxy(self.h, "a.example"), self.before)

    def test_hostname_cannot_change(self) -> None:
        """The hostname is the key: a body naming it is 422 /hostname."""
        answer = self.h.call(
            "PATCH", "/proxy/targets/a.example", token=self.alice, body={"hostname": "b.example"}
        )
        self.h.assert_error(answer, 422, "invalid_input", "/hostname")

    def test_other_owner_cannot_change(self) -> None:
        """Token B's PATCH of token A's proxy is 404 and changes nothing."""
        answer = self.h.call(
            "PATCH", "/proxy/targets/a.example", token=self.bob, body={"staging": True}
        )
        self.h.assert_error(answer, 404, "not_found")
        self.assertEqual(stored_proxy(self.h, "a.example"), self.before)

    def test_admin_changes_any_proxy_and_owner_stays(self) -> None:
        """The admin token may change token A's proxy; A still owns it."""
        answer = self.h.call(
            "PATCH", "/proxy/targets/a.example", token=self.h.admin_token, body={"staging": True}
        )
        self.assertEqual((answer.status, answer.json()["owner"]), (200, "alice"))

    def test_unknown_proxy_is_404(self) -> None:
        """Updating an unknown hostname is 404."""
        answer = self.h.call(
            "PUT", "/proxy/targets/none.example", token=self.h.admin_token, body={"staging": True}
        )
        self.h.assert_error(answer, 404, "not_found")


class DeleteTests(SynchronousTestCase):
    """``DELETE /proxy/targets/{hostname}``."""

    def setUp(self) -> None:
        self.h = Harness(self)
        self.alice = self.h.add_token("alice")
        self.bob = self.h.add_token("bob")
        create_proxy(self.h, self.alice, "a.example")

    def test_owner_deletes(self) -> None:
        """The owner's DELETE is 204, the record and its event follow."""
        answer = self.h.call("DELETE", "/proxy/targets/a.example", token=self.alice)
        self.assertEqual((answer.status, answer.body), (204, b""))
        self.assertIsNone(stored_proxy(self.h, "a.example"))
        self.assertEqual(self.h.storage.state.events[-1].type, "proxy_deleted")

    def test_other_owner_cannot_delete(self) -> None:
        """Token B's DELETE of token A's proxy is 404; the proxy stays."""
        answer = self.h.call("DELETE", "/proxy/targets/a.example", token=self.bob)
        self.h.assert_error(answer, 404, "not_found")
        self.assertIsNotNone(stored_proxy(self.h, "a.example"))

    def test_admin_deletes_any_proxy(self) -> None:
        """The admin token deletes token A's proxy."""
        answer = self.h.call("DELETE", "/proxy/targets/a.example", token=self.h.admin_token)
        self.assertEqual(answer.status, 204)

    def test_unknown_is_404(self) -> None:
        """Deleting an unknown hostname is 404."""
        answer = self.h.call("DELETE", "/proxy/targets/none.example", token=self.alice)
        self.h.assert_error(answer, 404, "not_found")
