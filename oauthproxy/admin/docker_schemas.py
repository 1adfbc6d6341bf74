"""The JSON of Docker services and their ports: request schemas, conversions, responses.

Shared by :mod:`oauthproxy.admin.docker_services` and :mod:`oauthproxy.admin.service_ports`.
Request schemas check shapes and bounds; :func:`service_from_body`,
:func:`service_changes` and :func:`port_from_body` turn a validated body into the
model (parsing sizes, CIDRs, bind addresses, hashing port tokens), raising
InvalidInput with the body's JSON pointer.  The security rules proper live in
:class:`~oauthproxy.containers.rules.DockerRules`.  Port tokens are write-only:
responses say whether a port has one (``token``), never its value or digest.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Any

from attrs import evolve

from oauthproxy.admin.credentials import hash_token
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
from oauthproxy.containers.policy import bind_address
from oauthproxy.containers.rules import (
    DOCKER_NAME_PATTERN,
    ENV_NAME_PATTERN,
    NAME_PATTERN,
    USER_PATTERN,
    DockerRules,
    build_tag,
)
from oauthproxy.containers.runtime import ContainerInfo
from oauthproxy.containers.values import capability, format_size, image_reference, parse_size
from oauthproxy.errors import InvalidInput
from oauthproxy.model import DockerService, HealthCheck, ImageBuild, ServicePort, VolumeMount

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
    "started_at": nullable(string(max_length=64)),
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


def _pairs(value: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """A JSON object of strings as sorted pairs."""
    return tuple(sorted(value.items()))


def _environment(value: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Environment variables: POSIX names, no NUL in values."""
    for name, text in value.items():
        if not re.match(ENV_NAME_PATTERN, name):
            raise InvalidInput(f"{name[:80]!r} is not a variable name", field="/environment")
        if "\0" in text:
            raise InvalidInput(f"{name} contains a NUL character", field=f"/environment/{name}")
    return _pairs(value)


def _words(value: list[str] | None, where: str) -> tuple[str, ...] | None:
    """A command or entrypoint in exec form (no NUL characters)."""
    if value is None:
        return None
    for index, word in enumerate(value):
        if "\0" in word:
            raise InvalidInput("contains a NUL character", field=f"{where}/{index}")
    return tuple(value)


def _capabilities(value: list[str], where: str) -> tuple[str, ...]:
    """Capability names, normalised."""
    out = []
    for index, item in enumerate(value):
        try:
            out.append(capability(item))
        except ValueError as e:
            raise InvalidInput(str(e), field=f"{where}/{index}") from None
    return tuple(dict.fromkeys(out))


def _networks(value: list[str], where: str) -> tuple[str, ...]:
    """CIDRs, normalised."""
    out = []
    for index, item in enumerate(value):
        try:
            out.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError:
            raise InvalidInput(
                f"{item[:64]!r} is not a network", field=f"{where}/{index}"
            ) from None
    return tuple(dict.fromkeys(out))


def port_from_body(
    body: Mapping[str, Any], where: str, existing: ServicePort | None = None
) -> ServicePort:
    """A port from a port object of a request (onto ``existing`` for an update)."""
    if existing is None:
        host = body.get("host")
        container = body.get("container", host)
        if not container:
            raise InvalidInput(
                "give the container port (or an explicit host port)", field=f"{where}/container"
            )
        host = 0 if host is None else host
        port = ServicePort(name=body.get("name") or str(host or container), host=host,
                           container=container)  # fmt: skip
    else:
        port = evolve(
            existing,
            host=body.get("host", existing.host),
            container=body.get("container", existing.container),
        )
    changes: dict[str, Any] = {}
    if "bind" in body:
        try:
            changes["bind"] = bind_address(body["bind"])
        except ValueError as e:
            raise InvalidInput(str(e), field=f"{where}/bind") from None
    if "protocol" in body:
        changes["protocol"] = body["protocol"]
    if "description" in body:
        changes["description"] = body["description"]
    if "allowed_networks" in body:
        changes["allowed_networks"] = _networks(
            body["allowed_networks"], f"{where}/allowed_networks"
        )
    if "source_token" in body:
        token = body["source_token"]
        changes["token_hash"] = None if token is None else hash_token(token)
    return evolve(port, **changes)


def _ports(
    value: list[Mapping[str, Any]], current: DockerService | None
) -> tuple[ServicePort, ...]:
    """Ports from a request; a port named like a current one keeps what the body leaves out."""
    known = {} if current is None else {port.name: port for port in current.ports}
    out = []
    for index, body in enumerate(value):
        existing = known.get(body.get("name", ""))
        out.append(port_from_body(body, f"/ports/{index}", existing))
    return tuple(out)


