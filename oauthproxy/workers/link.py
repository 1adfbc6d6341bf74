"""A worker's side of the control channel: what makes N processes one daemon.

:class:`WorkerLink` is the :class:`~oauthproxy.daemon.WorkerRole` of a worker's
:class:`~oauthproxy.daemon.Daemon`:

- **read-your-writes for the daemon as a whole.**  A write made here waits, besides
  this worker's own mirror, for the supervisor's answer to ``written``: the
  supervisor asks every sibling to ``catch_up`` to the write's event id and answers
  once all have applied it.  So when the admin API answers 2xx, every worker of
  this daemon serves the change, whichever of them the client's next connection
  reaches.  A sibling that is still starting applies it with its first load; one
  that does not answer within the timeout is reported and not waited for.
- **metrics**: ``families`` hands this worker's families to the supervisor, and
  :meth:`WorkerLink.gather` asks the supervisor for every worker's, merged.
- **/health**: the supervisor's ``workers`` notices (configured, running,
  restarts, crash loops) are kept and shown.
- **ready**: told once every listener is open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import define, field
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from oauthproxy.errors import OAuthProxyError
from oauthproxy.metrics.cluster import Family
from oauthproxy.workers.channel import ControlChannel

if TYPE_CHECKING:
    from oauthproxy.daemon import Daemon
    from oauthproxy.metrics.registry import Metrics

_log = Logger()


@define(eq=False)
class WorkerLink:
    """One worker's link to its supervisor (see the module docstring)."""

    index: int
    #: seconds a call to the supervisor may take (sibling catch-ups, metrics)
    timeout: float
    reactor: Any
    #: stops this worker (drain and exit); called when the supervisor is gone
    stop: Callable[[], None] = lambda: None
    channel: ControlChannel = field(init=False)
    daemon: Daemon | None = field(default=None, init=False)
    metrics: Metrics | None = field(default=None, init=False)
    #: the supervisor's last ``workers`` notice
    state: dict[str, Any] = field(factory=dict, init=False)
    _attached: Deferred[None] = field(factory=Deferred, init=False)

    def __attrs_post_init__(self) -> None:
        """The channel, with the handlers of the supervisor's calls."""
        self.channel = ControlChannel(
            {"catch_up": self.catch_up, "families": self.families, "workers": self.workers},
            on_close=self._supervisor_gone,
        )

    def attach(self, daemon: Daemon) -> None:
        """Follow the daemon's writes (read-your-writes across workers)."""
        self.daemon = daemon
        unfollow = daemon.storage.visibility.follow(self.siblings_applied)
        daemon.cleanups.append(unfollow)
        if not self._attached.called:
            self._attached.callback(None)

    def serve_metrics(self, metrics: Metrics) -> None:
        """Hand this worker's families out, and scrapes of it every worker's."""
        self.metrics = metrics
        metrics.gather = self.gather

    def ready(self) -> None:
        """Every listener is open: tell the supervisor."""
        _log.info("worker {index} ready", index=self.index)
        self.channel.notify("ready")

    def health(self) -> dict[str, Any]:
        """The ``workers`` entry of ``/health``: the daemon's workers and this one's number."""
        return {**self.state, "this": self.index}

    def siblings_applied(self, event_id: str) -> Deferred[None]:
        """Fires once every sibling applied ``event_id`` (never fails; problems are logged)."""
        if not self.channel.open:
            return succeed(None)
        d = self.channel.call("written", event_id=event_id)
        d.addTimeout(self.timeout, self.reactor)

        def report(failure: Any) -> None:
            _log.warn(
                "sibling workers may not have applied {event_id} yet: {reason}",
                event_id=event_id,
                reason=failure.getErrorMessage(),
            )

        return d.addCallbacks(lambda _: None, report)

    async def catch_up(self, event_id: str) -> None:
        """Apply every event up to ``event_id`` (a sibling made that write)."""
        await self._attached
        assert self.daemon is not None and self.daemon.mirror is not None
        mirror = self.daemon.mirror
        # a load that is under way may have begun before the write: wait for it
        await mirror.when_loaded()
        await mirror.catch_up(event_id)

    def families(self) -> list[Family]:
        """This worker's metric families."""
        if self.metrics is None:
            raise OAuthProxyError("this worker has no metrics yet")
        return self.metrics.families()

    async def gather(self) -> list[Family]:
        """Every worker's families (and the supervisor's), merged by the supervisor."""
        d = self.channel.call("metrics")
        d.addTimeout(self.timeout, self.reactor)
        families: list[Family] = await d
        return families

    def workers(self, **state: Any) -> None:
        """The supervisor's news about the workers (for ``/health``)."""
        self.state = state

    def _supervisor_gone(self) -> None:
        """The supervisor closed the channel: it died, so this worker stops too."""
        daemon = self.daemon
        if daemon is not None and daemon.running:
            _log.error("worker {index}: the supervisor is gone; stopping", index=self.index)
        self.stop()
