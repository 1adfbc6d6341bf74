"""FrozenHeap: the heap is frozen after start, refrozen on its timer, thawed at stop."""

from __future__ import annotations

import gc

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.serving.heap import FrozenHeap


class FrozenHeapTests(SynchronousTestCase):
    """The timer and what it does to the collector."""

    def setUp(self) -> None:
        """A heap service on a fake clock; whatever happens, the heap ends thawed."""
        self.clock = Clock()
        self.heap = FrozenHeap(self.clock, delay=5.0, refreeze=60.0)
        self.addCleanup(gc.unfreeze)

    def test_heap_is_frozen_once_the_delay_passed(self) -> None:
        """Nothing is frozen at start; after ``delay`` the existing objects are."""
        self.heap.startService()
        self.assertEqual(gc.get_freeze_count(), 0)
        self.clock.advance(5.0)
        self.assertGreater(gc.get_freeze_count(), 0)
        self.assertEqual(self.heap.freezes, 1)

    def test_heap_is_refrozen_on_the_timer(self) -> None:
        """Every ``refreeze`` seconds the heap is collected and frozen again."""
        self.heap.startService()
        self.clock.advance(5.0)
        self.clock.advance(60.0)
        self.assertEqual(self.heap.freezes, 2)

    def test_stop_thaws_and_leaves_no_timer(self) -> None:
        """Stopping cancels the timer and unfreezes the heap."""
        self.heap.startService()
        self.clock.advance(5.0)
        self.heap.stopService()
        self.assertEqual((gc.get_freeze_count(), self.clock.getDelayedCalls()), (0, []))
