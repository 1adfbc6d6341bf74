"""Tests for :mod:`oauthproxy.storage.codec`: records to JSON and back."""

from __future__ import annotations

import json

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.model import (
    ApiToken,
    AuthRule,
    Certificate,
    ExternalService,
    Proxy,
    ProxyAuth,
    Route,
)
from oauthproxy.storage.codec import (
    RECORD_TYPES,
    CodecError,
    Record,
    decode,
    decode_record,
    encode,
    kind_of,
    record_key,
)

for _cls in (Proxy, ProxyAuth, Route, Certificate, ApiToken, ExternalService, AuthRule):
    # hypothesis needs real types, not the postponed annotation strings
    attrs.resolve_types(_cls)

records = st.one_of(*(st.from_type(cls) for cls in RECORD_TYPES.values()))


class CodecTests(SynchronousTestCase):
    """encode/decode round trips and their error reporting."""

    @given(record=records)
    def test_round_trip(self, record: Record) -> None:
        """Every record survives encode then decode (NaN aside, JSON text is stable)."""
        text = encode(record)
        decoded = decode(type(record), text)
        self.assertEqual(encode(decoded), text)
        if "NaN" not in text:  # NaN is never equal to a NaN read back
            self.assertEqual(decoded, record)

    def test_nested_and_tuples(self) -> None:
        """Nested attrs values and tuples of pairs come back as such."""
        proxy = Proxy(
            "a.example",
            "http://b",
            custom_request_headers=(("X-A", "1"), ("X-A", "2")),
            auth=ProxyAuth(required_users=("alice", "bob")),
        )
        decoded = decode(Proxy, encode(proxy))
        self.assertEqual(decoded.custom_request_headers, (("X-A", "1"), ("X-A", "2")))
        self.assertIsInstance(decoded.auth, ProxyAuth)

    def test_encoding_is_deterministic(self) -> None:
        """Equal records give identical, compact, key-sorted JSON."""
        text = encode(ExternalService("s", "http://a"))
        self.assertEqual(text, encode(ExternalService("s", "http://a")))
        self.assertEqual(list(json.loads(text)), sorted(json.loads(text)))
        self.assertNotIn(" ", text)

    def test_unknown_fields_are_ignored(self) -> None:
        """JSON written by a newer version with extra fields still decodes."""
        text = '{"name": "s", "target_url": "http://a", "added_later": 1}'
        self.assertEqual(decode(ExternalService, text), ExternalService("s", "http://a"))

    def test_missing_fields_take_defaults(self) -> None:
        """JSON written by an older version without newer fields gets the defaults."""
        self.assertEqual(decode(Proxy, '{"hostname": "h", "target_url": "u"}'), Proxy("h", "u"))

    def test_missing_required_field_names_it(self) -> None:
        """A record without a required field raises CodecError naming the field."""
        with self.assertRaises(CodecError) as raised:
            decode(Proxy, '{"hostname": "h"}')
        self.assertIn("target_url", raised.exception.detail)

    def test_bad_literal_names_the_field(self) -> None:
        """A value outside a Literal type is rejected, naming the field."""
        text = '{"route_id": "r", "path_pattern": "/", "target_type": "ftp", "target_value": "x"}'
        with self.assertRaises(CodecError) as raised:
            decode(Route, text)
        self.assertIn("target_type", raised.exception.detail)

    def test_not_json(self) -> None:
        """Garbage raises CodecError, not a JSON exception."""
        with self.assertRaises(CodecError):
            decode(Proxy, "{nope")

    def test_record_kinds_and_keys(self) -> None:
        """Each record has its kind and key; proxies are keyed by lower-case hostname."""
        self.assertEqual(
            [
                (kind_of(r), record_key(r))
                for r in (
                    Proxy("A.Example", "u"),
                    Route("r1", "/", "url", "u"),
                    Certificate("c1", ("a",)),
                    ApiToken("t1", "h"),
                    ExternalService("s1", "u"),
                    AuthRule("a1", "/x"),
                )
            ],
            [
                ("proxy", "a.example"),
                ("route", "r1"),
                ("certificate", "c1"),
                ("token", "t1"),
                ("service", "s1"),
                ("auth_rule", "a1"),
            ],
        )

    def test_decode_record_unknown_kind(self) -> None:
        """decode_record refuses kinds it does not know."""
        with self.assertRaises(CodecError):
            decode_record("widget", "{}")
