"""The parent process of ``--workers N``: prepares Redis, shares the sockets, runs N workers.

:class:`Supervisor` replaces :class:`~oauthproxy.daemon.Daemon` in the twistd process
when ``--workers`` is more than 1.  It serves no request itself:

1. it does once what must happen once per daemon
   (:func:`~oauthproxy.daemon.prepare_storage`): start the embedded redis-server,
   which stays its single child, check the secret key, create and print the admin
   token;
2. it opens every listening socket (:mod:`oauthproxy.workers.sockets`);
3. it starts N workers (``python -m oauthproxy.workers.child``), each a full
   daemon with its own reactor, Redis connections, mirror, certificate map, ACME
   and Docker services and request-log writer, on the shared sockets; once all
   are ready it tells systemd ``READY=1``;
4. it relays between them over the control channels (:mod:`oauthproxy.workers.link`):
   a write's catch-up to the siblings, the merged metrics, the workers' state;
5. it restarts a worker that dies (:mod:`oauthproxy.workers.restarts`); a worker
   that dies before it was ever ready stops the daemon with exit status 1, as a
   daemon that cannot start does.

Per-daemon jobs stay single by the Redis leases every daemon already takes (an ACME
order per name, the Docker reconciler and its guarded-port listeners): N workers
take them like N daemons would.

SIGTERM: the supervisor closes its copies of the sockets, sends SIGTERM to every
worker, which stops listening and drains (``OAUTHPROXY_DRAIN_TIMEOUT``), waits for
them (SIGKILL for one still running 10 s after the drain timeout), then stops the
embedded Redis.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from attrs import define, evolve, field
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.application.service import Service
from twisted.internet import defer, error, task
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

import oauthproxy
from oauthproxy import bootstrap
from oauthproxy.config import Config
from oauthproxy.daemon import prepare_storage, sd_notify, startup_failed
from oauthproxy.errors import OAuthProxyError
from oauthproxy.metrics import cluster
from oauthproxy.storage.embedded import EmbeddedRedis
from oauthproxy.workers.channel import ControlChannel
from oauthproxy.workers.restarts import Deaths, RestartPolicy, after_death, is_crash_loop
from oauthproxy.workers.sockets import ListenerSockets, open_sockets
from oauthproxy.workers.spec import CONTROL_FD, FIRST_SOCKET_FD, WorkerSpec, encode_spec

#: seconds a worker may take past the drain timeout before SIGKILL
STOP_GRACE = 10.0


class WorkerFailed(OAuthProxyError):
    """A worker exited before it was ready: the daemon cannot start."""

    code = "worker_failed"


def exit_reason(reason: Any) -> str:
    """How a process ended, for people: ``exit status 1`` or ``signal 9``."""
    signal_number = getattr(reason, "signal", None)
    if signal_number is not None:
        return f"was killed by signal {signal_number}"
    return f"exited with status {getattr(reason, 'exitCode', None)}"


class WorkerProcess(ProcessProtocol):
    """One running worker process; ``ended`` fires with the reason when it is gone."""

    def __init__(self, index: int, started_at: float, channel: ControlChannel) -> None:
        """A worker process of slot ``index`` started at ``started_at``."""
        self.index = index
        self.started_at = started_at
        self.channel = channel
        self.ready = False
        self.ended: defer.Deferred[Any] = defer.Deferred()

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        pid = getattr(self.transport, "pid", None)
        return pid if isinstance(pid, int) else None

    def processEnded(self, reason: Failure) -> None:
        """The process is gone (and reaped)."""
        self.ended.callback(reason.value)

    def signal(self, name: str) -> None:
        """Send ``name`` (``"TERM"``, ``"KILL"``) if it still runs."""
        if self.transport is not None:
            with contextlib.suppress(error.ProcessExitedAlready):
                self.transport.signalProcess(name)


@define(eq=False)
class Slot:
    """One of the N worker places: its current process and the deaths of its processes."""

    index: int
    process: WorkerProcess | None = None
    deaths: Deaths = field(factory=Deaths)
    restart: IDelayedCall | None = None
    reported_loop: bool = False


class _Given(Factory):
    """Builds one given protocol (an adopted control channel)."""

    def __init__(self, protocol: ControlChannel) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: Any) -> ControlChannel:
        """The channel."""
        return self._protocol


@define(eq=False)
class _SupervisorCollector(Collector):
    """The daemon-wide worker figures, read at scrape time."""

    supervisor: Supervisor

    def collect(self) -> Iterator[Metric]:
        """Configured and running workers, restarts, crash loops."""
        state = self.supervisor.state()
        configured = GaugeMetricFamily("oauthproxy_workers_configured", "Worker processes wanted")
        configured.add_metric([], state["configured"])
        running = GaugeMetricFamily(
            "oauthproxy_workers_running", "Worker processes running and ready"
        )
        running.add_metric([], state["running"])
        restarts = CounterMetricFamily(
            "oauthproxy_workers_restarts", "Worker processes restarted after they died"
        )
        restarts.add_metric([], state["restarts"])
        looping = GaugeMetricFamily(
            "oauthproxy_workers_crash_looping", "Worker slots whose processes die again and again"
        )
        looping.add_metric([], len(state["crash_looping"]))
        yield from (configured, running, restarts, looping)


@define(eq=False, slots=False)
class Supervisor(Service):
    """Runs and supervises the worker processes (see the module docstring)."""

    config: Config
    reactor: Any
    embedded: EmbeddedRedis | None = None
    announce: Callable[[str], None] = field(default=lambda line: None)
    #: the workers' environment (the supervisor's own)
    environment: Mapping[str, str] = field(factory=dict)
    #: how a worker is started; its control channel and sockets come as descriptors
    argv: list[str] = field(factory=lambda: [sys.executable, "-m", "oauthproxy.workers.child"])
    open_storage: Callable[[Config, Any], Any] = bootstrap.open_storage
    policy: RestartPolicy = field(factory=RestartPolicy)
    slots: list[Slot] = field(factory=list, init=False)
    sockets: list[ListenerSockets] = field(factory=list, init=False)
    registry: CollectorRegistry = field(init=False)
    _storage: Any = field(default=None, init=False)
    _startup: defer.Deferred[None] | None = field(default=None, init=False)
    _all_ready: defer.Deferred[None] = field(factory=defer.Deferred, init=False)
    _started: bool = field(default=False, init=False)
    _stopping: bool = field(default=False, init=False)
    _log: Logger = field(factory=Logger, init=False)

    def __attrs_post_init__(self) -> None:
        """The supervisor's own metrics: its process and the workers' figures."""
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.registry.register(_SupervisorCollector(self))

    @property
    def call_timeout(self) -> float:
        """Seconds a worker's catch-up or metrics answer may take (a worker may be starting)."""
        return max(10.0, 2 * self.config.redis_timeout)

    # --- startup ---------------------------------------------------------------------

    def startService(self) -> None:
        """Begin the asynchronous startup; a failure stops the daemon with status 1."""
        super().startService()  # type: ignore[no-untyped-call]
        self._startup = defer.Deferred.fromCoroutine(self._start())
        self._startup.addErrback(self._startup_failed)

    def _startup_failed(self, failure: Failure) -> None:
        """Log why the daemon could not start, and stop (exit status 1)."""
        startup_failed(self.reactor, self._log, failure)

    async def _start(self) -> None:
        """Prepare Redis, open the sockets, start the workers and wait until all are ready."""
        config = self.config
        self._storage = self.open_storage(config, self.reactor)
        await prepare_storage(config, self.reactor, self.embedded, self._storage, self.announce)
        # the workers have their own connections; the supervisor needs none
        storage, self._storage = self._storage, None
        await storage.close()
        self.sockets = await open_sockets(self.reactor, config)
        for listener in self.sockets:
            self._log.info(
                "{name} listening on {address}", name=listener.name, address=listener.address()
            )
        self.slots = [Slot(index) for index in range(config.workers)]
        for slot in self.slots:
            self._spawn(slot)
        await self._all_ready
        self._started = True
        sd_notify(config.notify_socket, "READY=1")
        self._log.info(
            "oauthproxy {version} ready with {count} workers",
            version=oauthproxy.__version__,
            count=config.workers,
        )

    # --- the workers -----------------------------------------------------------------

    def _spawn(self, slot: Slot) -> None:
        """Start a worker process for ``slot`` on the shared sockets."""
        slot.restart = None
        if self._stopping:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        child_fds: dict[int, Any] = {1: 1, 2: 2, CONTROL_FD: theirs.fileno()}
        inherited = []
        for offset, listener in enumerate(self.sockets):
            number = FIRST_SOCKET_FD + offset
            child_fds[number] = listener.fileno_for(slot.index)
            shared = listener.shared is not None
            inherited.append((listener.description, number, listener.family, shared))
        channel = ControlChannel({}, on_close=lambda: None)
        process = WorkerProcess(slot.index, self.reactor.seconds(), channel)
        channel.handlers = {
            "ready": lambda: self._ready(slot, process),
            "written": lambda event_id: self._written(process, event_id),
            "metrics": self._metrics,
        }
        try:
            self.reactor.spawnProcess(
                process,
                self.argv[0],
                self.argv,
                env=dict(self.environment),
                childFDs=child_fds,
            )
            self.reactor.adoptStreamConnection(ours.fileno(), socket.AF_UNIX, _Given(channel))
        finally:
            ours.close()
            theirs.close()
        slot.process = process
        process.ended.addCallback(lambda reason: self._ended(slot, process, reason))
        # a worker reads no settings itself: it runs with exactly the supervisor's
        worker_config = evolve(self.config, notify_socket=None)
        spec = WorkerSpec(slot.index, worker_config, tuple(inherited), self.call_timeout + 5.0)
        channel.sendString(encode_spec(spec))  # type: ignore[no-untyped-call]
        channel.notify("workers", **self.state())
        self._log.info("worker {index} started (pid {pid})", index=slot.index, pid=process.pid)

    def _ready(self, slot: Slot, process: WorkerProcess) -> None:
        """A worker opened its listeners."""
        if slot.process is not process:
            return
        process.ready = True
        self._broadcast()
        if not self._all_ready.called and all(
            s.process is not None and s.process.ready for s in self.slots
        ):
            self._all_ready.callback(None)

    def _ended(self, slot: Slot, process: WorkerProcess, reason: Any) -> None:
        """A worker is gone: restart it (with back-off), unless the daemon stops."""
        if slot.process is process:
            slot.process = None
        if self._stopping:
            return
        how = exit_reason(reason)
        if not self._started:
            if not self._all_ready.called:
                self._all_ready.errback(
                    WorkerFailed(f"worker {slot.index} (pid {process.pid}) {how} while starting")
                )
            return
        ran_for = self.reactor.seconds() - process.started_at
        slot.deaths, delay = after_death(self.policy, slot.deaths, ran_for)
        self._log.warn(
            "worker {index} {how} after {seconds:.1f} s; restarting it in {delay:g} s",
            index=slot.index,
            how=how,
            seconds=ran_for,
            delay=delay,
        )
        looping = is_crash_loop(self.policy, slot.deaths)
        if looping and not slot.reported_loop:
            self._log.critical(
                "worker {index} is crash-looping: it died {count} times in a row within "
                "{stable:g} s of starting; still retrying every {delay:g} s at most",
                index=slot.index,
                count=slot.deaths.quick,
                stable=self.policy.stable_after,
                delay=self.policy.max_delay,
            )
        slot.reported_loop = looping
        slot.restart = self.reactor.callLater(delay, self._spawn, slot)
        self._broadcast()

    def state(self) -> dict[str, Any]:
        """The workers' state (``/health``'s ``workers`` entry and the metrics)."""
        return {
            "configured": len(self.slots) or self.config.workers,
            "running": sum(1 for s in self.slots if s.process is not None and s.process.ready),
            "restarts": sum(s.deaths.total for s in self.slots),
            "crash_looping": [s.index for s in self.slots if is_crash_loop(self.policy, s.deaths)],
        }

    def _broadcast(self) -> None:
        """Send the workers' state to every worker."""
        state = self.state()
        for process in self._processes():
            process.channel.notify("workers", **state)

    def _processes(self) -> list[WorkerProcess]:
        """The worker processes that run now."""
        return [s.process for s in self.slots if s.process is not None]

    # --- relaying --------------------------------------------------------------------

    async def _written(self, writer: WorkerProcess, event_id: str) -> None:
        """Answer once every other worker applied ``event_id`` (or gave up on one)."""
        siblings = [p for p in self._processes() if p is not writer and p.channel.open]
        calls = []
        for process in siblings:
            d = process.channel.call("catch_up", event_id=event_id)
            calls.append(d.addTimeout(self.call_timeout, self.reactor))
        results = await defer.DeferredList(calls, consumeErrors=True)
        for process, (ok, value) in zip(siblings, results, strict=True):
            if not ok:
                self._log.warn(
                    "worker {index} did not confirm event {event_id}: {reason}",
                    index=process.index,
                    event_id=event_id,
                    reason=value.getErrorMessage(),
                )

    async def _metrics(self) -> list[cluster.Family]:
        """Every ready worker's families and the supervisor's, merged."""
        ready = [p for p in self._processes() if p.ready and p.channel.open]
        calls = [
            p.channel.call("families").addTimeout(self.call_timeout, self.reactor) for p in ready
        ]
        results = await defer.DeferredList(calls, consumeErrors=True)
        sources = [
            (str(p.index), value) for p, (ok, value) in zip(ready, results, strict=True) if ok
        ]
        sources.append(("supervisor", cluster.export(self.registry)))
        return cluster.merge(sources)

    # --- shutdown --------------------------------------------------------------------

    def stopService(self) -> defer.Deferred[None]:
        """Close the sockets, drain and stop every worker, stop the embedded Redis."""
        super().stopService()  # type: ignore[no-untyped-call]
        if self._startup is not None and not self._startup.called:
            self._startup.cancel()
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        """The shutdown sequence (see the module docstring)."""
        self._stopping = True
        sd_notify(self.config.notify_socket, "STOPPING=1")
        for slot in self.slots:
            if slot.restart is not None and slot.restart.active():
                slot.restart.cancel()
            slot.restart = None
        # first: once the workers stop listening, nothing may queue connections
        for listener in self.sockets:
            await listener.close()
        self.sockets.clear()
        processes = self._processes()
        for process in processes:
            process.signal("TERM")
        deadline = self.reactor.seconds() + self.config.drain_timeout + STOP_GRACE
        while any(not p.ended.called for p in processes):
            if self.reactor.seconds() >= deadline:
                for process in processes:
                    if not process.ended.called:
                        self._log.error(
                            "worker {index} did not stop; killing it", index=process.index
                        )
                        process.signal("KILL")
                await defer.DeferredList([p.ended for p in processes])
                break
            await task.deferLater(self.reactor, 0.05, lambda: None)
        for process in processes:
            if process.channel.transport is not None:
                process.channel.transport.loseConnection()
        if self._storage is not None:
            await defer.maybeDeferred(self._storage.close)
        if self.embedded is not None and self.embedded.running:
            await self.embedded.stopService()
        self._log.info("oauthproxy stopped")


def worker_environment(environment: Mapping[str, str]) -> dict[str, str]:
    """The supervisor's environment for its workers, without systemd's socket variables.

    ``LISTEN_FDS`` and ``LISTEN_PID`` describe the supervisor's sockets; a worker gets
    its sockets from the supervisor.
    """
    hidden = {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET"}
    return {name: value for name, value in environment.items() if name not in hidden}
