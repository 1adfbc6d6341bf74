"""The blocking docker SDK calls behind :class:`~oauthproxy.containers.engine.DockerEngine`.

Everything here blocks (HTTP over the Docker socket) and runs only in the engine's
thread pools: one SDK client per thread (:class:`DockerClients`; the SDK's HTTP
session is not shared between threads), the translation of SDK and transport errors
into :mod:`oauthproxy.errors`, and one ``_thd_*`` function per engine call.
:func:`container_info` reads Docker's inspect and listing output.
"""

from __future__ import annotations

import datetime
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
from zope.interface import implementer

from oauthproxy.containers.runconfig import DEPLOYMENT_LABEL, GENERATION_LABEL, SERVICE_LABEL
from oauthproxy.containers.runtime import ContainerInfo, DockerRefused, ILogStream, ImageUnavailable
from oauthproxy.containers.stats import ContainerStats, container_stats
from oauthproxy.errors import NotFound, OAuthProxyError, Unavailable
from oauthproxy.model import DockerService

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
class DockerClients:
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


def docker_time(text: object) -> float | None:
    """Docker's RFC 3339 time (nanoseconds, ``Z``) as POSIX seconds; None for its zero
    time (never started) or anything unreadable."""
    if not isinstance(text, str) or text.startswith("0001-"):
        return None
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def container_info(data: dict[str, Any]) -> ContainerInfo:
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
        started_at=docker_time(started),
        addresses=addresses,
        image=str(config.get("Image") or data.get("Image") or ""),
        restarts=restarts if isinstance(restarts, int) else 0,
    )


@implementer(ILogStream)
@define(eq=False)
class LogStream:
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
        return container_info(client.api.inspect_container(container))
    except docker.errors.NotFound:
        return None


def _thd_containers(client: Any, deployment: str) -> list[ContainerInfo]:
    """The deployment's containers, from one listing call."""
    listed = client.api.containers(all=True, filters={"label": f"{DEPLOYMENT_LABEL}={deployment}"})
    return sorted((container_info(entry) for entry in listed), key=lambda info: info.name)


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
    stream: LogStream,
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
