"""Tests for the CLI output rendering and the one-line API error messages."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.cli.client import error_message
from oauthproxy.cli.output import render_json, render_record, render_table


class TableTests(SynchronousTestCase):
    """Aligned tables for people."""

    def test_columns_are_aligned(self) -> None:
        """Every cell of a column starts at the same offset."""
        text = render_table(
            [{"name": "a", "target": "http://x"}, {"name": "longer-name", "target": "y"}],
            ["name", "target"],
        )
        lines = text.splitlines()
        self.assertEqual(lines[0].split()[0], "NAME")
        offsets = {
            line.index(word) for line, word in zip(lines, ["TARGET", "http://x", "y"], strict=True)
        }
        self.assertEqual(len(offsets), 1)

    def test_empty_table_says_none(self) -> None:
        """No rows print ``(none)``."""
        self.assertEqual(render_table([], ["name"]), "(none)")

    def test_cells_render_lists_booleans_and_missing(self) -> None:
        """Lists are comma-joined, booleans yes/no, missing values ``-``."""
        text = render_table([{"a": ["x", "y"], "b": True}], ["a", "b", "c"])
        self.assertEqual(text.splitlines()[1].split(), ["x,", "y", "yes", "-"])

    @given(st.lists(st.dictionaries(st.sampled_from("abc"), st.text(max_size=8)), max_size=5))
    def test_one_line_per_row_plus_header(self, rows: list[dict[str, str]]) -> None:
        """A table has a header line and one line per row (cells without newlines)."""
        clean = [{k: v.replace("\n", " ").replace("\r", " ") for k, v in r.items()} for r in rows]
        text = render_table(clean, ["a", "b", "c"])
        expected = len(clean) + 1 if clean else 1
        self.assertEqual(len(text.split("\n")), expected)


class RecordTests(SynchronousTestCase):
    """Key/value output for one object."""

    def test_nested_keys_are_dotted_and_aligned(self) -> None:
        """Nested mappings flatten to dotted keys; values start in one column."""
        text = render_record({"status": "ok", "listeners": {"api": "tcp:9000"}})
        self.assertEqual(text.splitlines(), ["status         ok", "listeners.api  tcp:9000"])


class JsonTests(SynchronousTestCase):
    """``--json``."""

    def test_json_round_trips(self) -> None:
        """The JSON output parses back to the data."""
        data = {"b": [1, 2], "a": {"x": None}}
        self.assertEqual(json.loads(render_json(data)), data)


class ErrorMessageTests(SynchronousTestCase):
    """API JSON errors become one readable line."""

    def test_input_error_is_the_api_words_naming_the_field(self) -> None:
        """An input error shows the API's words, naming the field if they do not."""
        error = error_message(
            422,
            json.dumps(
                {"error": "invalid_input", "detail": "not a URL", "field": "/target_url"}
            ).encode(),
        )
        self.assertEqual(str(error), "not a URL (target_url) [HTTP 422]")
        self.assertEqual((error.status, error.field), (422, "/target_url"))

    def test_input_error_naming_its_field_is_shown_as_is(self) -> None:
        """``hostname must be ...`` is not followed by ``(hostname)`` again."""
        body = {
            "error": "invalid_input",
            "detail": "hostname must be a DNS name",
            "field": "/hostname",
        }
        error = error_message(422, json.dumps(body).encode())
        self.assertEqual(str(error), "hostname must be a DNS name [HTTP 422]")

    def test_other_errors_keep_their_code(self) -> None:
        """``not_found: no proxy 'x' [HTTP 404]``."""
        body = {"error": "not_found", "detail": "no proxy 'x'", "field": "hostname"}
        self.assertEqual(
            str(error_message(404, json.dumps(body).encode())), "not_found: no proxy 'x' [HTTP 404]"
        )

    def test_non_json_error_shows_status_and_first_line(self) -> None:
        """A plain-text error shows its status and first line."""
        self.assertEqual(str(error_message(502, b"Bad Gateway\nmore")), "HTTP 502: Bad Gateway")

    @given(st.binary(max_size=200), st.integers(min_value=400, max_value=599))
    def test_any_body_gives_a_one_line_message(self, body: bytes, status: int) -> None:
        """Whatever the body, the message is one line mentioning the status."""
        message = str(error_message(status, body))
        self.assertNotIn("\n", message.strip())
        self.assertIn(str(status), message)
