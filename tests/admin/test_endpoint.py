"""Tests for the endpoint framework: body and query handling, error mapping, routing.

A small ``WidgetResource`` declared here exercises what every resource gets from
:func:`oauthproxy.admin.endpoint.endpoint`.
"""

from __future__ import annotations

from typing import ClassVar, cast

from attrs import define
from klein import Klein
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.admin.endpoint import ApiContext, Call, Reply, endpoint
from oauthproxy.admin.schema import array, boolean, integer, obj, string
from oauthproxy.errors import StorageUnavailable
from tests.admin.harness import Answer, Harness

SECRET = "acm_must_never_leak"

WIDGET = obj(
    {
        "name": string(max_length=20),
        "size": integer(minimum=1, maximum=10),
        "parts": array(obj({"label": string(max_length=10)}, required=("label",)), max_items=3),
    },
    required=("name",),
)


@define
class WidgetResource:
    """A resource with one endpoint per framework feature under test."""

    app: ClassVar[Klein] = Klein()
    api: ApiContext

    @endpoint(
        app,
        "POST",
        "/widgets/",
        summary="Echo a widget",
        tags=("widgets",),
        body=WIDGET,
        returns={201: WIDGET},
    )
    async def create(self, call: Call) -> object:
        """Echo the validated body."""
        return Reply(201, call.body)

    @endpoint(
        app,
        "GET",
        "/widgets/",
        summary="Echo the query",
        tags=("widgets",),
        query={
            "count": integer(minimum=0, maximum=5, default=2),
            "flag": boolean(),
            "tag": array(string(max_length=5), max_items=3),
        },
        returns={200: {"type": "object"}},
    )
    async def search(self, call: Call) -> object:
        """Echo the converted query parameters."""
        return dict(call.query)

    @endpoint(
        app,
        "GET",
        "/widgets/crash",
        summary="Fail unexpectedly",
        tags=("widgets",),
        auth="none",
        returns={200: None},
    )
    async def crash(self, call: Call) -> object:
        """Raise an exception that is not an oauthproxy error."""
        raise RuntimeError(f"boom with {SECRET}")

    @endpoint(
        app,
        "GET",
        "/widgets/down",
        summary="Storage is down",
        tags=("widgets",),
        auth="none",
        returns={200: None},
    )
    async def down(self, call: Call) -> object:
        """Raise the storage's unavailability error."""
        raise StorageUnavailable("redis did not answer in time")

    @endpoint(
        app,
        "GET",
        "/widgets/wrong",
        summary="Answer off-schema",
        tags=("widgets",),
        auth="none",
        returns={200: obj({"ok": boolean()}, required=("ok",))},
    )
    async def wrong(self, call: Call) -> object:
        """Return a body its declaration does not allow."""
        return {"ok": "yes"}


