"""Tests for request-target canonicalization (ATK-10, ATK-12)."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.gateway.paths import BadPath, authority_of, canonical_path, split_target

#: raw path pieces an attacker would combine
_PIECES = st.sampled_from(
    [
        "/",
        "//",
        ".",
        "..",
        "%2e",
        "%2E%2e",
        "%2f",
        "%5c",
        "\\",
        "%00",
        "%252e",
        "%25",
        ";x",
        "admin",
        "public",
        "a%41",
        "%C0%AE",
        "%e2%82%ac",
        "~",
        "%",
        "%zz",
        "?",
    ]
)


def _upstream_view(canonical: str) -> str:
    """What an RFC 3986 upstream makes of a path: decode once, then resolve dot segments."""
    decoded = unquote_to_bytes(canonical).decode("utf-8")
    out: list[str] = []
    for seg in decoded.split("/")[1:]:
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    return "/" + "/".join(out)


class CanonicalPathTests(SynchronousTestCase):
    """The canonical path is what routing matches and what the upstream receives."""

    def test_dot_dot_is_resolved(self) -> None:
        """ATK-10: ``/public/../admin`` routes and forwards as ``/admin``."""
        self.assertEqual(canonical_path(b"/public/../admin"), "/admin")

    def test_encoded_dots_are_resolved(self) -> None:
        """ATK-10: ``%2e%2e`` is a dot segment too."""
        self.assertEqual(canonical_path(b"/public/%2e%2E/admin"), "/admin")

    def test_double_slash_is_collapsed(self) -> None:
        """ATK-10: ``//admin`` is ``/admin``."""
        self.assertEqual(canonical_path(b"//admin//x"), "/admin/x")

    def test_trailing_slash_is_kept(self) -> None:
        """``/admin/`` stays distinct from ``/admin``."""
        self.assertEqual(canonical_path(b"/admin/"), "/admin/")

    def test_unreserved_escapes_are_decoded(self) -> None:
        """``%61dmin`` is ``admin``: routing cannot be dodged by spelling."""
        self.assertEqual(canonical_path(b"/%61dmin"), "/admin")

    def test_reserved_escapes_stay_encoded_upper_case(self) -> None:
        """An escaped ``;`` stays escaped, with upper-case hex."""
        self.assertEqual(canonical_path(b"/a%3bb"), "/a%3Bb")

    def test_encoded_slash_is_rejected(self) -> None:
        """ATK-10: ``%2f`` would split the router's and the upstream's view."""
        self.assertRaises(BadPath, canonical_path, b"/public%2f..%2fadmin")

    def test_encoded_backslash_is_rejected(self) -> None:
        """ATK-10: ``%5c``."""
        self.assertRaises(BadPath, canonical_path, b"/public%5c..%5cadmin")

    def test_raw_backslash_is_rejected(self) -> None:
        """ATK-10: a raw ``\\``."""
        self.assertRaises(BadPath, canonical_path, b"/public\\..\\admin")

    def test_encoded_nul_is_rejected(self) -> None:
        """ATK-10: ``%00``."""
        self.assertRaises(BadPath, canonical_path, b"/admin%00.png")

    def test_double_encoding_is_rejected(self) -> None:
        """ATK-10: ``%252e%252e``."""
        self.assertRaises(BadPath, canonical_path, b"/%252e%252e/admin")

    def test_overlong_utf8_is_rejected(self) -> None:
        """ATK-10: ``%c0%ae`` is an overlong ``.``."""
        self.assertRaises(BadPath, canonical_path, b"/%c0%ae%c0%ae/admin")

    def test_malformed_escape_is_rejected(self) -> None:
        """A ``%`` without two hex digits."""
        self.assertRaises(BadPath, canonical_path, b"/a%g1")

    def test_truncated_escape_is_rejected(self) -> None:
        """A ``%`` at the end of the path."""
        self.assertRaises(BadPath, canonical_path, b"/a%4")

    @given(st.lists(_PIECES, max_size=12))
    def test_canonical_form_is_a_fixed_point(self, pieces: list[str]) -> None:
        """Canonicalizing twice changes nothing."""
        raw = ("/" + "".join(pieces)).encode()
        try:
            once = canonical_path(raw)
        except BadPath:
            return
        self.assertEqual(canonical_path(once.encode()), once)

    @given(st.lists(_PIECES, max_size=12))
    def test_upstream_sees_the_routed_path(self, pieces: list[str]) -> None:
        """ATK-10: decoding and resolving the canonical path changes no segment structure.

        The upstream's interpretation has the same segments as the path routing matched, so
        no ``/public/../admin``-style split is possible.
        """
        raw = ("/" + "".join(pieces)).encode()
        try:
            canonical = canonical_path(raw)
        except BadPath:
            return
        decoded = unquote_to_bytes(canonical).decode("utf-8")
        self.assertEqual(_upstream_view(canonical), decoded)
        self.assertEqual(decoded.count("/"), canonical.count("/"))
        self.assertNotIn("//", decoded)


class SplitTargetTests(SynchronousTestCase):
    """Request targets are reduced to path and query."""

    def test_query_is_kept_verbatim(self) -> None:
        """ATK-11: the query is split off and never canonicalized."""
        self.assertEqual(split_target(b"/a?x=/../admin"), (b"/a", b"?x=/../admin"))

    def test_absolute_form_is_reduced_to_its_path(self) -> None:
        """ATK-12: ``http://other/admin`` keeps only ``/admin``."""
        self.assertEqual(split_target(b"http://other/admin?q"), (b"/admin", b"?q"))

    def test_absolute_form_authority_is_reported(self) -> None:
        """ATK-12: the caller can compare the authority with Host."""
        self.assertEqual(authority_of(b"http://Other:8080/admin"), b"Other:8080")

    def test_asterisk_form_is_rejected(self) -> None:
        """``OPTIONS *`` has no path to route."""
        self.assertRaises(BadPath, split_target, b"*")
