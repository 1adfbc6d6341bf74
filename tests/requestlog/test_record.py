"""Request-log records from finished requests, their indexes and access-log lines (pure)."""

from __future__ import annotations

from attrs import evolve
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv6Address
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request

from oauthproxy.requestlog.record import (
    MAX_PATH,
    RequestRecord,
    access_line,
    correlation_id,
    index_entries,
    notes_for,
    record_from_json,
    record_json,
    utc_day,
)
from tests.requestlog.samples import T0, logged_record, sample


class RecordFromRequestTests(SynchronousTestCase):
    """record_from_request: what a finished request becomes."""

    def test_fields_come_from_the_request_and_its_connection(self) -> None:
        """Method, host (lower-cased, no port), path, status, sizes and the peer IP."""
        record = logged_record(
            b"/items/7",
            b"POST",
            headers={b"host": b"API.Example.com:8443", b"content-length": b"0"},
            code=201,
            body=b"created!",
        )
        self.assertEqual(
            (record.method, record.host, record.path, record.status),
            ("POST", "api.example.com", "/items/7", 201),
        )
        self.assertEqual(
            (record.client_ip, record.bytes_out, record.scheme), ("192.168.1.1", 8, "http")
        )
        self.assertEqual(record.time, T0)

    def test_query_string_is_not_kept(self) -> None:
        """A token in the query string never reaches the record (ATK: secrets in logs)."""
        record = logged_record(b"/cb?code=SECRET-CODE&access_token=SECRET-TOKEN")
        self.assertEqual(record.path, "/cb")
        self.assertNotIn("SECRET", repr(record))

    def test_headers_are_not_copied(self) -> None:
        """Authorization and Cookie values appear neither in the record nor in its line."""
        record = logged_record(
            headers={
                b"host": b"api.example.com",
                b"authorization": b"Bearer SECRET-BEARER",
                b"cookie": b"session=SECRET-COOKIE",
                b"x-forwarded-for": b"203.0.113.99",
            }
        )
        self.assertNotIn("SECRET", repr(record) + access_line(record))
        self.assertEqual(record.client_ip, "192.168.1.1", "X-Forwarded-For must not be believed")

    def test_correlation_id_has_epoch_scheme_and_random_part(self) -> None:
        """Without a preset id: ``<start epoch>-<scheme>-<random>``."""
        record = logged_record(
            secure=True, before=lambda r: setattr(notes_for(r), "started", T0 - 2)
        )
        self.assertEqual(record.correlation_id, f"{int(T0) - 2}-https-a7b3c9d2")
        self.assertEqual(record.scheme, "https")

    def test_notes_fill_the_later_fields(self) -> None:
        """Start time, user, client, upstream, error and a preset id come from the notes."""

        def annotate(request: Request) -> None:
            notes = notes_for(request)
            notes.started = T0 - 0.25
            notes.correlation_id = "1735689599-http-00000001"
            notes.user = "octocat"
            notes.client_id = "mcp-client"
            notes.upstream = "http://127.0.0.1:3000"
            notes.error = "upstream timed out"
            notes.bytes_in = 42

        record = logged_record(code=504, before=annotate)
        self.assertEqual(record.duration, 0.25)
        self.assertEqual(
            (record.correlation_id, record.user, record.client_id),
            ("1735689599-http-00000001", "octocat", "mcp-client"),
        )
        self.assertEqual(
            (record.upstream, record.error), ("http://127.0.0.1:3000", "upstream timed out")
        )
        self.assertEqual(record.bytes_in, 42)

    def test_unknown_start_means_no_duration(self) -> None:
        """Without a start time the duration is None, not a made-up zero."""
        self.assertIsNone(logged_record().duration)

    def test_ipv6_peer(self) -> None:
        """An IPv6 peer is kept as its address text."""
        peer = IPv6Address("TCP", "2001:db8::5", 4444)
        self.assertEqual(logged_record(peer=peer).client_ip, "2001:db8::5")

    def test_long_path_is_cut(self) -> None:
        """Paths are bounded to MAX_PATH characters."""
        record = logged_record(b"/" + b"a" * (MAX_PATH * 2))
        self.assertEqual(len(record.path), MAX_PATH)