class BodyTests(SynchronousTestCase):
    """Request bodies: media type, size, JSON syntax, schema."""

    def setUp(self) -> None:
        self.h = Harness(self, max_body=1024, extra=lambda context: [WidgetResource(context)])

    def post(self, data: bytes, content_type: str = "application/json") -> Answer:
        """POST raw bytes to /widgets/ as the admin."""
        return self.h.call(
            "POST",
            "/widgets/",
            token=self.h.admin_token,
            data=data,
            headers={"Content-Type": content_type},
        )

    def test_valid_body_reaches_handler(self) -> None:
        """A valid body arrives parsed and validated; the declared status is sent."""
        answer = self.post(b'{"name": "w", "parts": [{"label": "a"}]}')
        self.assertEqual(
            (answer.status, answer.json()), (201, {"name": "w", "parts": [{"label": "a"}]})
        )

    def test_content_type_with_charset_is_json(self) -> None:
        """``application/json; charset=utf-8`` is accepted."""
        answer = self.post(b'{"name": "w"}', "application/json; charset=utf-8")
        self.assertEqual(answer.status, 201)

    def test_form_encoded_non_json_is_415(self) -> None:
        """A real form-encoded body is refused with 415 saying to send JSON."""
        answer = self.post(b"name=w", "application/x-www-form-urlencoded")
        error = self.h.assert_error(answer, 415, "unsupported_media_type")
        self.assertIn("application/json", error["detail"])

    def test_json_sent_as_curl_form_type_is_accepted(self) -> None:
        """``curl -d '{...}'`` labels JSON as a form: it is taken as the JSON it is."""
        answer = self.post(b'{"name": "w"}', "application/x-www-form-urlencoded")
        self.assertEqual((answer.status, answer.json()), (201, {"name": "w"}))

    def test_missing_content_type_with_json_is_accepted(self) -> None:
        """A body without a content type that parses as JSON is accepted."""
        answer = self.h.call("POST", "/widgets/", token=self.h.admin_token, data=b'{"name": "w"}')
        self.assertEqual((answer.status, answer.json()), (201, {"name": "w"}))

    def test_missing_content_type_with_bad_json_is_400(self) -> None:
        """Without a content type, bytes that are not JSON are a malformed request."""
        answer = self.h.call("POST", "/widgets/", token=self.h.admin_token, data=b"{nope")
        self.h.assert_error(answer, 400, "malformed_request")

    def test_other_media_type_is_415(self) -> None:
        """A body in another media type (XML) is refused with 415, even if it looks like JSON."""
        answer = self.post(b'{"name": "w"}', "application/xml")
        self.h.assert_error(answer, 415, "unsupported_media_type")

    def test_json_suffix_media_type_is_json(self) -> None:
        """``application/merge-patch+json`` and the like are JSON."""
        answer = self.post(b'{"name": "w"}', "application/merge-patch+json")
        self.assertEqual(answer.status, 201)

    def test_oversized_body_is_413(self) -> None:
        """A body over the limit is refused with 413 before it is parsed."""
        self.h.assert_error(
            self.post(b'{"name": "' + b"x" * 2000 + b'"}'), 413, "payload_too_large"
        )

    def test_invalid_json_is_400(self) -> None:
        """Bytes that are not JSON are 400."""
        self.h.assert_error(self.post(b'{"name": '), 400, "malformed_request")

    def test_nan_is_not_json(self) -> None:
        """``NaN`` is refused as malformed JSON."""
        self.h.assert_error(self.post(b'{"name": "w", "size": NaN}'), 400, "malformed_request")

    def test_empty_body_is_400(self) -> None:
        """A required body that is empty is 400."""
        self.h.assert_error(self.post(b""), 400, "malformed_request")

    def test_nested_error_names_json_pointer(self) -> None:
        """A bad field deep in the body is named by its JSON pointer."""
        answer = self.post(b'{"name": "w", "parts": [{"label": "a"}, {"label": 7}]}')
        self.h.assert_error(answer, 422, "invalid_input", "/parts/1/label")

    def test_nested_unknown_field_is_named(self) -> None:
        """An unknown field inside a nested object is named."""
        answer = self.post(b'{"name": "w", "parts": [{"label": "a", "evil": 1}]}')
        self.h.assert_error(answer, 422, "invalid_input", "/parts/0/evil")

    def test_body_not_an_object_is_422(self) -> None:
        """A JSON array where an object is declared is 422 at the root."""
        self.h.assert_error(self.post(b"[1, 2]"), 422, "invalid_input", "")

    def test_too_many_items_is_422(self) -> None:
        """Arrays are bounded by their declared maxItems."""
        parts = b", ".join([b'{"label": "a"}'] * 4)
        self.h.assert_error(
            self.post(b'{"name": "w", "parts": [' + parts + b"]}"), 422, "invalid_input", "/parts"
        )

    def test_unauthenticated_body_is_not_validated(self) -> None:
        """Authentication comes first: a bad body without a token gets 401, not 422."""
        answer = self.h.call(
            "POST", "/widgets/", data=b"{", headers={"Content-Type": "application/json"}
        )
        self.h.assert_error(answer, 401, "unauthorized")