def _build(body: Mapping[str, Any], name: str) -> tuple[str, ImageBuild | None]:
    """The image (or build tag) and the build, from ``image`` or ``dockerfile_path``."""
    image = body.get("image") or None
    dockerfile = body.get("dockerfile_path") or None
    if image and dockerfile:
        raise InvalidInput("give image or dockerfile_path, not both", field="/dockerfile_path")
    if dockerfile:
        context = body.get("build_context")
        if not context:
            raise InvalidInput("a build needs build_context", field="/build_context")
        context = os.path.normpath(context)
        if os.path.isabs(dockerfile):
            dockerfile = os.path.relpath(os.path.normpath(dockerfile), context)
        build = ImageBuild(context, dockerfile, _pairs(body.get("build_args", {})))
        return build_tag(name), build
    if body.get("build_context") or body.get("build_args"):
        raise InvalidInput(
            "build_context and build_args need dockerfile_path", field="/dockerfile_path"
        )
    if not image:
        raise InvalidInput("give image or dockerfile_path", field="/image")
    try:
        return image_reference(image), None
    except ValueError as e:
        raise InvalidInput(str(e), field="/image") from None


def _settable(body: Mapping[str, Any]) -> dict[str, Any]:
    """The model values of the settable fields given in ``body`` (not image or ports)."""
    changes: dict[str, Any] = {}
    if body.get("privileged"):
        raise InvalidInput(
            "privileged containers are never allowed (the Docker socket is root on the host)",
            field="/privileged",
        )
    for name, value in body.items():
        where = f"/{name}"
        if name in ("command", "entrypoint"):
            changes[name] = _words(value, where)
        elif name == "environment":
            changes[name] = _environment(value)
        elif name == "labels":
            changes[name] = _pairs(value)
        elif name == "volumes":
            changes[name] = tuple(
                VolumeMount(
                    os.path.normpath(v["source"]) if v["source"].startswith("/") else v["source"],
                    v["target"],
                    v.get("read_only", False),
                )
                for v in value
            )
        elif name == "networks":
            changes[name] = tuple(dict.fromkeys(value))
        elif name == "memory_limit":
            try:
                changes[name] = parse_size(value)
            except ValueError as e:
                raise InvalidInput(str(e), field=where) from None
        elif name == "cpu_limit":
            changes[name] = float(value)
        elif name == "healthcheck":
            changes[name] = None if value is None else _healthcheck(value)
        elif name in ("cap_add", "cap_drop"):
            changes[name] = _capabilities(value, where)
        elif name in (
            "network_mode",
            "restart_policy",
            "restart_max_retries",
            "user",
            "read_only",
            "internal_port",
        ):
            changes[name] = value
    return changes


def _healthcheck(value: Mapping[str, Any]) -> HealthCheck:
    """A healthcheck from its request object."""
    if not value["test"]:
        raise InvalidInput("the healthcheck needs a command", field="/healthcheck/test")
    return HealthCheck(
        test=tuple(value["test"]),
        interval=float(value.get("interval", 30.0)),
        timeout=float(value.get("timeout", 10.0)),
        retries=int(value.get("retries", 3)),
        start_period=float(value.get("start_period", 0.0)),
    )


def service_from_body(
    body: Mapping[str, Any], rules: DockerRules, owner: str, now: float
) -> DockerService:
    """A new service's record from a create request (defaults for limits not given)."""
    name = body["name"]
    image, build = _build(body, name)
    service = DockerService(
        name=name,
        image=image,
        build=build,
        ports=_ports(body.get("ports", []), None),
        desired_state="running" if body.get("start", True) else "stopped",
        owner=owner,
        created_at=now,
        updated_at=now,
    )
    service = evolve(service, **_settable(body))
    return rules.with_defaults(service, "memory_limit" in body, "cpu_limit" in body)


def service_changes(current: DockerService, body: Mapping[str, Any]) -> DockerService:
    """``current`` with the fields an update request gives."""
    changes = _settable(body)
    if {"image", "dockerfile_path", "build_context", "build_args"} & set(body):
        source = {
            "image": body.get("image"),
            "dockerfile_path": body.get("dockerfile_path"),
            "build_context": body.get("build_context"),
            "build_args": body.get("build_args", {}),
        }
        if "image" not in body and current.build is not None and "dockerfile_path" not in body:
            source["dockerfile_path"] = current.build.dockerfile
            source["build_context"] = body.get("build_context", current.build.context)
        changes["image"], changes["build"] = _build(source, current.name)
    if "ports" in body:
        changes["ports"] = _ports(body["ports"], current)
    return evolve(current, **changes)
