"""Request bodies of Docker services and ports onto the model (validated bodies only).

:func:`service_from_body`, :func:`service_changes` and :func:`port_from_body` turn a
body that passed its schema (:mod:`oauthproxy.admin.docker_schemas`) into model values:
sizes parsed, CIDRs and bind addresses normalised, port tokens hashed, maps as sorted
pairs.  What cannot be read raises InvalidInput with the body's JSON pointer.  The
security rules proper live in :class:`~oauthproxy.containers.rules.DockerRules`.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Any

from attrs import evolve

from oauthproxy.admin.credentials import hash_token
from oauthproxy.containers.policy import bind_address
from oauthproxy.containers.rules import ENV_NAME_PATTERN, DockerRules, build_tag
from oauthproxy.containers.values import capability, image_reference, parse_size
from oauthproxy.errors import InvalidInput
from oauthproxy.model import DockerService, HealthCheck, ImageBuild, ServicePort, VolumeMount


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
