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
        """Redis unreachable: still 200 (the daemon serves), status degraded."""
        answer = Harness(self, health=lambda: {**default_health(), "redis": "unreachable"}).call(
            "GET", "/health"
        )
        self.assertEqual((answer.status, answer.json()["status"]), (200, "degraded"))
        self.assertEqual(answer.json()["redis"], "unreachable")

    def test_refused_writes_are_degraded(self) -> None:
        """Redis answering but refusing writes (out of memory) is degraded, with the reason."""
        refusing = {**default_health(), "redis_writes": "OOM command not allowed"}
        answer = Harness(self, health=lambda: refusing).call("GET", "/health")
        self.assertEqual(answer.json()["status"], "degraded")
        self.assertEqual(answer.json()["redis_writes"], "OOM command not allowed")

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


class ProbeTests(SynchronousTestCase):
    """``/health/live`` and ``/health/ready`` for load balancers."""

    def test_live_is_200(self) -> None:
        """Liveness needs nothing but the process."""
        answer = Harness(self).call("GET", "/health/live")
        self.assertEqual((answer.status, answer.json()), (200, {"status": "live"}))

    def test_ready_is_200_without_reasons(self) -> None:
        """No reason not to be ready: 200."""
        answer = Harness(self).call("GET", "/health/ready")
        self.assertEqual((answer.status, answer.json()), (200, {"status": "ready", "reasons": []}))

    def test_not_ready_is_503_with_the_reasons(self) -> None:
        """Any reason: 503 naming all of them; no token needed."""
        reasons = ["Redis does not answer: timeout", "shutting down"]
        answer = Harness(self, readiness=lambda: reasons).call("GET", "/health/ready")
        self.assertEqual(answer.status, 503)
        self.assertEqual(
            answer.json(),
            {"status": "not_ready", "reasons": ["Redis does not answer: timeout", "shutting down"]},
        )