class QueryTests(SynchronousTestCase):
    """Query parameters: conversion, defaults, unknown names."""

    def setUp(self) -> None:
        self.h = Harness(self, extra=lambda context: [WidgetResource(context)])

    def get(self, query: str) -> Answer:
        """GET /widgets/ with ``query`` as the admin."""
        return self.h.call("GET", "/widgets/" + query, token=self.h.admin_token)

    def test_defaults_are_filled_in(self) -> None:
        """Absent parameters with a default arrive with it; others are absent."""
        self.assertEqual(self.get("").json(), {"count": 2})

    def test_values_are_converted(self) -> None:
        """Integers, booleans and repeated array parameters arrive typed."""
        answer = self.get("?count=3&flag=true&tag=a&tag=b")
        self.assertEqual(answer.json(), {"count": 3, "flag": True, "tag": ["a", "b"]})

    def test_non_integer_is_named(self) -> None:
        """``count=abc`` is 422 with field ``count``."""
        self.h.assert_error(self.get("?count=abc"), 422, "invalid_input", "count")

    def test_unknown_parameter_is_named(self) -> None:
        """An undeclared parameter (e.g. a token in the query) is refused, naming it."""
        self.h.assert_error(self.get("?access_token=acm_x"), 422, "invalid_input", "access_token")

    def test_repeated_scalar_is_refused(self) -> None:
        """A scalar parameter given twice is 422."""
        self.h.assert_error(self.get("?count=1&count=2"), 422, "invalid_input", "count")

    def test_array_item_error_is_named(self) -> None:
        """A bad item of an array parameter is named with its index."""
        self.h.assert_error(self.get("?tag=toolong"), 422, "invalid_input", "tag/0")

    def test_bad_percent_encoding_is_400(self) -> None:
        """A query that is not UTF-8 once decoded is 400."""
        self.h.assert_error(self.get("?tag=%ff"), 400, "malformed_request")


class ErrorMappingTests(SynchronousTestCase):
    """One mapping for routing errors, oauthproxy errors and unexpected exceptions."""

    def setUp(self) -> None:
        self.h = Harness(self, extra=lambda context: [WidgetResource(context)])
        self.events: list[LogEvent] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def test_unknown_path_is_json_404(self) -> None:
        """A path no resource routes is a JSON 404."""
        self.h.assert_error(self.h.call("GET", "/nothing/here"), 404, "not_found")

    def test_merged_slashes_are_not_routed(self) -> None:
        """``//tokens/`` is not ``/tokens/`` (no path normalization split view)."""
        self.h.assert_error(
            self.h.call("GET", "//tokens/", token=self.h.admin_token), 404, "not_found"
        )

    def test_encoded_slash_is_not_a_separator(self) -> None:
        """``/tokens/admin%2Frotate`` does not reach the rotate endpoint (ATK-10)."""
        answer = self.h.call("POST", "/tokens/admin%2Frotate", token=self.h.admin_token)
        self.h.assert_error(answer, 404, "not_found")

    def test_wrong_method_is_json_405_with_allow(self) -> None:
        """A known path with another method is a JSON 405 listing the allowed ones."""
        answer = self.h.call("PUT", "/health")
        self.h.assert_error(answer, 405, "method_not_allowed")
        self.assertIn(b"GET", answer.header(b"allow") or b"")

    def test_path_without_trailing_slash_is_routed(self) -> None:
        """``/tokens`` reaches ``/tokens/`` directly, without a redirect."""
        self.assertEqual(self.h.call("GET", "/tokens", token=self.h.admin_token).status, 200)

    def test_unexpected_exception_is_opaque_500(self) -> None:
        """An unexpected exception is a 500 whose body reveals nothing of it."""
        answer = self.h.call("GET", "/widgets/crash")
        self.h.assert_error(answer, 500, "internal_error")
        self.assertNotIn(SECRET.encode(), answer.body)
        self.assertNotIn(b"boom", answer.body)
        self.flushLoggedErrors(RuntimeError)

    def test_unexpected_exception_is_logged_with_traceback(self) -> None:
        """The 500's cause is logged with its failure for the operator."""
        self.h.call("GET", "/widgets/crash")
        failures = [e["log_failure"] for e in self.events if "log_failure" in e]
        self.assertEqual(len(failures), 1)
        self.assertIsInstance(failures[0].value, RuntimeError)
        self.flushLoggedErrors(RuntimeError)

    def test_storage_unavailable_is_503(self) -> None:
        """``StorageUnavailable`` maps to 503 with its detail."""
        self.h.assert_error(self.h.call("GET", "/widgets/down"), 503, "storage_unavailable")

    def test_off_schema_response_fails_when_checked(self) -> None:
        """With response checking on, a handler answering off its schema is a 500."""
        self.h.assert_error(self.h.call("GET", "/widgets/wrong"), 500, "internal_error")

    def test_error_responses_are_not_cacheable(self) -> None:
        """Every JSON answer carries ``Cache-Control: no-store``."""
        self.assertEqual(self.h.call("GET", "/nothing").header(b"cache-control"), b"no-store")


