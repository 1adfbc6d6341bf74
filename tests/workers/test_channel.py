"""The control channel between supervisor and worker, over an in-memory loopback."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.test.iosim import connect, makeFakeClient, makeFakeServer
from twisted.trial.unittest import TestCase

from oauthproxy.workers.channel import ChannelClosed, ControlChannel, RemoteError


def pair(left: dict[str, Any], right: dict[str, Any]) -> tuple[ControlChannel, ControlChannel, Any]:
    """Two connected channels with these handlers, and the pump between them."""
    a, b = ControlChannel(left), ControlChannel(right)
    pump = connect(b, makeFakeServer(b), a, makeFakeClient(a))
    return a, b, pump


class ControlChannelTests(TestCase):
    """Calls, answers, notices and a closed channel."""

    def test_a_call_gets_the_handlers_result(self) -> None:
        """A handler's value (or Deferred's, or coroutine's) comes back to the caller."""

        async def later(event_id: str) -> str:
            return f"applied {event_id}"

        a, _, pump = pair({}, {"catch_up": later, "double": lambda n: 2 * n})
        first, second = a.call("catch_up", event_id="1-0"), a.call("double", n=21)
        pump.flush()
        self.assertEqual(self.successResultOf(first), "applied 1-0")
        self.assertEqual(self.successResultOf(second), 42)

    def test_a_failing_or_unknown_handler_is_a_remote_error(self) -> None:
        """The caller gets RemoteError with the other side's message."""

        def broken() -> None:
            raise ValueError("no mirror yet")

        a, _, pump = pair({}, {"broken": broken})
        failed, unknown = a.call("broken"), a.call("missing")
        pump.flush()
        self.assertIn("no mirror yet", self.failureResultOf(failed, RemoteError).value.detail)
        self.assertIn("missing", self.failureResultOf(unknown, RemoteError).value.detail)

    def test_a_notice_runs_the_handler_without_an_answer(self) -> None:
        """``notify`` delivers its arguments; nothing comes back."""
        seen: list[dict[str, Any]] = []
        a, _, pump = pair({}, {"workers": lambda **state: seen.append(state)})
        a.notify("workers", running=2, configured=2)
        pump.flush()
        self.assertEqual(seen, [{"running": 2, "configured": 2}])

    def test_calls_waiting_when_the_channel_closes_fail(self) -> None:
        """A worker that dies mid-call does not leave its caller waiting."""
        a, _, pump = pair({}, {"slow": lambda: Deferred()})
        waiting = a.call("slow")
        pump.flush()
        a.transport.loseConnection()  # type: ignore[union-attr]
        pump.flush()
        self.failureResultOf(waiting, ChannelClosed)
        self.failureResultOf(a.call("slow"), ChannelClosed)
