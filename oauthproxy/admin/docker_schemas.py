"""The JSON of Docker services and their ports: request schemas and responses.

Shared by :mod:`oauthproxy.admin.docker_services`, :mod:`~oauthproxy.admin.docker_containers`
and :mod:`~oauthproxy.admin.service_ports`.  Request schemas check shapes and bounds;
:mod:`oauthproxy.admin.docker_inputs` turns a validated body into the model.  Port
tokens are write-only: responses say whether a port has one (``token``), never its
value or digest.
"""

from __future__ import annotations

from typing import Any

from oauthproxy.admin.schema import (
    Schema,
    array,
    boolean,
    integer,
    nullable,
    number,
    obj,
    string,
)
from oauthproxy.containers.rules import (
    DOCKER_NAME_PATTERN,
    NAME_PATTERN,
    USER_PATTERN,
)
from oauthproxy.containers.runtime import ContainerInfo
from oauthproxy.containers.values import format_size
from oauthproxy.model import DockerService, ServicePort

SERVICE_NAME = string(
    min_length=1,
    max_length=63,
    pattern=NAME_PATTERN,
    description="a DNS label (lower-case letters, digits, '-'); also the container's name",
    example="my-app",
)
PORT_NAME = string(
    min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", example="http"
)
_PORT_NUMBER = integer(minimum=1, maximum=65535)
_TEXT_LIST = array(string(max_length=4096), max_items=256)
_STRING_MAP: Schema = {
    "type": "object",
    "additionalProperties": string(max_length=32768),
    "maxProperties": 256,
}
_SECONDS = {"type": "number", "minimum": 0, "maximum": 86400}

PORT_SETTABLE: dict[str, Schema] = {
    "host": integer(
        minimum=0, maximum=65535, description="host port; 0 = pick one from the automatic ranges"
    ),
    "container": _PORT_NUMBER,
    "bind": string(
        max_length=64, description="address to listen on (default 127.0.0.1)", example="0.0.0.0"
    ),
    "protocol": string(enum=("tcp", "udp")),
    "description": string(max_length=500),
    "allowed_networks": array(
        string(max_length=64),
        max_items=64,
        description="client networks (CIDRs) allowed to connect; the daemon checks them",
    ),
    "source_token": nullable(
        string(
            min_length=16,
            max_length=256,
            pattern=r"^[\x21-\x7e]+$",
            description="access token clients must send (X-Port-Token or Authorization: Bearer);"
            " makes it an HTTP port served by the daemon; stored hashed; null removes it",
        )
    ),
}
PORT_CREATE = obj({"name": PORT_NAME, **PORT_SETTABLE})
PORT_UPDATE = obj(PORT_SETTABLE, description="the fields to change; the others stay")
PORT: Schema = obj(
    {
        "name": string(max_length=32),
        "host": _PORT_NUMBER,
        "container": _PORT_NUMBER,
        "bind": string(max_length=64),
        "protocol": string(enum=("tcp", "udp")),
        "description": string(max_length=500),
        "allowed_networks": array(string(max_length=64), max_items=64),
        "token": boolean(description="whether clients must present an access token"),
        "served_by": string(
            enum=("docker", "daemon", "container"),
            description="docker: published by Docker; daemon: the daemon's guarded listener; "
            "container: the container binds it itself (host networking)",
        ),
    },
    required=(
        "name",
        "host",
        "container",
        "bind",
        "protocol",
        "description",
        "allowed_networks",
        "token",
        "served_by",
    ),
)

