"""Properties of :mod:`oauthproxy.admin.validation`: what the API accepts, the gateway can use.

The admin API and the gateway parse the same values in two places; these tests
tie them together: an accepted target URL is one the gateway can connect to, an
accepted route path is one the gateway's canonical path can equal, an accepted
header can never split a message.
"""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.admin.validation import (
    HOSTNAME_PATTERN,
    header_pairs,
    hostname,
    http_url,
    path_prefix,
    port_number,
)
from oauthproxy.errors import InvalidInput
from oauthproxy.gateway.paths import canonical_path
from oauthproxy.gateway.routing import normalize_host, parse_upstream

#: no per-example deadline: on a loaded machine a slow example is not a failure
_RELAXED = settings(deadline=None)
_URLISH = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda scheme, rest: f"{scheme}://{rest}",
        st.sampled_from(["http", "https", "HTTP", "ftp", ""]),
        st.text(alphabet="ab.:[]@/%?#0123456789 \t\r\n-", max_size=30),
    ),
)
_PATHISH = st.text(alphabet="/.%2aAF~ -_?#\\\x00é", max_size=30)


class UrlTests(SynchronousTestCase):
    """``http_url``."""

    @_RELAXED
    @given(_URLISH)
    @example("http://[::1]:8080/x")
    @example("http://h:0")
    def test_accepted_urls_are_usable_by_the_gateway(self, text: str) -> None:
        """Every URL the API accepts parses as an upstream (no 502 from a stored typo)."""
        try:
            accepted = http_url(text, "/target_url")
        except InvalidInput as e:
            self.assertEqual(e.field, "/target_url")
            return
        upstream = parse_upstream(accepted, None)
        self.assertIn(upstream.scheme, ("http", "https"))
        self.assertTrue(0 < upstream.port < 65536)


class PathTests(SynchronousTestCase):
    """``path_prefix``."""

    @_RELAXED
    @given(_PATHISH)
    @example("/public/../admin")
    @example("/%2e%2e/admin")
    def test_accepted_paths_are_canonical(self, text: str) -> None:
        """An accepted prefix is its own canonical form: the gateway can see exactly it."""
        try:
            accepted = path_prefix(text, "/path_pattern")
        except InvalidInput as e:
            self.assertEqual(e.field, "/path_pattern")
            return
        self.assertEqual(canonical_path(accepted.encode("ascii")), accepted)
        self.assertNotIn("/../", accepted + "/")


class HeaderTests(SynchronousTestCase):
    """``header_pairs``."""

    @_RELAXED
    @given(st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=4))
    def test_accepted_headers_cannot_split_messages(self, headers: dict[str, str]) -> None:
        """Accepted names have no CR, LF, NUL, colon or space; values are printable ASCII."""
        try:
            pairs = header_pairs(headers, "/h", request=True)
        except InvalidInput as e:
            self.assertTrue(e.field is not None and e.field.startswith("/h/"))
            return
        for name, value in pairs:
            self.assertIsNone(re.search(r"[\r\n\x00: ]", name))
            self.assertIsNotNone(re.fullmatch(r"[\t\x20-\x7e]*", value))


class HostnameTests(SynchronousTestCase):
    """``hostname``."""

    @_RELAXED
    @given(st.from_regex(HOSTNAME_PATTERN, fullmatch=True).filter(lambda h: len(h) <= 253))
    def test_dns_names_are_stored_as_the_gateway_normalizes_hosts(self, name: str) -> None:
        """A stored hostname equals the gateway's normalized Host for it (so it can match)."""
        self.assertEqual(hostname(name), normalize_host(name.upper()))

    @_RELAXED
    @given(
        st.builds(
            lambda before, bad, after: before + bad + after,
            st.text(max_size=8),
            st.sampled_from("*_ :/"),
            st.text(max_size=8),
        )
    )
    def test_wildcards_and_separators_are_refused(self, text: str) -> None:
        """Wildcards, underscores, spaces, ports and slashes never make a hostname."""
        with self.assertRaises(InvalidInput):
            hostname(text)


class PortTests(SynchronousTestCase):
    """``port_number``."""

    @_RELAXED
    @given(st.text(alphabet="0123456789+- x", max_size=7))
    def test_accepted_ports_are_in_range(self, text: str) -> None:
        """An accepted port is a canonical decimal 1-65535."""
        try:
            port = port_number(text, "/target_value")
        except InvalidInput:
            return
        self.assertTrue(0 < int(port) < 65536)
        self.assertEqual(port, str(int(port)))
