"""Tests for :mod:`oauthproxy.logs`: text and JSON lines, level filter, stdlib bridge."""

from __future__ import annotations

import io
import json
import logging

from twisted.logger import Logger, LogLevel, LogPublisher
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.logs import bridge_stdlib_logging, make_observer, redact


def emit_to(observer: object, level: LogLevel, text: str, **fields: object) -> None:
    """Log one event through a publisher feeding ``observer``."""
    publisher = LogPublisher(observer)  # type: ignore[arg-type]
    Logger(namespace="test", observer=publisher).emit(level, text, **fields)


class JsonLinesTests(SynchronousTestCase):
    """``--log-format json``."""

    def test_each_event_is_one_json_object_per_line(self) -> None:
        """Events are JSON objects separated by newlines only (no RS character)."""
        out = io.StringIO()
        observer = make_observer(out, "json", "info")
        emit_to(observer, LogLevel.info, "first {n}", n=1)
        emit_to(observer, LogLevel.warn, "second")
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 2)
        self.assertNotIn("\x1e", out.getvalue())
        self.assertEqual(json.loads(lines[0])["n"], 1)

    def test_log_level_is_a_plain_string(self) -> None:
        """``log_level`` is flattened to its name for log shippers."""
        out = io.StringIO()
        emit_to(make_observer(out, "json", "info"), LogLevel.warn, "careful")
        self.assertEqual(json.loads(out.getvalue())["log_level"], "warn")

    def test_structured_fields_survive(self) -> None:
        """Keyword fields are kept as JSON fields."""
        out = io.StringIO()
        emit_to(make_observer(out, "json", "info"), LogLevel.info, "x", proxy="a.example")
        self.assertEqual(json.loads(out.getvalue())["proxy"], "a.example")


class TextTests(SynchronousTestCase):
    """The default text format."""

    def test_text_line_contains_namespace_and_message(self) -> None:
        """A text line has the namespace in brackets and the formatted message."""
        out = io.StringIO()
        emit_to(make_observer(out, "text", "info"), LogLevel.info, "hello {who}", who="world")
        self.assertIn("[test#info] hello world", out.getvalue())


class LevelFilterTests(SynchronousTestCase):
    """LOG_LEVEL."""

    def test_events_below_level_are_dropped(self) -> None:
        """With level warn, info and debug events are not written."""
        out = io.StringIO()
        observer = make_observer(out, "text", "warn")
        emit_to(observer, LogLevel.info, "quiet")
        emit_to(observer, LogLevel.debug, "quieter")
        emit_to(observer, LogLevel.error, "loud")
        self.assertNotIn("quiet", out.getvalue())
        self.assertIn("loud", out.getvalue())


class SecretTests(SynchronousTestCase):
    """Secrets never reach the output."""

    def test_secret_fields_are_redacted_in_json(self) -> None:
        """Fields named like secrets are written as ***."""
        out = io.StringIO()
        emit_to(
            make_observer(out, "json", "info"),
            LogLevel.info,
            "connecting",
            redis_password="hunter2",
            client_secret="s3cr3t",
        )
        self.assertNotIn("hunter2", out.getvalue())
        self.assertNotIn("s3cr3t", out.getvalue())

    def test_secret_fields_are_redacted_in_text(self) -> None:
        """A secret interpolated into the message text is redacted too."""
        out = io.StringIO()
        emit_to(make_observer(out, "text", "info"), LogLevel.info, "pw={password}", password="p")
        self.assertIn("pw=***", out.getvalue())

    def test_redact_keeps_other_fields(self) -> None:
        """Ordinary fields are left alone."""
        self.assertEqual(redact({"host": "a", "log_format": "x"}), {"host": "a", "log_format": "x"})


class StdlibBridgeTests(SynchronousTestCase):
    """Libraries logging through the stdlib end up in twisted.logger."""

    def test_stdlib_records_are_reemitted(self) -> None:
        """A stdlib warning arrives as a twisted.logger warn event with its logger name."""
        events: list[dict[str, object]] = []
        root = logging.Logger("root-for-test")
        bridge_stdlib_logging("info", root=root)
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        child = logging.Logger("acme.client")
        child.parent = root
        child.warning("rate limited for %d s", 5)
        [event] = [e for e in events if e.get("log_namespace") == "acme.client"]
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertEqual(event["text"], "rate limited for 5 s")

    def test_bridge_is_installed_once(self) -> None:
        """Calling the bridge twice leaves one handler."""
        root = logging.Logger("root-for-test-2")
        bridge_stdlib_logging("info", root=root)
        bridge_stdlib_logging("debug", root=root)
        self.assertEqual(len(root.handlers), 1)
        self.assertEqual(root.level, logging.DEBUG)
