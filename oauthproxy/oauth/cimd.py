"""Client ID metadata documents (CIMD, MCP 2025-11-25+): validation and SSRF policy.

A client may use an HTTPS URL as its ``client_id``; we fetch the JSON document there
and treat it as the client's registration (MCP-7).  This module holds the pure rules:
which URLs qualify, which fetch responses count (200 only, no redirects, at most
5 KB), what the document must contain (its ``client_id`` equal to the URL by plain
string comparison, a name, valid redirect URIs, no shared secrets), how long it may be
cached, and which resolved addresses may be contacted at all (special-use addresses
are blocked against SSRF, ATK-4).  The fetcher connects only to an address this module
approved, so a DNS answer cannot change between check and use.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from oauthproxy.oauth.errors import InvalidClient, InvalidClientMetadata, OAuth2Error
from oauthproxy.oauth.records import OAuthClient
from oauthproxy.oauth.redirects import is_loopback_redirect
from oauthproxy.oauth.registration import new_client, validate_client_metadata

MAX_DOCUMENT_SIZE = 5 * 1024
DEFAULT_CACHE_SECONDS = 300.0
MAX_CACHE_SECONDS = 86400.0
_SHARED_SECRET_METHODS = frozenset(
    {"client_secret_basic", "client_secret_post", "client_secret_jwt"}
)
_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")

# special-use ranges that ``is_global`` lets through or that embed other addresses
_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "100.64.0.0/10",
        "192.0.0.0/24",
        "192.88.99.0/24",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/96",  # ::/128 and the deprecated IPv4-compatible ::a.b.c.d (::7f00:1 = 127.0.0.1)
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "64:ff9b:1::/48",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_metadata_document_client_id(client_id: str) -> bool:
    """Whether ``client_id`` is a CIMD URL (self-issued ids never start with https://)."""
    return client_id.startswith("https://")


def validate_client_id_url(url: str) -> str:
    """Check that a CIMD ``client_id`` is a fetchable HTTPS URL with a path (MCP-7)."""
    if len(url) > 2000 or _PRINTABLE.fullmatch(url) is None or "#" in url:
        raise InvalidClient("client_id URL is malformed", "client_id")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port validates it
    except ValueError as e:
        raise InvalidClient("client_id URL is malformed", "client_id") from e
    if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc:
        raise InvalidClient("client_id URL must be https with a host", "client_id")
    path = parts.path
    if path in ("", "/"):
        raise InvalidClient("client_id URL must have a path", "client_id")
    segments = path.split("/")
    if "." in segments or ".." in segments:
        raise InvalidClient("client_id URL must not contain dot segments", "client_id")
    return url


def address_allowed(address: str, allowed_networks: Iterable[str] = ()) -> bool:
    """Whether a resolved address may be contacted: public unicast only (SSRF, ATK-4).

    ``allowed_networks`` (CIDRs, operator setting ``OAUTHPROXY_CIMD_ALLOWED_NETWORKS``,
    empty by default) are also allowed, for clients whose documents live internally.
    """
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return address_allowed(str(embedded), allowed_networks)
    for cidr in allowed_networks:
        network = ipaddress.ip_network(cidr, strict=False)
        # versions compared first: ``in`` does not check them
        if network.version == ip.version and ip in network:
            return True
    if any(ip in network for network in _BLOCKED_NETWORKS):
        return False
    return ip.is_global and not ip.is_multicast


def check_addresses(
    addresses: Iterable[str], allowed_networks: Iterable[str] = ()
) -> tuple[str, ...]:
    """All resolved addresses, if every one is allowed; else :class:`InvalidClient`.

    One blocked answer taints the name (a rebinding setup mixes public and private
    answers), so the whole lookup is refused.  ``allowed_networks``: see
    :func:`address_allowed`.
    """
    found = tuple(addresses)
    if not found:
        raise InvalidClient("client_id host does not resolve", "client_id")
    extra = tuple(allowed_networks)
    blocked = [a for a in found if not address_allowed(a, extra)]
    if blocked:
        raise InvalidClient("client_id host resolves to a special-use address", "client_id")
    return found


def check_fetch_response(status: int, content_length: int | None) -> None:
    """Accept only a 200 answer of bounded size; redirects are never followed (MCP-7)."""
    if 300 <= status < 400:
        raise InvalidClient("client metadata document redirects; not followed", "client_id")
    if status != 200:
        raise InvalidClient(f"client metadata document answered {status}", "client_id")
    if content_length is not None and content_length > MAX_DOCUMENT_SIZE:
        raise InvalidClient("client metadata document is too large", "client_id")


def parse_client_metadata_document(url: str, body: bytes, *, now: float) -> OAuthClient:
    """The client a fetched CIMD document describes, or :class:`InvalidClient`."""
    if len(body) > MAX_DOCUMENT_SIZE:
        raise InvalidClient("client metadata document is too large", "client_id")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidClient("client metadata document is not JSON", "client_id") from e
    if not isinstance(document, dict):
        raise InvalidClient("client metadata document is not a JSON object", "client_id")
    if document.get("client_id") != url:
        # simple string comparison, no normalisation (MCP-7)
        raise InvalidClient("document client_id does not equal its URL", "client_id")
    if not isinstance(document.get("client_name"), str) or not document["client_name"]:
        raise InvalidClient("client metadata document needs client_name", "client_name")
    if "redirect_uris" not in document:
        raise InvalidClient("client metadata document needs redirect_uris", "redirect_uris")
    if any(key.startswith("client_secret") for key in document):
        raise InvalidClient("client metadata documents must not carry secrets", "client_secret")
    method = document.get("token_endpoint_auth_method", "none")
    if method in _SHARED_SECRET_METHODS:
        raise InvalidClient(
            "shared-secret authentication is not allowed for CIMD clients",
            "token_endpoint_auth_method",
        )
    if method != "none":
        raise InvalidClient(
            f"token_endpoint_auth_method {str(method)[:40]} is not supported",
            "token_endpoint_auth_method",
        )
    fields: dict[str, object] = {k: v for k, v in document.items() if k != "client_id"}
    fields["token_endpoint_auth_method"] = "none"
    grants = fields.get("grant_types")
    if grants is None:
        fields["grant_types"] = ["authorization_code", "refresh_token"]
    try:
        metadata = validate_client_metadata(fields)
    except InvalidClientMetadata as e:
        raise InvalidClient(e.detail, e.field) from e
    except OAuth2Error as e:
        raise InvalidClient(e.detail, e.field) from e
    return new_client(
        metadata,
        client_id=url,
        now=now,
        client_secret=None,
        registration_token=None,
        source="cimd",
    )


def cache_lifetime(cache_control: str | None) -> float:
    """Seconds a valid document may be cached, honouring ``Cache-Control`` (MCP-7).

    Errors and invalid documents are never cached; the caller calls this only for a
    document that passed :func:`parse_client_metadata_document`.
    """
    if not cache_control:
        return DEFAULT_CACHE_SECONDS
    directives: Mapping[str, str] = {
        name.strip().lower(): value.strip().strip('"')
        for name, _, value in (part.partition("=") for part in cache_control.split(","))
    }
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    max_age = directives.get("max-age")
    if max_age is not None and max_age.isdigit():
        return min(float(max_age), MAX_CACHE_SECONDS)
    return DEFAULT_CACHE_SECONDS


def client_id_host(client_id: str) -> str:
    """The host to show on the consent page for a CIMD client (MCP-7)."""
    try:
        return urlsplit(client_id).hostname or client_id
    except ValueError:
        return client_id


def localhost_only(redirect_uris: Iterable[str]) -> bool:
    """Whether every redirect URI is loopback: the consent page warns (MCP-7)."""
    uris = tuple(redirect_uris)
    return bool(uris) and all(is_loopback_redirect(uri) for uri in uris)
