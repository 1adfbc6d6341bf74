"""Schema violations in words: what the API, the CLI and the console show for bad input."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.admin.messages import field_name, pointer_name
from oauthproxy.admin.schema import (
    Schema,
    array,
    integer,
    nullable,
    obj,
    string,
    validate,
    validator,
)
from oauthproxy.admin.validation import HOSTNAME
from oauthproxy.errors import InvalidInput
from tests.admin.harness import Harness


def refusal(schema: Schema, value: Any, prefix: str = "") -> InvalidInput:
    """The InvalidInput ``value`` gets from ``schema``."""
    try:
        validate(validator(schema), value, prefix=prefix)
    except InvalidInput as error:
        return error
    raise AssertionError(f"{value!r} was accepted")


BODY = obj(
    {
        "hostname": HOSTNAME,
        "mode": string(enum=("all", "none")),
        "port": integer(minimum=1, maximum=65535),
        "tags": array(string(max_length=5), max_items=2, unique=True),
        "note": nullable(string(max_length=3)),
        "email": string(max_length=100, format="email"),
    },
    required=("hostname",),
)


class WordsTests(SynchronousTestCase):
    """Each kind of violation reads as a sentence naming the field."""

    def test_pattern_uses_the_schema_words_not_the_regex(self) -> None:
        """A hostname that is not one says what a hostname is, never the regex."""
        error = refusal(BODY, {"hostname": "not a host"})
        self.assertEqual(
            error.detail, "hostname must be a DNS name such as app.example.com (not 'not a host')"
        )
        self.assertEqual(error.field, "/hostname")
        self.assertNotIn("^", error.detail)

    def test_missing_field_is_named(self) -> None:
        """A required field that is missing: ``hostname is required``."""
        error = refusal(BODY, {})
        self.assertEqual((error.detail, error.field), ("hostname is required", "/hostname"))

    def test_unknown_field_is_named(self) -> None:
        """An extra field: ``colour is not a known field``."""
        error = refusal(BODY, {"hostname": "a.example", "colour": "red"})
        self.assertEqual((error.detail, error.field), ("colour is not a known field", "/colour"))

    def test_enum_lists_the_choices(self) -> None:
        """A value outside an enum lists the allowed ones."""
        error = refusal(BODY, {"hostname": "a.example", "mode": "some"})
        self.assertEqual(error.detail, "mode must be one of all or none (not 'some')")

    def test_type_in_words(self) -> None:
        """A string where a number belongs: ``port must be a whole number``."""
        error = refusal(BODY, {"hostname": "a.example", "port": "80"})
        self.assertEqual(error.detail, "port must be a whole number")

    def test_bounds_in_words(self) -> None:
        """Minimum and maximum say the number."""
        self.assertEqual(
            refusal(BODY, {"hostname": "a.example", "port": 0}).detail, "port must be at least 1"
        )
        self.assertEqual(
            refusal(BODY, {"hostname": "a.example", "port": 70000}).detail,
            "port must be at most 65535",
        )

    def test_list_items_are_named_by_index(self) -> None:
        """An item of a list is ``tags[1]``."""
        error = refusal(BODY, {"hostname": "a.example", "tags": ["a", "toolong"]})
        self.assertEqual(error.detail, "tags[1] must be at most 5 characters long")
        self.assertEqual(error.field, "/tags/1")

    def test_duplicates_and_sizes_of_lists(self) -> None:
        """uniqueItems and maxItems in words."""
        self.assertEqual(
            refusal(BODY, {"hostname": "a.example", "tags": ["a", "a"]}).detail,
            "tags lists the same item twice",
        )
        self.assertEqual(
            refusal(BODY, {"hostname": "a.example", "tags": ["a", "b", "c"]}).detail,
            "tags may list at most 2 items",
        )

    def test_nullable_reports_the_meant_branch(self) -> None:
        """A nullable string too long says so, not "not valid under any of the schemas"."""
        error = refusal(BODY, {"hostname": "a.example", "note": "long"})
        self.assertEqual(error.detail, "note must be at most 3 characters long")

    def test_format_in_words(self) -> None:
        """A bad e-mail address says what one looks like."""
        error = refusal(BODY, {"hostname": "a.example", "email": "nobody"})
        self.assertIn("email must be an e-mail address such as", error.detail)

    def test_body_of_the_wrong_type(self) -> None:
        """A JSON list where an object is expected: ``the body must be an object``."""
        self.assertEqual(refusal(BODY, [1]).detail, "the body must be an object")

    def test_parameter_is_named_by_its_prefix(self) -> None:
        """Query and path parameters are named by the parameter."""
        error = refusal(integer(minimum=1, maximum=500), 0, prefix="limit")
        self.assertEqual((error.detail, error.field), ("limit must be at least 1", "limit"))

    def test_pattern_without_words_quotes_the_description(self) -> None:
        """A pattern with only a description still explains itself."""
        schema = string(max_length=9, pattern="^[a-z]+$", description="lower-case letters")
        error = refusal(schema, "A1", prefix="name")
        self.assertEqual(
            error.detail,
            "name has characters that are not allowed (expected: lower-case letters) (not 'A1')",
        )

    def test_long_values_are_not_quoted(self) -> None:
        """A long offending value is not echoed back."""
        error = refusal(BODY, {"hostname": "x y" * 20})
        self.assertEqual(error.detail, "hostname must be a DNS name such as app.example.com")

    def test_field_names(self) -> None:
        """Paths and pointers read as people write them."""
        self.assertEqual(field_name(["parts", 1, "label"]), "parts[1].label")
        self.assertEqual(field_name([]), "the body")
        self.assertEqual(
            pointer_name("/custom_request_headers/X-A~1B"), "custom_request_headers.X-A/B"
        )


class ApiWordsTests(SynchronousTestCase):
    """The words reach API clients (and through them the CLI and the console)."""

    def test_bad_hostname_is_refused_in_words(self) -> None:
        """``POST /proxy/targets/`` with a bad hostname: 422 naming it in words."""
        h = Harness(self)
        answer = h.call(
            "POST",
            "/proxy/targets/",
            token=h.admin_token,
            body={"hostname": "bad host", "target_url": "http://127.0.0.1:1"},
        )
        error = h.assert_error(answer, 422, "invalid_input", "/hostname")
        self.assertEqual(
            error["detail"], "hostname must be a DNS name such as app.example.com (not 'bad host')"
        )

    def test_bad_route_hostname_in_a_list_is_named(self) -> None:
        """A hostname checked in code (not by the schema) is worded the same way."""
        h = Harness(self)
        answer = h.call(
            "POST",
            "/routes/",
            token=h.admin_token,
            body={
                "path_pattern": "/a/",
                "target_type": "proxy",
                "target_value": "-bad-",
            },
        )
        error = h.assert_error(answer, 422, "invalid_input", "/target_value")
        self.assertIn("target_value must be a DNS name such as app.example.com", error["detail"])
