"""Tests for :mod:`oauthproxy.oauth.cimd`: client ID metadata documents and SSRF policy."""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.oauth.cimd import (
    MAX_DOCUMENT_SIZE,
    address_allowed,
    cache_lifetime,
    check_addresses,
    check_fetch_response,
    client_id_host,
    is_metadata_document_client_id,
    localhost_only,
    parse_client_metadata_document,
    validate_client_id_url,
)
from oauthproxy.oauth.errors import InvalidClient

URL = "https://app.example.test/oauth/client.json"
NOW = 1_700_000_000.0


def document(**overrides: Any) -> bytes:
    """A valid CIMD document for :data:`URL`, with overrides (None drops a field)."""
    base: dict[str, Any] = {
        "client_id": URL,
        "client_name": "Example MCP Client",
        "redirect_uris": ["http://127.0.0.1/callback", "https://app.example.test/cb"],
        "token_endpoint_auth_method": "none",
    }
    base.update(overrides)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


class UrlTests(SynchronousTestCase):
    """Which client_id values are CIMD URLs (MCP-7)."""

    def test_https_url_with_path_is_accepted(self) -> None:
        """MCP-7: an https client_id with a path is a metadata document URL."""
        self.assertTrue(is_metadata_document_client_id(URL))
        self.assertEqual(validate_client_id_url(URL), URL)

    def test_bad_urls_are_rejected(self) -> None:
        """MCP-7: no path, http, fragments, userinfo, dot segments are all refused."""
        for url in (
            "https://app.example.test",
            "https://app.example.test/",
            "http://app.example.test/c.json",
            "https://app.example.test/c.json#x",
            "https://user@app.example.test/c.json",
            "https://app.example.test/a/../c.json",
            "https://app.example.test:99999/c.json",
        ):
            with self.assertRaises(InvalidClient, msg=url):
                validate_client_id_url(url)

    def test_self_issued_ids_are_not_urls(self) -> None:
        """MCP-7: our own client_ids never start with https://."""
        self.assertFalse(is_metadata_document_client_id("mcp_3f2a9c"))


class DocumentTests(SynchronousTestCase):
    """Validation of a fetched document (MCP-7)."""

    def test_valid_document_becomes_public_cimd_client(self) -> None:
        """MCP-7: a valid document yields a public client whose id is the URL."""
        client = parse_client_metadata_document(URL, document(), now=NOW)
        self.assertEqual((client.client_id, client.source, client.is_public), (URL, "cimd", True))
        self.assertEqual(client.client_name, "Example MCP Client")
        self.assertEqual(client.application_type, "native")

    def test_client_id_must_equal_url_without_normalisation(self) -> None:
        """MCP-7: the document's client_id equals the URL by simple string comparison."""
        for other in (URL.upper(), URL + "/", "https://APP.example.test/oauth/client.json"):
            with self.assertRaises(InvalidClient):
                parse_client_metadata_document(URL, document(client_id=other), now=NOW)

    def test_required_fields(self) -> None:
        """MCP-7: client_id, client_name and redirect_uris are required."""
        for missing in ("client_id", "client_name", "redirect_uris"):
            with self.assertRaises(InvalidClient, msg=missing):
                parse_client_metadata_document(URL, document(**{missing: None}), now=NOW)

    def test_secrets_are_rejected(self) -> None:
        """MCP-7: client_secret* fields are refused."""
        with self.assertRaises(InvalidClient):
            parse_client_metadata_document(URL, document(client_secret="x"), now=NOW)

    def test_shared_secret_auth_methods_are_rejected(self) -> None:
        """MCP-7: shared-secret token_endpoint_auth_method values are refused."""
        for method in ("client_secret_basic", "client_secret_post", "client_secret_jwt"):
            with self.assertRaises(InvalidClient):
                parse_client_metadata_document(
                    URL, document(token_endpoint_auth_method=method), now=NOW
                )

    def test_oversize_document_is_rejected(self) -> None:
        """MCP-7, ATK-4: documents over 5 KB are refused."""
        big = document(client_name="x" * MAX_DOCUMENT_SIZE)
        with self.assertRaises(InvalidClient):
            parse_client_metadata_document(URL, big, now=NOW)

    def test_non_json_is_rejected(self) -> None:
        """MCP-7: the document must be a JSON object."""
        for raw in (b"<html>", b"[]", b"\xff\xfe"):
            with self.assertRaises(InvalidClient):
                parse_client_metadata_document(URL, raw, now=NOW)

    def test_invalid_redirect_uri_is_rejected(self) -> None:
        """MCP-7: redirect URIs follow the registration rules."""
        with self.assertRaises(InvalidClient):
            parse_client_metadata_document(
                URL, document(redirect_uris=["http://evil.test/cb"]), now=NOW
            )