class IndexTests(SynchronousTestCase):
    """index_entries: which lookups find a record."""

    def test_plain_record_is_in_all_ip_host_and_status(self) -> None:
        """A 200 without user or client is in the four base indexes only."""
        self.assertEqual(
            index_entries(sample()),
            [("all", ""), ("ip", "192.0.2.10"), ("host", "api.example.com"), ("status", "2xx")],
        )

    def test_user_client_and_errors(self) -> None:
        """A 502 for an authenticated client is also in user, client and errors."""
        entries = index_entries(sample(status=502, user="octocat", client_id="c1"))
        for entry in (("status", "5xx"), ("user", "octocat"), ("client", "c1"), ("errors", "")):
            self.assertIn(entry, entries)

    def test_gateway_error_counts_as_error_whatever_the_status(self) -> None:
        """A record with an error text is an error even with a 4xx status."""
        self.assertTrue(sample(status=499, error="client went away").is_error)
        self.assertFalse(sample(status=404).is_error)


class JsonTests(SynchronousTestCase):
    """record_json / record_from_json."""

    @given(
        status=st.integers(min_value=100, max_value=599),
        user=st.none() | st.text(max_size=20),
        duration=st.none() | st.floats(min_value=0, max_value=1e4),
    )
    def test_round_trip(self, status: int, user: str | None, duration: float | None) -> None:
        """Every record survives the JSON representation unchanged."""
        record = sample(status=status, user=user, duration=duration)
        self.assertEqual(record_from_json(record_json(record)), record)

    def test_not_a_record_is_refused(self) -> None:
        """A JSON value that is not a record raises ValueError."""
        with self.assertRaises(ValueError):
            record_from_json({"time": 1})
        with self.assertRaises(ValueError):
            record_from_json([1, 2])


class AccessLineTests(SynchronousTestCase):
    """access_line: the one access-log format."""

    def test_line_has_the_essentials(self) -> None:
        """IP, host, UTC time, request, status, size, duration and correlation id."""
        line = access_line(sample(user="octocat"))
        self.assertEqual(
            line,
            '192.0.2.10 api.example.com [2025-01-01T00:00:00.000Z] "GET /items" 200 512 10.0ms '
            "cid=1735689600-https-00000000 user=octocat",
        )

    def test_control_characters_cannot_forge_lines(self) -> None:
        """Newlines and quotes in fields are escaped: one record, one line."""
        line = access_line(sample(path='/a\n1.2.3.4 - "GET /admin"', error="bad\r\nthing"))
        self.assertEqual(len(line.splitlines()), 1)
        self.assertIn('\\"GET /admin\\"', line)
        self.assertIn("error=bad\\r\\nthing", line)

    def test_values_with_spaces_are_quoted(self) -> None:
        """``error="upstream timed out"`` stays one field."""
        self.assertIn('error="upstream timed out"', access_line(sample(error="upstream timed out")))

    def test_unknown_duration_is_a_dash(self) -> None:
        """No duration prints ``-``."""
        self.assertIn(" 512 - cid=", access_line(sample(duration=None)))


class SmallPartsTests(SynchronousTestCase):
    """correlation_id, utc_day, status_class."""

    def test_correlation_id_format(self) -> None:
        """The seed's format, e.g. ``1735689600-https-a7b3c9d2``."""
        self.assertEqual(correlation_id(T0 + 0.9, "https", "a7b3c9d2"), "1735689600-https-a7b3c9d2")

    def test_utc_day(self) -> None:
        """Days are UTC dates."""
        self.assertEqual((utc_day(T0), utc_day(T0 - 1)), ("2025-01-01", "2024-12-31"))

    def test_status_class_out_of_range_is_5xx(self) -> None:
        """A nonsense status is classed as a server error."""
        record: RequestRecord = evolve(sample(), status=999)
        self.assertEqual((sample(status=302).status_class, record.status_class), ("3xx", "5xx"))
