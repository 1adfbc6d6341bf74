"""The entry point of a worker process: ``python -m oauthproxy.workers.child``.

Started only by the :class:`~oauthproxy.workers.supervisor.Supervisor`, with the
control channel on descriptor 3 and the listening sockets after it
(:mod:`oauthproxy.workers.spec`).  It reads its :class:`~oauthproxy.workers.spec.WorkerSpec`,
logs like the daemon (each line names the worker), builds the worker's daemon
through :func:`oauthproxy.tap.make_worker` and runs the reactor until SIGTERM (or
until the supervisor is gone).
"""

from __future__ import annotations

import signal
import socket
import sys
from typing import Any

from twisted.logger import ILogObserver, LogEvent, globalLogBeginner
from zope.interface import implementer

from oauthproxy.logs import bridge_stdlib_logging, make_observer
from oauthproxy.workers.spec import CONTROL_FD, read_spec


@implementer(ILogObserver)
class WorkerLogs:
    """Adds the worker's number to every event (``worker``, and in the text line's system)."""

    def __init__(self, observer: ILogObserver, index: int) -> None:
        """Pass events on to ``observer``."""
        self.observer = observer
        self.index = index

    def __call__(self, event: LogEvent) -> None:
        """Tag one event."""
        level = event.get("log_level")
        system = f"{event.get('log_namespace', '-')}#{getattr(level, 'name', '-')}"
        self.observer({**event, "worker": self.index, "log_system": f"{system} w{self.index}"})


class Stopper:
    """Stops the reactor once, however many SIGTERMs arrive (a process group gets its own)."""

    def __init__(self, reactor: Any) -> None:
        """Stop ``reactor`` when asked."""
        self.reactor = reactor
        self.stopping = False

    def stop(self) -> None:
        """Stop the reactor unless that is already under way."""
        if not self.stopping:
            self.stopping = True
            self.reactor.stop()

    def on_signal(self, number: int, frame: Any) -> None:
        """SIGTERM or SIGINT: stop from the reactor thread."""
        self.reactor.callFromThread(self.stop)

    def install(self) -> None:
        """Take over SIGTERM and SIGINT from the reactor's own handlers."""
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)


def main() -> None:
    """Run one worker (see the module docstring)."""
    from twisted.internet import reactor

    from oauthproxy.tap import make_worker
    from oauthproxy.workers.link import WorkerLink
    from oauthproxy.workers.sockets import InheritedSockets
    from oauthproxy.workers.supervisor import _Given

    control = socket.socket(fileno=CONTROL_FD)
    spec = read_spec(control)
    config = spec.config
    observer = make_observer(sys.stdout, config.log_format, config.log_level)
    globalLogBeginner.beginLoggingTo([WorkerLogs(observer, spec.index)], redirectStandardIO=False)
    bridge_stdlib_logging(config.log_level)
    stopper = Stopper(reactor)
    link = WorkerLink(spec.index, spec.timeout, reactor, stopper.stop)
    control.setblocking(False)
    reactor_: Any = reactor
    reactor_.adoptStreamConnection(control.fileno(), socket.AF_UNIX, _Given(link.channel))
    control.close()
    inherited = InheritedSockets(
        {text: (fd, family, shared) for text, fd, family, shared in spec.sockets}
    )
    daemon = make_worker(config, reactor_, link, inherited.endpoint)
    reactor_.callWhenRunning(stopper.install)
    reactor_.callWhenRunning(daemon.startService)
    reactor_.addSystemEventTrigger("before", "shutdown", daemon.stopService)
    reactor_.run()


if __name__ == "__main__":
    main()
