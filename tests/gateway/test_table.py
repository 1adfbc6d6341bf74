"""Tests for the live routing table (snapshot swap)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.gateway.routing import Forward, NotFound
from oauthproxy.gateway.table import LiveTable
from oauthproxy.model import Proxy, Snapshot
from tests.support.backends import SnapshotFeed

WEB = Proxy(hostname="web.example", target_url="http://10.0.0.1")


class LiveTableTests(SynchronousTestCase):
    """The table follows its snapshot source."""

    def test_attach_builds_from_the_current_snapshot(self) -> None:
        """Subscribing applies the source's current snapshot at once."""
        table = LiveTable()
        table.attach(SnapshotFeed(Snapshot(proxies={"web.example": WEB})))
        outcome = table.current.decide(b"web.example", b"/", "GET", "https")
        self.assertIsInstance(outcome, Forward)

    def test_each_change_swaps_the_table(self) -> None:
        """A published snapshot replaces the table object whole."""
        feed = SnapshotFeed()
        table = LiveTable()
        table.attach(feed)
        before = table.current
        feed.publish(Snapshot(proxies={"web.example": WEB}))
        self.assertIsNot(table.current, before)
        self.assertIsInstance(table.current.decide(b"web.example", b"/", "GET", "https"), Forward)

    def test_detach_stops_following(self) -> None:
        """After ``detach`` changes are ignored."""
        feed = SnapshotFeed()
        table = LiveTable()
        table.attach(feed)
        table.detach()
        feed.publish(Snapshot(proxies={"web.example": WEB}))
        self.assertIsInstance(table.current.decide(b"web.example", b"/", "GET", "https"), NotFound)

    def test_https_port_reaches_redirects(self) -> None:
        """The public HTTPS port configured on the table appears in redirect locations."""
        table = LiveTable(https_port=8443)
        table.apply(Snapshot(proxies={"web.example": WEB}))
        outcome = table.current.decide(b"web.example", b"/x", "GET", "http")
        self.assertEqual(getattr(outcome, "location", None), b"https://web.example:8443/x")
