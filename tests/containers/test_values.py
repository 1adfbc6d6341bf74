"""The value parsers Docker settings and requests share: sizes, ports, ranges, images."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.containers.values import (
    capability,
    format_size,
    image_allowed,
    image_reference,
    merge_ranges,
    parse_port_list,
    parse_port_ranges,
    parse_size,
)

ports = st.integers(min_value=1, max_value=65535)


class SizeTests(SynchronousTestCase):
    """Memory sizes read as Docker reads them (binary units)."""

    def test_units_are_powers_of_1024(self) -> None:
        """``512m`` is 512 MiB, ``1g`` 1 GiB, a bare number bytes."""
        self.assertEqual(parse_size("512m"), 512 * 1024**2)
        self.assertEqual(parse_size("1G"), 1024**3)
        self.assertEqual(parse_size("1.5g"), 1536 * 1024**2)
        self.assertEqual(parse_size("4096"), 4096)

    def test_nonsense_is_refused_naming_the_text(self) -> None:
        """A size that is not one raises ValueError quoting it."""
        for text in ("lots", "-1m", "0", "12x", ""):
            with self.assertRaises(ValueError, msg=text):
                parse_size(text)

    @given(st.integers(min_value=1, max_value=2**50))
    def test_format_then_parse_is_the_same_size(self, value: int) -> None:
        """What the API shows reads back as the same number of bytes."""
        self.assertEqual(parse_size(format_size(value)), value)


class PortRangeTests(SynchronousTestCase):
    """``OAUTHPROXY_PORT_RANGES`` and ``OAUTHPROXY_RESTRICTED_PORTS``."""

    def test_ranges_are_sorted_and_merged(self) -> None:
        """Overlapping and adjacent ranges merge; single ports are ranges of one."""
        self.assertEqual(
            parse_port_ranges("15000-16000, 14000-15001,9000,9001"),
            ((9000, 9001), (14000, 16000)),
        )

    def test_backwards_and_out_of_range_are_refused(self) -> None:
        """A range ending before it starts, port 0 or 70000 are errors."""
        for text in ("2000-1000", "0-10", "1-70000", "", "a-b"):
            with self.assertRaises(ValueError, msg=text):
                parse_port_ranges(text)

    @given(st.lists(st.tuples(ports, ports).map(sorted).map(tuple), min_size=1, max_size=8))
    def test_merged_ranges_cover_exactly_the_same_ports(
        self, ranges: list[tuple[int, int]]
    ) -> None:
        """Merging changes how ranges are written, never which ports they hold."""
        merged = merge_ranges(ranges)
        wanted = {p for first, last in ranges for p in range(first, last + 1)}
        held = {p for first, last in merged for p in range(first, last + 1)}
        self.assertEqual(held, wanted)
        for (_, last), (first, _) in pairwise(merged):
            self.assertGreater(first, last + 1, "merged ranges neither overlap nor touch")

    @given(st.lists(st.tuples(ports, ports).map(sorted), min_size=1, max_size=8))
    def test_written_ranges_parse_back(self, ranges: list[list[int]]) -> None:
        """Any list of ranges written ``a-b,c-d`` parses to its merged form."""
        text = ",".join(f"{a}-{b}" for a, b in ranges)
        self.assertEqual(parse_port_ranges(text), merge_ranges([(a, b) for a, b in ranges]))

    def test_port_list(self) -> None:
        """A comma-separated port list is sorted and deduplicated; empty is none."""
        self.assertEqual(parse_port_list("443, 22,22"), (22, 443))
        self.assertEqual(parse_port_list(""), ())


class ImageTests(SynchronousTestCase):
    """Image references and the allowlist."""

    def test_a_missing_tag_is_latest(self) -> None:
        """``nginx`` means ``nginx:latest``; tags and digests are kept."""
        self.assertEqual(image_reference("nginx"), "nginx:latest")
        self.assertEqual(image_reference("local/busybox:1"), "local/busybox:1")
        self.assertEqual(image_reference("registry:5000/a/b:2"), "registry:5000/a/b:2")

    def test_malformed_references_are_refused(self) -> None:
        """Upper-case paths, spaces and shell characters are not image references."""
        for text in ("Nginx", "nginx latest", "a;rm -rf /", "", ":tag", "a:" + "x" * 200):
            with self.assertRaises(ValueError, msg=text):
                image_reference(text)

    def test_allowlist_patterns(self) -> None:
        """Patterns are shell-style over the whole reference; no patterns allow every image."""
        patterns = ("local/*", "nginx:*")
        self.assertTrue(image_allowed("local/busybox:1", patterns))
        self.assertTrue(image_allowed("nginx:alpine", patterns))
        self.assertFalse(image_allowed("evil/nginx:alpine", patterns))
        self.assertTrue(image_allowed("anything:1", ()))

    def test_capability_names_are_normalised(self) -> None:
        """``cap_net_admin`` is ``NET_ADMIN``; nonsense is refused."""
        self.assertEqual(capability("cap_net_admin"), "NET_ADMIN")
        with self.assertRaises(ValueError):
            capability("net admin")
