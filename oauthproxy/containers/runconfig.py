"""A service record as the arguments of Docker's container create call (pure).

:func:`create_arguments` is the one place that says how a
:class:`~oauthproxy.model.DockerService` becomes a container.  What the record does
not offer cannot be asked for, and some settings are fixed for every container:

- never privileged, no devices, no host PID/IPC/UTS namespaces (none are fields);
- ``no-new-privileges`` always on, an init process (``docker-init``) reaping zombies
  and forwarding signals (stop is quick), container logs bounded on disk;
- memory and CPU limits always set (the record always carries them);
- the daemon's labels: deployment, service name and generation, by which the
  reconciler finds its containers (and only its own).

Ports without access control are published by Docker (bridge networking only:
with host networking the container binds its ports itself); guarded ports are
not published: the daemon's own listener relays to them.
"""

from __future__ import annotations

from typing import Any

from oauthproxy.containers.rules import LABEL_PREFIX
from oauthproxy.containers.runtime import ContainerInfo
from oauthproxy.model import DockerService, HealthCheck

DEPLOYMENT_LABEL = LABEL_PREFIX + "deployment"
SERVICE_LABEL = LABEL_PREFIX + "service"
GENERATION_LABEL = LABEL_PREFIX + "generation"
#: container logs kept by Docker per container (json-file rotation)
LOG_OPTIONS = {"max-size": "10m", "max-file": "3"}
_NANO = 1_000_000_000


def labels(service: DockerService, deployment: str) -> dict[str, str]:
    """The user's labels plus the daemon's."""
    return {
        **dict(service.labels),
        DEPLOYMENT_LABEL: deployment,
        SERVICE_LABEL: service.name,
        GENERATION_LABEL: str(service.generation),
    }


def healthcheck(check: HealthCheck) -> dict[str, Any]:
    """The engine's healthcheck object (durations in nanoseconds, exec form)."""
    return {
        "test": ["CMD", *check.test],
        "interval": int(check.interval * _NANO),
        "timeout": int(check.timeout * _NANO),
        "retries": check.retries,
        "start_period": int(check.start_period * _NANO),
    }


def published_ports(service: DockerService) -> dict[str, list[tuple[str, int]]]:
    """``{"80/tcp": [("127.0.0.1", 8080)]}`` for the ports Docker publishes."""
    if service.network_mode != "bridge":
        return {}
    published: dict[str, list[tuple[str, int]]] = {}
    for port in service.ports:
        if not port.guarded:
            key = f"{port.container}/{port.protocol}"
            published.setdefault(key, []).append((port.bind, port.host))
    return published


def create_arguments(service: DockerService, deployment: str, network: str) -> dict[str, Any]:
    """Keyword arguments of ``DockerClient.containers.create`` for ``service``.

    ``network`` is the default bridge network (``OAUTHPROXY_DOCKER_NETWORK``); the
    service's other networks are joined after creation.
    """
    arguments: dict[str, Any] = {
        "image": service.image,
        "name": service.name,
        "labels": labels(service, deployment),
        "environment": dict(service.environment),
        "mem_limit": service.memory_limit,
        "nano_cpus": round(service.cpu_limit * _NANO),
        "restart_policy": {"Name": service.restart_policy}
        if service.restart_policy != "on-failure"
        else {"Name": "on-failure", "MaximumRetryCount": service.restart_max_retries},
        "security_opt": ["no-new-privileges"],
        "privileged": False,
        "init": True,
        "read_only": service.read_only,
        "cap_drop": list(service.cap_drop),
        "cap_add": list(service.cap_add),
        "log_config": {"Type": "json-file", "Config": dict(LOG_OPTIONS)},
        "mounts": [
            {
                "Type": "bind" if mount.is_bind else "volume",
                "Source": mount.source,
                "Target": mount.target,
                "ReadOnly": mount.read_only,
            }
            for mount in service.volumes
        ],
        "ports": published_ports(service),
    }
    if service.network_mode == "bridge":
        arguments["network"] = network
    else:
        arguments["network_mode"] = service.network_mode
    if service.command is not None:
        arguments["command"] = list(service.command)
    if service.entrypoint is not None:
        arguments["entrypoint"] = list(service.entrypoint)
    if service.user is not None:
        arguments["user"] = service.user
    if service.healthcheck is not None:
        arguments["healthcheck"] = healthcheck(service.healthcheck)
    return arguments


def container_name(service: str) -> str:
    """The container of a service is named after it."""
    return service


def previous_name(service: str, generation: int) -> str:
    """What the old container is renamed to while an update replaces it."""
    return f"{service}-previous-{generation}"


def container_ip(service: DockerService, info: ContainerInfo | None, network: str) -> str | None:
    """Where the daemon reaches the container: loopback with host networking, else its IP
    on the default network (or the first network it has an address on); None if unknown."""
    if service.network_mode == "host":
        return "127.0.0.1"
    if info is None or not info.running:
        return None
    addresses = dict(info.addresses)
    if network in addresses:
        return addresses[network]
    return info.addresses[0][1] if info.addresses else None