_VOLUME = obj(
    {
        "source": string(
            min_length=1,
            max_length=4096,
            description="a named volume, or an absolute host path under "
            "OAUTHPROXY_DOCKER_MOUNT_DIRS",
        ),
        "target": string(min_length=1, max_length=4096, description="absolute container path"),
        "read_only": boolean(),
    },
    required=("source", "target"),
)
_HEALTHCHECK = obj(
    {
        "test": array(
            string(max_length=4096),
            max_items=64,
            description="command run in the container (exec form, no shell)",
        ),
        "interval": _SECONDS,
        "timeout": _SECONDS,
        "retries": integer(minimum=0, maximum=100),
        "start_period": _SECONDS,
    },
    required=("test",),
)
SERVICE_SETTABLE: dict[str, Schema] = {
    "image": string(max_length=255, description="image reference", example="nginx:alpine"),
    "dockerfile_path": string(
        max_length=4096, description="Dockerfile to build, relative to build_context"
    ),
    "build_context": string(
        max_length=4096, description="build directory under OAUTHPROXY_DOCKER_BUILD_DIRS"
    ),
    "build_args": _STRING_MAP,
    "command": nullable(_TEXT_LIST),
    "entrypoint": nullable(_TEXT_LIST),
    "environment": _STRING_MAP,
    "volumes": array(_VOLUME, max_items=64),
    "network_mode": string(enum=("bridge", "host", "none")),
    "networks": array(string(max_length=63, pattern=DOCKER_NAME_PATTERN), max_items=16),
    "labels": _STRING_MAP,
    "memory_limit": string(
        max_length=32, description="e.g. 512m, 1g (default OAUTHPROXY_DOCKER_MEMORY)"
    ),
    "cpu_limit": {"type": "number", "exclusiveMinimum": 0, "maximum": 1024},
    "restart_policy": string(enum=("no", "always", "unless-stopped", "on-failure")),
    "restart_max_retries": integer(minimum=0, maximum=1000),
    "healthcheck": nullable(_HEALTHCHECK),
    "user": nullable(string(max_length=65, pattern=USER_PATTERN)),
    "read_only": boolean(description="read-only root filesystem"),
    "cap_drop": array(string(max_length=40), max_items=64),
    "cap_add": array(string(max_length=40), max_items=64),
    "internal_port": nullable(_PORT_NUMBER),
    "privileged": boolean(description="never allowed: only false is accepted"),
}
SERVICE_CREATE = obj(
    {
        "name": SERVICE_NAME,
        **SERVICE_SETTABLE,
        "ports": array(PORT_CREATE, max_items=64),
        "start": boolean(default=True, description="start the container (default true)"),
        "auto_proxy": boolean(
            default=False, description="also create the proxy <name>.<BASE_DOMAIN>"
        ),
    },
    required=("name",),
)
SERVICE_UPDATE = obj(
    {**SERVICE_SETTABLE, "ports": array(PORT_CREATE, max_items=64)},
    description="the fields to change; the others stay.  The container is recreated with "
    "the result, and the old one restored if the new one does not start.",
)
_STRINGS_OUT = array(string(max_length=32768), max_items=256)
_MAP_OUT: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
SERVICE_FIELDS: dict[str, Schema] = {
    "name": string(max_length=63),
    "image": string(max_length=255),
    "build": nullable({"type": "object", "additionalProperties": True}),
    "command": nullable(_STRINGS_OUT),
    "entrypoint": nullable(_STRINGS_OUT),
    "environment": _MAP_OUT,
    "volumes": array({"type": "object", "additionalProperties": True}, max_items=64),
    "network_mode": string(enum=("bridge", "host", "none")),
    "networks": array(string(max_length=63), max_items=16),
    "labels": _MAP_OUT,
    "memory_limit": string(max_length=32),
    "cpu_limit": number(minimum=0),
    "restart_policy": string(enum=("no", "always", "unless-stopped", "on-failure")),
    "restart_max_retries": integer(minimum=0),
    "healthcheck": nullable({"type": "object", "additionalProperties": True}),
    "user": nullable(string(max_length=65)),
    "read_only": boolean(),
    "cap_drop": array(string(max_length=40), max_items=64),
    "cap_add": array(string(max_length=40), max_items=64),
    "internal_port": nullable(_PORT_NUMBER),
    "ports": array(PORT, max_items=64),
    "desired_state": string(enum=("running", "stopped")),
    "phase": string(
        enum=("creating", "ready", "updating", "deleting"),
        description="ready, or the operation in flight",
    ),
    "generation": integer(minimum=1),
    "container_id": nullable(string(max_length=128)),
    "address": nullable(
        string(max_length=128, description="where proxies and routes reach internal_port")
    ),
    "proxies": array(string(max_length=253), max_items=1000),
    "owner": string(max_length=128),
    "created_at": number(minimum=0, description="POSIX seconds"),
    "updated_at": number(minimum=0, description="POSIX seconds"),
    "state": string(
        max_length=32,
        description="the container's state: running, exited, created, restarting, paused, "
        "dead, or missing (no container)",
    ),
    "health": nullable(string(max_length=32, description="starting, healthy or unhealthy")),
    "exit_code": nullable(integer()),
    "started_at": nullable(number(description="when the container last started (POSIX seconds)")),
}
SERVICE = obj(SERVICE_FIELDS, required=tuple(SERVICE_FIELDS))


def served_by(service: DockerService, port: ServicePort) -> str:
    """Who listens on a port: the daemon (guarded), the container itself, or Docker."""
    if port.guarded:
        return "daemon"
    return "container" if service.network_mode == "host" else "docker"


def port_json(service: DockerService, port: ServicePort) -> dict[str, Any]:
    """The API's view of a port (whether it has a token, never the token)."""
    return {
        "name": port.name,
        "host": port.host,
        "container": port.container,
        "bind": port.bind,
        "protocol": port.protocol,
        "description": port.description,
        "allowed_networks": list(port.allowed_networks),
        "token": port.token_hash is not None,
        "served_by": served_by(service, port),
    }


def service_json(service: DockerService, info: ContainerInfo | None) -> dict[str, Any]:
    """The API's view of a service and, from ``info``, of its container now."""
    build = service.build
    check = service.healthcheck
    return {
        "name": service.name,
        "image": service.image,
        "build": None
        if build is None
        else {"context": build.context, "dockerfile": build.dockerfile, "args": dict(build.args)},
        "command": None if service.command is None else list(service.command),
        "entrypoint": None if service.entrypoint is None else list(service.entrypoint),
        "environment": dict(service.environment),
        "volumes": [
            {"source": v.source, "target": v.target, "read_only": v.read_only}
            for v in service.volumes
        ],
        "network_mode": service.network_mode,
        "networks": list(service.networks),
        "labels": dict(service.labels),
        "memory_limit": format_size(service.memory_limit),
        "cpu_limit": service.cpu_limit,
        "restart_policy": service.restart_policy,
        "restart_max_retries": service.restart_max_retries,
        "healthcheck": None
        if check is None
        else {
            "test": list(check.test),
            "interval": check.interval,
            "timeout": check.timeout,
            "retries": check.retries,
            "start_period": check.start_period,
        },
        "user": service.user,
        "read_only": service.read_only,
        "cap_drop": list(service.cap_drop),
        "cap_add": list(service.cap_add),
        "internal_port": service.internal_port,
        "ports": [port_json(service, port) for port in service.ports],
        "desired_state": service.desired_state,
        "phase": service.phase,
        "generation": service.generation,
        "container_id": service.container_id,
        "address": service.address,
        "proxies": list(service.proxies),
        "owner": service.owner,
        "created_at": service.created_at,
        "updated_at": service.updated_at,
        "state": "missing" if info is None else info.state,
        "health": None if info is None else info.health,
        "exit_code": None if info is None or info.running else info.exit_code,
        "started_at": None if info is None else info.started_at,
    }