class FetchTests(SynchronousTestCase):
    """The fetch response and caching (MCP-7)."""

    def test_only_200_is_accepted(self) -> None:
        """MCP-7, ATK-4: redirects are not followed; other statuses fail."""
        check_fetch_response(200, 100)
        for status in (301, 302, 307, 308, 404, 500):
            with self.assertRaises(InvalidClient):
                check_fetch_response(status, 100)

    def test_declared_oversize_is_rejected_before_reading(self) -> None:
        """ATK-4: a Content-Length over the limit is refused at once."""
        with self.assertRaises(InvalidClient):
            check_fetch_response(200, MAX_DOCUMENT_SIZE + 1)

    def test_cache_control_is_honoured(self) -> None:
        """MCP-7: max-age is honoured (capped), no-store means not cached."""
        self.assertEqual(cache_lifetime("public, max-age=60"), 60.0)
        self.assertEqual(cache_lifetime("max-age=99999999"), 86400.0)
        self.assertEqual(cache_lifetime("no-store"), 0.0)
        self.assertEqual(cache_lifetime(None), 300.0)


class SsrfTests(SynchronousTestCase):
    """Special-use addresses are never contacted (ATK-4)."""

    def test_special_use_addresses_are_blocked(self) -> None:
        """ATK-4: loopback, private, link-local, metadata, CGNAT, multicast... are blocked."""
        for address in (
            "127.0.0.1",
            "127.8.8.8",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "::7f00:1",
            "::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:db8::1",
            "ff02::1",
            "not-an-ip",
        ):
            self.assertFalse(address_allowed(address), address)

    def test_public_addresses_are_allowed(self) -> None:
        """ATK-4: ordinary public unicast addresses may be contacted."""
        for address in ("93.184.215.14", "2606:4700:4700::1111", "::ffff:8.8.8.8"):
            self.assertTrue(address_allowed(address), address)

    def test_one_private_answer_taints_the_lookup(self) -> None:
        """ATK-4: DNS rebinding mixes answers; any blocked answer refuses the name."""
        with self.assertRaises(InvalidClient):
            check_addresses(["93.184.215.14", "127.0.0.1"])
        self.assertEqual(check_addresses(["93.184.215.14"]), ("93.184.215.14",))

    def test_no_answer_is_refused(self) -> None:
        """ATK-4: a name that does not resolve is refused."""
        with self.assertRaises(InvalidClient):
            check_addresses([])

    def test_loopback_is_refused_by_default(self) -> None:
        """ATK-4: without an operator allow-list, loopback answers are refused."""
        with self.assertRaises(InvalidClient):
            check_addresses(["127.0.0.1"])
        with self.assertRaises(InvalidClient):
            check_addresses(["127.0.0.1"], ())

    def test_listed_networks_are_allowed(self) -> None:
        """ATK-4: an address in an operator-listed network may be contacted."""
        listed = ("127.0.0.0/8", "fd00::/8")
        self.assertEqual(check_addresses(["127.0.0.5"], listed), ("127.0.0.5",))
        self.assertTrue(address_allowed("fd00::1", listed))
        self.assertTrue(address_allowed("::ffff:127.0.0.1", listed))

    def test_listing_one_network_keeps_others_blocked(self) -> None:
        """ATK-4: the allow-list opens only the listed networks, nothing else."""
        listed = ("127.0.0.0/8",)
        for address in ("10.0.0.1", "169.254.169.254", "::1", "fd00::1"):
            self.assertFalse(address_allowed(address, listed), address)
        with self.assertRaises(InvalidClient):
            check_addresses(["127.0.0.1", "10.0.0.1"], listed)


class ConsentFactsTests(SynchronousTestCase):
    """What the consent page shows for CIMD clients (MCP-7)."""

    def test_hostname_is_shown(self) -> None:
        """MCP-7: the consent page shows the client_id's host."""
        self.assertEqual(client_id_host(URL), "app.example.test")

    def test_localhost_only_redirects_are_flagged(self) -> None:
        """MCP-7: warn when every redirect URI is loopback."""
        self.assertTrue(localhost_only(["http://127.0.0.1/cb", "http://localhost:3/cb"]))
        self.assertFalse(localhost_only(["http://127.0.0.1/cb", "https://a.test/cb"]))
