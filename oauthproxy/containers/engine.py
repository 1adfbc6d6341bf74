"""The Docker engine through the docker SDK, kept off the reactor thread.

:class:`DockerEngine` is the reactor-side face
(:class:`~oauthproxy.containers.runtime.IContainerRuntime`): each method is one
``deferToThreadPool`` call of a blocking function of
:mod:`oauthproxy.containers.docker_calls` in the engine's own
:class:`~twisted.python.threadpool.ThreadPool`; log follows, which block for as long
as they last, have a second pool of their own so they can never starve lifecycle calls.

Docker is reached at ``DOCKER_HOST`` with ``DOCKER_API_VERSION`` ("auto"
negotiates), over TLS with the certificates in ``DOCKER_CERT_PATH`` when set.  Errors
become :mod:`oauthproxy.errors` at this boundary: a socket that is missing or
refuses, or a call silent for ``OAUTHPROXY_DOCKER_TIMEOUT`` seconds, is
:class:`~oauthproxy.errors.Unavailable` with one sentence naming ``DOCKER_HOST``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from oauthproxy.containers.docker_calls import (
    DockerClients,
    LogStream,
    _thd_containers,
    _thd_create,
    _thd_ensure_network,
    _thd_follow,
    _thd_inspect,
    _thd_logs,
    _thd_ping,
    _thd_prepare_image,
    _thd_stats,
)
from oauthproxy.containers.runconfig import create_arguments
from oauthproxy.containers.runtime import ContainerInfo, IContainerRuntime, ILogStream
from oauthproxy.containers.stats import ContainerStats
from oauthproxy.errors import Unavailable
from oauthproxy.model import DockerService

#: concurrent log follows; more are refused (each holds a thread while it lasts)
MAX_FOLLOWS = 16


@implementer(IContainerRuntime)
@define
class DockerEngine:
    """:class:`IContainerRuntime` over the docker SDK (pools: :meth:`open`, :meth:`close`)."""

    reactor: IReactorFromThreads
    host: str = "unix:///var/run/docker.sock"
    version: str = "auto"
    timeout: float = 60.0
    cert_path: str | None = None
    pool: ThreadPool = field(factory=lambda: ThreadPool(minthreads=0, maxthreads=8, name="docker"))
    log_pool: ThreadPool = field(
        factory=lambda: ThreadPool(minthreads=0, maxthreads=MAX_FOLLOWS, name="docker-logs")
    )
    _clients: DockerClients = field(init=False)
    _follows: list[LogStream] = field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        """The per-thread clients."""
        self._clients = DockerClients(self.host, self.version, self.timeout, self.cert_path)

    def open(self) -> None:
        """Start the thread pools."""
        self.pool.start()
        self.log_pool.start()

    def close(self) -> None:
        """End the follows, stop the pools (joining their threads) and close the clients."""
        for follow in list(self._follows):
            follow.stop()
        self.log_pool.stop()
        self.pool.stop()
        self._clients.close_all()

    def _run(self, what: str, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run ``f(client, *args)`` in the pool with errors translated."""

        def in_thread() -> Any:
            with self._clients._thd_errors(what):
                return f(self._clients._thd_client(), *args)

        return deferToThreadPool(self.reactor, self.pool, in_thread)

    def ping(self) -> Deferred[None]:
        """Fires when Docker answers ``/_ping``."""
        return self._run("ping", _thd_ping)

    def ensure_network(self, name: str) -> Deferred[None]:
        """Create the bridge network ``name`` unless it exists."""
        return self._run(f"network {name}", _thd_ensure_network, name)

    def prepare_image(self, service: DockerService, may_pull: bool) -> Deferred[None]:
        """Build, find or pull the service's image."""
        return self._run(f"image {service.image}", _thd_prepare_image, service, may_pull)

    def create(self, service: DockerService, deployment: str, network: str) -> Deferred[str]:
        """Create the container (joined to the service's extra networks); its id."""
        arguments = create_arguments(service, deployment, network)
        return self._run(f"container {service.name}", _thd_create, arguments, service.networks)

    def start(self, container: str) -> Deferred[None]:
        """Start ``container``."""
        return self._run(f"container {container}", lambda c: c.api.start(container))

    def stop(self, container: str, timeout: float) -> Deferred[None]:
        """Stop ``container``."""
        return self._run(
            f"container {container}", lambda c: c.api.stop(container, timeout=round(timeout))
        )

    def restart(self, container: str, timeout: float) -> Deferred[None]:
        """Restart ``container``."""
        return self._run(
            f"container {container}", lambda c: c.api.restart(container, timeout=round(timeout))
        )

    def remove(self, container: str, force: bool) -> Deferred[None]:
        """Remove ``container`` (with its anonymous volumes)."""
        return self._run(
            f"container {container}",
            lambda c: c.api.remove_container(container, force=force, v=True),
        )

    def rename(self, container: str, name: str) -> Deferred[None]:
        """Rename ``container`` to ``name``."""
        return self._run(f"container {container}", lambda c: c.api.rename(container, name))

    def inspect(self, container: str) -> Deferred[ContainerInfo | None]:
        """The container, or None."""
        return self._run(f"container {container}", _thd_inspect, container)

    def containers(self, deployment: str) -> Deferred[list[ContainerInfo]]:
        """Every container labelled with ``deployment``."""
        return self._run("containers", _thd_containers, deployment)

    def logs(self, container: str, tail: int, timestamps: bool) -> Deferred[list[str]]:
        """The last ``tail`` lines of output."""
        return self._run(f"container {container}", _thd_logs, container, tail, timestamps)

    def follow(
        self, container: str, tail: int, timestamps: bool, deliver: Callable[[str], None]
    ) -> ILogStream:
        """Follow the container's output in the logs pool until stopped."""
        done: Deferred[None] = Deferred()
        stream = LogStream(done)
        if len(self._follows) >= MAX_FOLLOWS:
            done.errback(Unavailable(f"{MAX_FOLLOWS} log streams are open already; try later"))
            return stream
        self._follows.append(stream)

        def in_thread() -> None:
            with self._clients._thd_errors(f"container {container}"):
                client = self._clients._thd_client()
                _thd_follow(client, container, tail, timestamps, stream, self._deliver(deliver))

        def ended(result: object) -> None:
            if stream in self._follows:
                self._follows.remove(stream)
            if isinstance(result, Failure):
                done.errback(result)
            else:
                done.callback(None)

        deferToThreadPool(self.reactor, self.log_pool, in_thread).addBoth(ended)
        return stream

    def _deliver(self, deliver: Callable[[str], None]) -> Callable[[str], None]:
        """``deliver`` called on the reactor thread."""
        return lambda line: self.reactor.callFromThread(deliver, line)

    def stats(self, container: str) -> Deferred[ContainerStats]:
        """The container's resource use (one sample pair, about a second)."""
        return self._run(f"container {container}", _thd_stats, container)
