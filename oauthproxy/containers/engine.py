"""The Docker engine through the docker SDK, kept off the reactor thread.

The ``_thd_*`` functions block (HTTP over the Docker socket) and run only in the
runtime's own :class:`~twisted.python.threadpool.ThreadPool`; log follows, which
block for as long as they last, have a second pool of their own so they can never
starve lifecycle calls.  :class:`DockerEngine` is the reactor-side face
(:class:`~oauthproxy.containers.runtime.IContainerRuntime`): each method is one
``deferToThreadPool`` call.

Docker is reached at ``DOCKER_HOST`` with ``DOCKER_API_VERSION`` ("auto"
negotiates), over TLS with the certificates in ``DOCKER_CERT_PATH`` when set; one
client per thread (the SDK's HTTP session is not shared between threads).  Errors
become :mod:`oauthproxy.errors` at this boundary: a socket that is missing or
refuses, or a call silent for ``OAUTHPROXY_DOCKER_TIMEOUT`` seconds, is
:class:`~oauthproxy.errors.Unavailable` with one sentence naming ``DOCKER_HOST``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import docker
import docker.errors
import requests
from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from oauthproxy.containers.runconfig import (
    DEPLOYMENT_LABEL,
    GENERATION_LABEL,
    SERVICE_LABEL,
    create_arguments,
)
from oauthproxy.containers.runtime import (
    ContainerInfo,
    DockerRefused,
    IContainerRuntime,
    ILogStream,
    ImageUnavailable,
)
from oauthproxy.containers.stats import ContainerStats, container_stats
from oauthproxy.errors import NotFound, OAuthProxyError, Unavailable
from oauthproxy.model import DockerService

#: concurrent log follows; more are refused (each holds a thread while it lasts)
MAX_FOLLOWS = 16
#: longest Docker error text echoed to API clients
_MAX_DETAIL = 300


def _reason(error: BaseException) -> str:
    """A few words on why a connection to Docker failed."""
    seen: set[int] = set()
    stack: list[Any] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, FileNotFoundError):
            return "no Docker socket there"
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, PermissionError):
            return "permission denied (is the daemon's user allowed to use Docker?)"
        if isinstance(current, requests.exceptions.Timeout | TimeoutError):
            return "no answer in time"
        stack.extend([current.__cause__, current.__context__])
        stack.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
    return str(error).splitlines()[0][:_MAX_DETAIL] if str(error) else type(error).__name__


def _explanation(error: docker.errors.APIError) -> str:
    """Docker's own words for a refusal, bounded."""
    text = error.explanation
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = str(text or error).strip()
    return text[:_MAX_DETAIL]


@define
class _Clients:
    """One docker SDK client per thread, all closed at shutdown."""

    host: str
    version: str
    timeout: float
    cert_path: str | None = None
    _local: threading.local = field(factory=threading.local)
    _all: list[Any] = field(factory=list)
    _lock: threading.Lock = field(factory=threading.Lock)

    def _thd_client(self) -> Any:
        """This thread's client, connected (and the API version negotiated) on first use."""
        client = getattr(self._local, "client", None)
        if client is None:
            tls: Any = False
            if self.cert_path is not None:
                tls = docker.tls.TLSConfig(
                    client_cert=(
                        os.path.join(self.cert_path, "cert.pem"),
                        os.path.join(self.cert_path, "key.pem"),
                    ),
                    ca_cert=os.path.join(self.cert_path, "ca.pem"),
                    verify=True,
                )
            client = docker.DockerClient(
                base_url=self.host, version=self.version, timeout=self.timeout, tls=tls
            )
            self._local.client = client
            with self._lock:
                self._all.append(client)
        return client

    def _thd_forget(self) -> None:
        """Drop this thread's client (after a connection failure)."""
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            with self._lock:
                if client in self._all:
                    self._all.remove(client)
            client.close()

    def close_all(self) -> None:
        """Close every client (the pools have stopped)."""
        with self._lock:
            clients, self._all = self._all, []
        for client in clients:
            client.close()

    @contextmanager
    def _thd_errors(self, what: str) -> Iterator[None]:
        """Turn docker SDK and transport errors into oauthproxy errors."""
        try:
            yield
        except OAuthProxyError:
            raise
        except docker.errors.ImageNotFound as e:
            raise ImageUnavailable(_explanation(e), field="/image") from None
        except docker.errors.NotFound as e:
            raise NotFound(f"{what}: {_explanation(e)}") from None
        except docker.errors.APIError as e:
            raise DockerRefused(f"{what}: Docker refused: {_explanation(e)}") from None
        except (requests.exceptions.RequestException, docker.errors.DockerException, OSError) as e:
            self._thd_forget()
            raise Unavailable(
                f"Docker is not reachable at {self.host} (DOCKER_HOST): {_reason(e)}"
            ) from None