class DeclarationTests(SynchronousTestCase):
    """Mistakes in a declaration fail when the class is defined."""

    def declare(self, path: str = "/x", **options: object) -> None:
        """Declare one endpoint on a fresh Klein app."""
        app = Klein()
        options.setdefault("returns", {200: None})
        endpoint(app, "GET", path, summary="x", **options)  # type: ignore[arg-type]

    def test_open_object_body_is_refused(self) -> None:
        """A body object without ``additionalProperties`` is refused."""
        self.assertRaises(ValueError, self.declare, body={"type": "object", "properties": {}})

    def test_unbounded_string_is_refused(self) -> None:
        """A string without ``maxLength`` is refused."""
        body = obj({"a": {"type": "string"}})
        self.assertRaises(ValueError, self.declare, body=body)

    def test_unbounded_array_is_refused(self) -> None:
        """An array without ``maxItems`` is refused."""
        body = obj({"a": {"type": "array", "items": {"type": "integer"}}})
        self.assertRaises(ValueError, self.declare, body=body)

    def test_undeclared_path_parameter_is_refused(self) -> None:
        """A ``{name}`` in the path needs a declared parameter."""
        self.assertRaises(ValueError, self.declare, path="/x/{name}")

    def test_object_query_parameter_is_refused(self) -> None:
        """Query parameters must be scalars or arrays of scalars."""
        self.assertRaises(ValueError, self.declare, query={"q": obj({})})


class SiteLimitTests(SynchronousTestCase):
    """``AdminAPI.site()``: bodies over the limit are not kept (ATK-18), the answer is 413."""

    def setUp(self) -> None:
        self.h = Harness(self, max_body=1024)

    def exchange(self, head: bytes, body: bytes) -> bytes:
        """Feed one raw HTTP/1.1 request to the API's Site in memory; the raw answer."""
        site = self.h.api.site()
        protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9000))
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(head + body)
        answer: bytes = transport.value()
        protocol.connectionLost(Failure(ConnectionDone()))
        return answer

    def head(self, extra: bytes) -> bytes:
        """The head of an admin POST /tokens/ request with ``extra`` header lines."""
        return (
            b"POST /tokens/ HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {self.h.admin_token}\r\n".encode()
            + extra
            + b"\r\n"
        )

    def test_declared_length_over_limit_is_413(self) -> None:
        """A Content-Length over the limit is answered 413 and nothing is created."""
        body = b'{"name": "big", "owner_email": "' + b"x" * 2000 + b'@example.com"}'
        answer = self.exchange(self.head(b"Content-Length: %d\r\n" % len(body)), body)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:80])
        self.assertFalse(self.h.exists("big"))

    def test_chunked_body_over_limit_is_413(self) -> None:
        """A chunked body growing past the limit is dropped and answered 413."""
        chunk = b"x" * 600
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3)) + b"0\r\n\r\n"
        answer = self.exchange(self.head(b"Transfer-Encoding: chunked\r\n"), body)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:80])

    def test_body_within_limit_is_served(self) -> None:
        """A small body goes through the same Site normally."""
        body = b'{"name": "small", "owner_email": "s@example.com"}'
        answer = self.exchange(self.head(b"Content-Length: %d\r\n" % len(body)), body)
        self.assertTrue(answer.startswith(b"HTTP/1.1 201 "), answer[:80])
