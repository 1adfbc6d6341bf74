"""Read-your-writes: a write returns once the instance that made it can see it.

Every record write appends its event to the ``events`` stream in the same script, and
every instance's :class:`~oauthproxy.storage.mirror.Mirror` applies the events it reads
from the stream's tail.  Other instances see a change within a second; the instance that
made the write must not wait for its own event to come back: when the admin API (or the
OAuth server's ``/revoke``, or a detected code replay) answers, this instance's
authentication, routing table, certificate map and revocation set already hold the change.

So a store's write, once Redis has accepted it, waits for :meth:`WriteVisibility.written`
with the event id the write produced.  The instance's mirror follows it
(:meth:`~oauthproxy.storage.mirror.Mirror.catch_up`): it reads the stream up to that id and
applies every event in order, this write's and any other instance's before it, so the
snapshot never skips an event and applying stays idempotent when the tail later delivers
the same events.  One object per storage connection (the instance's session with Redis)
serves every store, so every write path gets the guarantee, new record kinds included.

The same place makes a write durable where that is configured: :attr:`WriteVisibility.durable`
(Redis ``WAIT`` for replicas behind Sentinel) runs alongside the followers, and a write it
cannot confirm fails, so the API never confirms a write a failover could lose.  In a daemon
with several worker processes, one follower asks the sibling workers to apply the write
too (:mod:`oauthproxy.workers`), so the guarantee holds for the daemon as a whole.
"""

from __future__ import annotations

from collections.abc import Callable

from attrs import define, field
from twisted.internet.defer import Deferred, FirstError, gatherResults, succeed
from twisted.python.failure import Failure

#: makes the write with this event id visible locally; fires when it is
Follower = Callable[[str], Deferred[None]]


@define(eq=False)
class WriteVisibility:
    """Where writes wait until this instance has applied their event (see the module)."""

    _followers: list[Follower] = field(factory=list, init=False)
    #: makes the writes so far durable (replicated); None = nothing to wait for
    durable: Callable[[], Deferred[None]] | None = field(default=None, init=False)

    def follow(self, follower: Follower) -> Callable[[], None]:
        """Make ``follower`` apply every write before it returns; returns the undo."""
        self._followers.append(follower)

        def unfollow() -> None:
            if follower in self._followers:
                self._followers.remove(follower)

        return unfollow

    def written(self, event_id: str) -> Deferred[None]:
        """Fires once every follower has applied the event ``event_id``.

        Followers never fail; the write fails only when :attr:`durable` cannot confirm it.
        """
        waiting = [follower(event_id) for follower in list(self._followers)]
        if self.durable is not None:
            waiting.append(self.durable())
        if not waiting:
            return succeed(None)
        return gatherResults(waiting, consumeErrors=True).addCallbacks(lambda _: None, _first_error)


def _first_error(failure: Failure) -> Failure:
    """The failure inside gatherResults' FirstError."""
    if isinstance(failure.value, FirstError):
        inner: Failure = failure.value.subFailure
        return inner
    return failure
