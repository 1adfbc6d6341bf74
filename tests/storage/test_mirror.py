"""Tests for :mod:`oauthproxy.storage.mirror` on MemoryStorage and a ``task.Clock``."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.interfaces import ISnapshotSource
from oauthproxy.model import AuthRule, Event, ExternalService, Proxy, Route, Snapshot
from oauthproxy.storage.codec import encode
from oauthproxy.storage.mirror import Mirror, apply_event, backoff_delay
from oauthproxy.testing import MemoryStorage


def proxy(hostname: str, target: str = "http://a") -> Proxy:
    """A proxy record."""
    return Proxy(hostname=hostname, target_url=target)


class BackoffDelayTests(SynchronousTestCase):
    """``backoff_delay`` doubles, caps and jitters."""

    def test_doubles_from_initial(self) -> None:
        """With the top jitter value the delays double from ``initial``."""
        top = 1.0 - 1e-12
        self.assertEqual(
            [round(backoff_delay(n, top, 0.5, 100.0), 6) for n in range(4)], [0.5, 1.0, 2.0, 4.0]
        )

    def test_capped_at_maximum(self) -> None:
        """No delay exceeds ``maximum``, even after very many failures."""
        self.assertLessEqual(backoff_delay(10_000, 0.999, 0.5, 30.0), 30.0)

    @given(failures=st.integers(0, 200), value=st.floats(0, 1, exclude_max=True))
    def test_jitter_stays_in_upper_half(self, failures: int, value: float) -> None:
        """The jittered delay is between half and all of the capped delay."""
        capped = min(30.0, 0.5 * 2.0**failures)
        delay = backoff_delay(failures, value, 0.5, 30.0)
        self.assertTrue(capped / 2 <= delay <= capped)


class ApplyEventTests(SynchronousTestCase):
    """``apply_event`` is idempotent and ordered by stream id."""

    def test_created_record_is_added(self) -> None:
        """A created event adds the record under its key and advances the id."""
        event = Event("5-0", "proxy_created", "proxy", "a.example", encode(proxy("a.example")))
        snapshot = apply_event(Snapshot(), event)
        self.assertEqual(
            (snapshot.stream_id, snapshot.proxies), ("5-0", {"a.example": proxy("a.example")})
        )

    def test_deleted_record_is_removed(self) -> None:
        """A deleted event removes the key (and deleting twice is harmless)."""
        start = Snapshot(stream_id="1-0", routes={"r": Route("r", "/", "url", "http://x")})
        event = Event("2-0", "route_deleted", "route", "r")
        self.assertEqual(apply_event(start, event).routes, {})
        self.assertEqual(apply_event(Snapshot(stream_id="1-0"), event).routes, {})

    def test_old_or_repeated_event_changes_nothing(self) -> None:
        """An event not newer than the snapshot returns the same snapshot."""
        event = Event("3-0", "proxy_created", "proxy", "a", encode(proxy("a")))
        applied = apply_event(Snapshot(stream_id="2-9"), event)
        self.assertIs(apply_event(applied, event), applied)
        self.assertIs(apply_event(Snapshot(stream_id="10-0"), event).stream_id, "10-0")

    def test_ids_compare_numerically(self) -> None:
        """``10-0`` is newer than ``9-0`` (not a string comparison)."""
        event = Event("10-0", "proxy_created", "proxy", "a", encode(proxy("a")))
        self.assertIn("a", apply_event(Snapshot(stream_id="9-0"), event).proxies)

    def test_auth_rules_are_mirrored(self) -> None:
        """Auth rule events land in ``auth_rules`` keyed by config_id."""
        rule = AuthRule("r1", "/proxies/*")
        event = Event("1-0", "auth_rule_created", "auth_rule", "r1", encode(rule))
        self.assertEqual(apply_event(Snapshot(), event).auth_rules, {"r1": rule})

    def test_unknown_kind_only_advances(self) -> None:
        """An event of a kind this version does not know moves the id and nothing else."""
        snapshot = apply_event(Snapshot(), Event("1-0", "widget_created", "widget", "w", "{}"))
        self.assertEqual(snapshot, Snapshot(stream_id="1-0"))


class MirrorTests(SynchronousTestCase):
    """The Mirror service over MemoryStorage, driven by a fake clock."""

    def setUp(self) -> None:
        """A store with one proxy and an unstarted mirror."""
        self.clock = Clock()
        self.storage = MemoryStorage(self.clock)
        self.successResultOf(self.storage.proxies.create(proxy("a.example")))
        self.mirror = Mirror(
            self.storage, self.clock, random_value=lambda: 0.0, block=5.0, initial_delay=1.0
        )
        self.seen: list[tuple[Snapshot, Event | None]] = []

    def start(self) -> None:
        """Start the mirror and stop it at the end of the test."""
        self.mirror.startService()
        self.addCleanup(self.stop)

    def stop(self) -> None:
        """Stop the mirror and check it left nothing behind."""
        if self.mirror.running:
            self.successResultOf(self.mirror.stopService())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_provides_isnapshotsource(self) -> None:
        """Mirror provides ISnapshotSource."""
        self.assertTrue(ISnapshotSource.providedBy(self.mirror))

    def test_start_loads_everything(self) -> None:
        """After start the snapshot holds the stored records at the stream's last id."""
        self.start()
        snapshot = self.successResultOf(self.mirror.when_loaded())
        self.assertEqual(snapshot.proxies, {"a.example": proxy("a.example")})
        self.assertEqual(self.mirror.last_id, self.successResultOf(self.storage.events.last_id()))
        self.assertTrue(self.mirror.connected)

    def test_events_are_applied_as_they_come(self) -> None:
        """Writes after start show up in the snapshot without any reload."""
        self.start()
        self.successResultOf(self.storage.services.create(ExternalService("s", "http://s")))
        self.successResultOf(self.storage.proxies.delete("a.example"))
        self.assertEqual(self.mirror.current.proxies, {})
        self.assertEqual(list(self.mirror.current.services), ["s"])
        self.assertEqual(self.mirror.reloads, 1)

    def test_snapshot_is_replaced_not_mutated(self) -> None:
        """A snapshot handed out earlier does not change when events arrive."""
        self.start()
        before = self.mirror.current
        self.successResultOf(self.storage.proxies.create(proxy("b.example")))
        self.assertEqual(list(before.proxies), ["a.example"])
        self.assertIsNot(self.mirror.current, before)

    def test_idle_tail_keeps_polling(self) -> None:
        """With no news, the tail times out and reads again, staying connected."""
        self.start()
        self.clock.advance(5.0)
        self.clock.advance(5.0)
        self.successResultOf(self.storage.proxies.create(proxy("b.example")))
        self.assertIn("b.example", self.mirror.current.proxies)
        self.assertTrue(self.mirror.connected)

    def test_listeners_get_current_then_every_change(self) -> None:
        """subscribe calls at once, then after the load and after every event."""
        self.mirror.subscribe(lambda s, e: self.seen.append((s, e)))
        self.start()
        self.successResultOf(self.storage.proxies.create(proxy("b.example")))
        self.assertEqual(
            [(len(s.proxies), e and e.type) for s, e in self.seen],
            [(0, None), (1, None), (2, "proxy_created")],
        )

    def test_unsubscribe_stops_calls(self) -> None:
        """After unsubscribing, a listener is not called again."""
        unsubscribe = self.mirror.subscribe(lambda s, e: self.seen.append((s, e)))
        unsubscribe()
        self.start()
        self.assertEqual(len(self.seen), 1)

    def test_failing_listener_does_not_stop_the_mirror(self) -> None:
        """A listener that raises is logged; the mirror and other listeners go on."""

        def broken(snapshot: Snapshot, event: Event | None) -> None:
            raise RuntimeError("listener bug")

        self.start()
        self.mirror.subscribe(broken)
        self.mirror.subscribe(lambda s, e: self.seen.append((s, e)))
        self.successResultOf(self.storage.proxies.create(proxy("b.example")))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.assertEqual(self.seen[-1][1] and self.seen[-1][1].key, "b.example")

    def test_outage_keeps_serving_last_snapshot(self) -> None:
        """When the store goes away, ``connected`` turns False and the snapshot stays."""
        self.start()
        before = self.mirror.current
        self.storage.set_available(False)
        self.assertFalse(self.mirror.connected)
        self.assertIs(self.mirror.current, before)

    def test_retries_with_backoff_then_resumes_the_tail(self) -> None:
        """Retries wait 0.5 s, 1 s, 2 s...; the store back with its events, the tail goes on
        from the last applied id (no reload) and applies what was written meanwhile."""
        self.start()
        self.storage.set_available(False)
        self.clock.advance(0.5)  # first retry (jitter 0 -> half of 1 s) fails
        self.clock.advance(0.99)  # second retry due after 1 s: not yet
        self.storage.set_available(True)
        # written while the mirror was not reading
        self.successResultOf(self.storage.proxies.delete("a.example"))
        self.successResultOf(self.storage.proxies.create(proxy("c.example")))
        self.clock.advance(0.01)
        self.assertEqual(self.mirror.reloads, 1)
        self.assertTrue(self.mirror.connected)
        self.assertEqual(list(self.mirror.current.proxies), ["c.example"])
        self.assertEqual(self.mirror.last_id, self.successResultOf(self.storage.events.last_id()))

    def test_resumes_tailing_after_reload(self) -> None:
        """After a reload the tail continues from the new last id."""
        self.start()
        self.storage.set_available(False)
        self.storage.set_available(True)
        self.clock.advance(0.5)
        self.successResultOf(
            self.storage.proxies.update(proxy("a.example", target="http://changed"))
        )
        self.assertEqual(self.mirror.current.proxies["a.example"].target_url, "http://changed")

    def test_start_while_store_is_down(self) -> None:
        """A mirror started during an outage serves an empty snapshot, then loads."""
        self.storage.set_available(False)
        self.start()
        loaded = self.mirror.when_loaded()
        self.assertFalse(self.mirror.connected)
        self.assertEqual(self.mirror.current, Snapshot())
        self.storage.set_available(True)
        self.clock.advance(0.5)
        self.assertEqual(list(self.successResultOf(loaded).proxies), ["a.example"])

    def test_stop_while_tailing_leaves_nothing_running(self) -> None:
        """stopService cancels the blocked read and fires; no timer is left."""
        self.start()
        self.successResultOf(self.mirror.stopService())
        self.assertFalse(self.mirror.connected)
        self.assertEqual(self.storage.state.waiters, [])

    def test_stop_during_backoff_leaves_nothing_running(self) -> None:
        """stopService during the retry delay cancels the delay."""
        self.start()
        self.storage.set_available(False)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.successResultOf(self.mirror.stopService())

    def test_restart_after_stop(self) -> None:
        """A stopped mirror can be started again and reloads."""
        self.start()
        self.successResultOf(self.mirror.stopService())
        self.successResultOf(self.storage.routes.create(Route("r", "/", "url", "http://x")))
        self.mirror.startService()
        self.assertEqual(list(self.mirror.current.routes), ["r"])
        self.assertEqual(self.mirror.reloads, 2)

    def test_falling_behind_a_trimmed_stream_reloads(self) -> None:
        """If events the mirror had not read were trimmed, it reloads at once and misses nothing."""
        self.storage = MemoryStorage(self.clock, stream_maxlen=5)
        self.mirror = Mirror(self.storage, self.clock, random_value=lambda: 0.0)
        burst = [proxy(f"burst{i}.example") for i in range(10)]
        other = self.storage.another_instance()  # its writes reach this mirror by the tail

        def write_burst(snapshot: Snapshot, event: Event | None) -> None:
            # another daemon writing while this mirror applies: its next read starts behind
            if event is not None and event.key == "first.example":
                for record in burst:
                    self.successResultOf(other.proxies.create(record))

        self.mirror.subscribe(write_burst)
        self.start()
        self.successResultOf(other.proxies.create(proxy("first.example")))
        self.assertEqual(self.mirror.reloads, 2)
        self.assertTrue(self.mirror.connected)
        self.assertEqual(len(self.mirror.current.proxies), 11)
        self.assertEqual(self.mirror.last_id, self.successResultOf(self.storage.events.last_id()))

    def test_repeated_event_is_harmless(self) -> None:
        """Re-reading the stream from an older id leaves the snapshot as it was."""
        self.start()
        self.successResultOf(self.storage.proxies.create(proxy("b.example")))
        current = self.mirror.current
        for event in self.successResultOf(self.storage.events.read("0-0", 0)):
            self.mirror._apply(event)
        self.assertIs(self.mirror.current, current)
