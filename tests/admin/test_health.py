"""Tests for ``GET /health``."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.admin.harness import Harness, default_health


class HealthTests(SynchronousTestCase):
    """The public health check."""

    def test_healthy_daemon_is_ok(self) -> None:
        """With Redis connected: 200, status ok, and the daemon's facts passed through."""
        answer = Harness(self).call("GET", "/health")
        self.assertEqual(answer.status, 200)
        self.assertEqual(
            answer.json(),
            {
                **default_health(),
                "status": "ok",
                "events_connected": True,
            },
        )

    def test_redis_down_is_degraded_but_200(self) -> None:
        """Redis disconnected: still 200 (the daemon serves), status degraded."""
        answer = Harness(self, health=lambda: {**default_health(), "redis": "disconnected"}).call(
            "GET", "/health"
        )
        self.assertEqual((answer.status, answer.json()["status"]), (200, "degraded"))
        self.assertEqual(answer.json()["redis"], "disconnected")

    def test_event_tail_down_is_degraded(self) -> None:
        """A disconnected event tail makes the daemon degraded too."""
        h = Harness(self)
        h.snapshots.connected = False
        answer = h.call("GET", "/health")
        self.assertEqual(answer.json()["status"], "degraded")
        self.assertIs(answer.json()["events_connected"], False)

    def test_needs_no_token(self) -> None:
        """``/health`` answers without credentials and sends no challenge."""
        answer = Harness(self).call("GET", "/health")
        self.assertIsNone(answer.header(b"www-authenticate"))
