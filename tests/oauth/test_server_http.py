"""Property tests of the request parsing the authorization server relies on."""

from __future__ import annotations

import io
from typing import Any, cast
from urllib.parse import urlencode

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyRequest

from oauthproxy.oauth.errors import InvalidRequest
from oauthproxy.oauth.resource_http import cookie, form_params, single

_NAME = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=";=,"),
    min_size=1,
    max_size=20,
)
_VALUE = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=";,"), max_size=40
)


def request(headers: dict[bytes, bytes], body: bytes = b"") -> Request:
    """A DummyRequest with ``headers`` and ``body``."""
    dummy: Any = DummyRequest([b""])
    for name, value in headers.items():
        dummy.requestHeaders.setRawHeaders(name, [value])
    dummy.content = io.BytesIO(body)
    return cast(Request, dummy)


class ParsingTests(SynchronousTestCase):
    """cookie, single and form_params."""

    @given(st.dictionaries(_NAME, _VALUE, max_size=5), _NAME)
    def test_cookie_finds_exactly_the_named_value(self, jar: dict[str, str], name: str) -> None:
        """ATK-23: a cookie is found under its exact name only, never by prefix or suffix."""
        header = "; ".join(f"{k}={v}" for k, v in jar.items()).encode()
        self.assertEqual(cookie(request({b"cookie": header}), name), jar.get(name))

    @given(st.lists(_VALUE, min_size=0, max_size=3))
    def test_single_refuses_repeats(self, values: list[str]) -> None:
        """RFC 6749 §3.1: a repeated parameter is invalid_request; one is its value."""
        if len(values) > 1:
            with self.assertRaises(InvalidRequest):
                single({"p": values}, "p")
        else:
            self.assertEqual(single({"p": values}, "p"), values[0] if values else None)

    @given(st.dictionaries(_NAME, st.text(max_size=40), max_size=5))
    def test_form_round_trip(self, fields: dict[str, str]) -> None:
        """A urlencoded form body parses back to its fields."""
        body = urlencode(fields).encode()
        headers = {b"content-type": b"application/x-www-form-urlencoded"}
        parsed = form_params(request(headers, body))
        self.assertEqual({k: v[0] for k, v in parsed.items()}, fields)

    def test_form_needs_its_media_type(self) -> None:
        """A JSON body at a form endpoint is invalid_request."""
        with self.assertRaises(InvalidRequest):
            form_params(request({b"content-type": b"application/json"}, b"{}"))