def _info(data: dict[str, Any]) -> ContainerInfo:
    """A :class:`ContainerInfo` from ``inspect`` output or a ``containers`` listing entry."""
    config = data.get("Config") or {}
    labels = config.get("Labels") or data.get("Labels") or {}
    state = data.get("State")
    health = None
    exit_code = None
    started = None
    restarts = data.get("RestartCount")
    if isinstance(state, dict):
        status = str(state.get("Status", "unknown"))
        health = (state.get("Health") or {}).get("Status")
        exit_code = state.get("ExitCode")
        started = state.get("StartedAt")
    else:
        status = str(state or "unknown")
        text = str(data.get("Status", ""))
        for verdict in ("unhealthy", "healthy", "health: starting"):
            if f"({verdict})" in text:
                health = verdict.removeprefix("health: ")
                break
    networks = (data.get("NetworkSettings") or {}).get("Networks") or {}
    addresses = tuple(
        sorted(
            (name, str(net.get("IPAddress")))
            for name, net in networks.items()
            if isinstance(net, dict) and net.get("IPAddress")
        )
    )
    names = data.get("Names") or [data.get("Name", "")]
    generation = labels.get(GENERATION_LABEL)
    return ContainerInfo(
        id=str(data.get("Id", "")),
        name=str(names[0]).lstrip("/"),
        state=status,
        service=labels.get(SERVICE_LABEL),
        deployment=labels.get(DEPLOYMENT_LABEL),
        generation=int(generation) if generation and generation.isdigit() else None,
        health=health,
        exit_code=exit_code if isinstance(exit_code, int) else None,
        started_at=started if isinstance(started, str) else None,
        addresses=addresses,
        image=str(config.get("Image") or data.get("Image") or ""),
        restarts=restarts if isinstance(restarts, int) else 0,
    )


@implementer(ILogStream)
@define(eq=False)
class _LogStream:
    """A follow running in the logs pool; ``stop`` closes its HTTP stream."""

    done: Deferred[None]
    _response: list[Any] = field(factory=list)
    _stopped: bool = False
    _lock: threading.Lock = field(factory=threading.Lock)

    def stop(self) -> None:
        """Close the stream; the thread's read ends and ``done`` fires."""
        with self._lock:
            self._stopped = True
            responses = list(self._response)
        for response in responses:
            response.close()

    def _thd_attach(self, response: Any) -> bool:
        """Remember the stream to close; False when stop came first."""
        with self._lock:
            if self._stopped:
                return False
            self._response.append(response)
            return True


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
    _clients: _Clients = field(init=False)
    _follows: list[_LogStream] = field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        """The per-thread clients."""
        self._clients = _Clients(self.host, self.version, self.timeout, self.cert_path)

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
        stream = _LogStream(done)
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


def _thd_ping(client: Any) -> None:
    """``GET /_ping``."""
    client.ping()


def _thd_ensure_network(client: Any, name: str) -> None:
    """Create a bridge network unless one with that exact name exists."""
    if not any(n.name == name for n in client.networks.list(names=[name])):
        client.networks.create(name, driver="bridge", check_duplicate=True)


