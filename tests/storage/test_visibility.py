"""Tests for :mod:`oauthproxy.storage.visibility` and the memory twin's read-your-writes."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.model import Proxy
from oauthproxy.storage.mirror import Mirror
from oauthproxy.storage.visibility import WriteVisibility
from oauthproxy.testing import MemoryStorage


class WriteVisibilityTests(SynchronousTestCase):
    """Writes wait for every follower; without one they do not wait."""

    def test_without_followers_a_write_is_visible_at_once(self) -> None:
        """Nobody to catch up: ``written`` fires at once."""
        self.successResultOf(WriteVisibility().written("5-0"))

    def test_written_waits_for_every_follower(self) -> None:
        """Each follower gets the event id; ``written`` fires when all of them did."""
        visibility = WriteVisibility()
        calls: list[tuple[str, Deferred[None]]] = []

        def follower(event_id: str) -> Deferred[None]:
            d: Deferred[None] = Deferred()
            calls.append((event_id, d))
            return d

        visibility.follow(follower)
        visibility.follow(follower)
        written = visibility.written("7-1")
        self.assertEqual([event_id for event_id, _ in calls], ["7-1", "7-1"])
        calls[0][1].callback(None)
        self.assertNoResult(written)
        calls[1][1].callback(None)
        self.successResultOf(written)

    def test_unfollow_stops_waiting(self) -> None:
        """After the undo, writes no longer wait for that follower."""
        visibility = WriteVisibility()
        unfollow = visibility.follow(lambda event_id: Deferred())
        unfollow()
        unfollow()  # twice is harmless
        self.successResultOf(visibility.written("1-0"))


class MemoryReadYourWritesTests(SynchronousTestCase):
    """The memory twin keeps the same promise as Redis, per instance."""

    def test_running_mirror_follows_its_storage_and_stops_on_stop(self) -> None:
        """A started mirror is the storage's follower; a stopped one is not."""
        storage = MemoryStorage(Clock())
        mirror = Mirror(storage, Clock())
        mirror.startService()
        self.successResultOf(storage.proxies.create(Proxy("a.example", "http://a")))
        self.assertIn("a.example", mirror.current.proxies)
        self.assertEqual(len(storage.visibility._followers), 1)
        self.successResultOf(mirror.stopService())
        self.assertEqual(storage.visibility._followers, [])

    def test_another_instance_shares_data_but_not_visibility(self) -> None:
        """``another_instance`` sees the same records; its writes wait for its own mirror."""
        storage = MemoryStorage(Clock())
        other = storage.another_instance()
        Mirror(storage, Clock()).startService()
        self.assertEqual(other.visibility._followers, [])
        self.successResultOf(other.routes.list())
        self.successResultOf(other.proxies.create(Proxy("b.example", "http://b")))
        self.assertIsNotNone(self.successResultOf(storage.proxies.get("b.example")))
