"""Tests for :mod:`oauthproxy.storage.keys` and the pure rules of :mod:`.events`."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.errors import ConfigError
from oauthproxy.model import Certificate, Proxy
from oauthproxy.storage.events import event_type, parse_entries, parse_stream_id
from oauthproxy.storage.keys import Keys


class KeysTests(SynchronousTestCase):
    """The key scheme."""

    def test_default_names(self) -> None:
        """Every key lives under ``op:``."""
        keys = Keys()
        self.assertEqual(
            [
                keys.records("proxy"),
                keys.token_hashes,
                keys.token_used,
                keys.events,
                keys.challenge("t"),
                keys.lock("acme"),
                keys.fence("acme"),
                keys.acme_accounts,
            ],
            [
                "op:records:proxy",
                "op:token_hashes",
                "op:token_used",
                "op:events",
                "op:challenge:t",
                "op:lock:acme",
                "op:fence:acme",
                "op:acme_accounts",
            ],
        )

    def test_prefix_isolates(self) -> None:
        """Another prefix gives other names."""
        self.assertEqual(Keys("test1:").events, "test1:events")

    def test_bad_prefix_refused(self) -> None:
        """A prefix must end with ':' and contain no whitespace."""
        for prefix in ("", "op", "o p:"):
            with self.assertRaises(ConfigError, msg=prefix):
                Keys(prefix)

    def test_unknown_kind_refused(self) -> None:
        """Only the five record kinds have record hashes."""
        with self.assertRaises(ValueError):
            Keys().records("widget")


class EventRuleTests(SynchronousTestCase):
    """Event naming and stream parsing."""

    def test_plain_kinds(self) -> None:
        """Writes are ``<kind>_created``, ``_updated``, ``_deleted``."""
        p = Proxy("h", "u")
        self.assertEqual(
            [
                event_type("proxy", "create", None, p),
                event_type("proxy", "update", p, p),
                event_type("proxy", "delete", p, None),
            ],
            ["proxy_created", "proxy_updated", "proxy_deleted"],
        )

    def test_certificate_ready(self) -> None:
        """An update to ready with a new chain is certificate_ready; else certificate_updated."""
        pending = Certificate("c", ("a",))
        ready = Certificate("c", ("a",), status="ready", fullchain_pem="X")
        renewed = Certificate("c", ("a",), status="ready", fullchain_pem="Y")
        self.assertEqual(
            [
                event_type("certificate", "update", pending, ready),
                event_type("certificate", "update", ready, ready),
                event_type("certificate", "update", ready, renewed),
                event_type("certificate", "create", None, ready),
            ],
            [
                "certificate_ready",
                "certificate_updated",
                "certificate_ready",
                "certificate_created",
            ],
        )

    def test_stream_ids_order_numerically(self) -> None:
        """Stream ids compare as (milliseconds, sequence) pairs."""
        self.assertLess(parse_stream_id("999-5"), parse_stream_id("1000-0"))
        self.assertEqual(parse_stream_id("0-0"), (0, 0))

    def test_parse_entries(self) -> None:
        """XREAD entries become Events; deletions have no record."""
        entries = [
            ["1-0", ["type", "proxy_created", "kind", "proxy", "key", "h", "record", "{}"]],
            ["2-0", ["type", "proxy_deleted", "kind", "proxy", "key", "h"]],
        ]
        events = parse_entries(entries)
        self.assertEqual(
            [(e.event_id, e.type, e.record) for e in events],
            [("1-0", "proxy_created", "{}"), ("2-0", "proxy_deleted", None)],
        )