def _thd_prepare_image(client: Any, service: DockerService, may_pull: bool) -> None:
    """Build (``service.build``), or find, or pull the image."""
    build = service.build
    if build is not None:
        try:
            client.images.build(
                path=build.context,
                dockerfile=build.dockerfile,
                tag=service.image,
                buildargs=dict(build.args),
                rm=True,
                forcerm=True,
                pull=False,
            )
        except docker.errors.BuildError as e:
            raise ImageUnavailable(
                f"building {service.image} failed: {str(e.msg)[:_MAX_DETAIL]}",
                field="/dockerfile_path",
            ) from None
        return
    try:
        client.images.get(service.image)
        return
    except docker.errors.ImageNotFound:
        pass
    if not may_pull:
        raise ImageUnavailable(
            f"image {service.image} is not on the Docker host, and pulling is off "
            "(list allowed images in OAUTHPROXY_DOCKER_IMAGES to pull them)",
            field="/image",
        )
    reference, tag = service.image, None
    if "@" not in reference:
        reference, _, tag = reference.rpartition(":")
    try:
        client.api.pull(reference, tag=tag)
        # a pull can fail inside its progress stream without an error status
        client.images.get(service.image)
    except docker.errors.ImageNotFound:
        raise ImageUnavailable(
            f"image {service.image} is not on the Docker host and the pull did not bring it",
            field="/image",
        ) from None
    except docker.errors.APIError as e:
        raise ImageUnavailable(
            f"image {service.image} is not on the Docker host and pulling it failed: "
            f"{_explanation(e)}",
            field="/image",
        ) from None


def _thd_create(client: Any, arguments: dict[str, Any], networks: tuple[str, ...]) -> str:
    """Create the container and join its extra networks; its id (removed again on failure)."""
    container = client.containers.create(**arguments)
    try:
        for name in networks:
            client.networks.get(name).connect(container)
    except BaseException:
        container.remove(force=True)
        raise
    return str(container.id)


def _thd_inspect(client: Any, container: str) -> ContainerInfo | None:
    """The container's inspect output as a ContainerInfo, None if there is none."""
    try:
        return _info(client.api.inspect_container(container))
    except docker.errors.NotFound:
        return None


def _thd_containers(client: Any, deployment: str) -> list[ContainerInfo]:
    """The deployment's containers, from one listing call."""
    listed = client.api.containers(all=True, filters={"label": f"{DEPLOYMENT_LABEL}={deployment}"})
    return sorted((_info(entry) for entry in listed), key=lambda info: info.name)


def _lines(data: bytes) -> list[str]:
    """Output bytes as lines (undecodable bytes replaced)."""
    return data.decode("utf-8", "replace").splitlines()


def _thd_logs(client: Any, container: str, tail: int, timestamps: bool) -> list[str]:
    """The last ``tail`` lines of stdout and stderr."""
    data = client.api.logs(container, stdout=True, stderr=True, tail=tail, timestamps=timestamps)
    return _lines(data)


def _thd_follow(
    client: Any,
    container: str,
    tail: int,
    timestamps: bool,
    stream: _LogStream,
    deliver: Callable[[str], None],
) -> None:
    """Read the container's output until the stream is closed or the container stops."""
    response = client.api.logs(
        container, stdout=True, stderr=True, stream=True, follow=True, tail=tail,
        timestamps=timestamps,
    )  # fmt: skip
    if not stream._thd_attach(response):
        response.close()
        return
    partial = b""
    try:
        for chunk in response:
            partial += chunk
            *complete, partial = partial.split(b"\n")
            for line in complete:
                deliver(line.decode("utf-8", "replace"))
    except (requests.exceptions.RequestException, OSError, AttributeError, ValueError):
        # closing the stream from the reactor thread ends the read this way
        if not stream._stopped:
            raise
    finally:
        response.close()
    if partial:
        deliver(partial.decode("utf-8", "replace"))


def _thd_stats(client: Any, container: str) -> ContainerStats:
    """One stats sample, summarised."""
    return container_stats(client.api.stats(container, stream=False))
