"""The security rules every Docker service must pass (pure): the Docker socket is root.

:class:`DockerRules` is built from the settings and checks a
:class:`~oauthproxy.model.DockerService` before anything reaches Docker.  It
refuses, naming the field (JSON pointer of the API body):

- an image outside the allowlist ``OAUTHPROXY_DOCKER_IMAGES`` (empty: only images
  already on the Docker host, never pulled), and builds outside
  ``OAUTHPROXY_DOCKER_BUILD_DIRS`` (none by default: no builds);
- host bind mounts outside ``OAUTHPROXY_DOCKER_MOUNT_DIRS`` (none by default; named
  volumes are always allowed);
- host networking unless ``OAUTHPROXY_DOCKER_HOST_NETWORK`` is on, and added
  capabilities beyond ``OAUTHPROXY_DOCKER_CAPABILITIES``;
- memory and CPU limits above the maximums (a service without limits gets the
  defaults: limits are always set);
- names, environment, labels, users, healthchecks and ports that Docker would
  misread or that would collide with ours (labels ``oauthproxy.*`` are the daemon's).

What is never possible whatever the settings (privileged mode, host PID/IPC
namespaces, devices, ``no-new-privileges`` off) is not a field at all: see
:mod:`oauthproxy.containers.runconfig`.
"""

from __future__ import annotations

import os
import re

from attrs import evolve, field, frozen

from oauthproxy.config import Config
from oauthproxy.containers.policy import PortPolicy, own_clash
from oauthproxy.containers.values import format_size, image_allowed
from oauthproxy.errors import InvalidInput
from oauthproxy.model import DockerService, ImageBuild, VolumeMount

#: label keys the daemon sets on its containers
LABEL_PREFIX = "oauthproxy."
#: Docker refuses less memory than this
MIN_MEMORY = 6 * 1024**2
MIN_CPUS = 0.01
#: service names that are path segments of the API (``/services/ports/...``)
RESERVED_NAMES = frozenset({"external", "ports", "cleanup"})
#: a DNS label: the container name, and ``<name>.<BASE_DOMAIN>``
NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,255}$"
LABEL_KEY_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,253}[A-Za-z0-9])?$"
USER_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$"
DOCKER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
_DOCKER_NAME = re.compile(DOCKER_NAME_PATTERN)


def build_tag(name: str) -> str:
    """The tag a service's Dockerfile build produces."""
    return f"oauthproxy-build/{name}:latest"


def _inside(path: str, directories: tuple[str, ...]) -> bool:
    """Whether ``path`` (resolved) is one of ``directories`` or below one."""
    real = os.path.realpath(path)
    for directory in directories:
        root = os.path.realpath(directory)
        if real == root or real.startswith(root.rstrip("/") + "/"):
            return True
    return False


@frozen
class DockerRules:
    """The operator's Docker settings, as checks (see the module docstring)."""

    images: tuple[str, ...] = ()
    mount_dirs: tuple[str, ...] = ()
    build_dirs: tuple[str, ...] = ()
    host_network: bool = False
    capabilities: tuple[str, ...] = ()
    network: str = "oauthproxy"
    memory: int = 512 * 1024**2
    max_memory: int = 8 * 1024**3
    cpus: float = 1.0
    max_cpus: float = 4.0
    ports: PortPolicy = field(factory=PortPolicy)

    @classmethod
    def from_config(cls, config: Config) -> DockerRules:
        """The rules of a daemon's settings."""
        return cls(
            images=config.docker_images,
            mount_dirs=config.docker_mount_dirs,
            build_dirs=config.docker_build_dirs,
            host_network=config.docker_host_network,
            capabilities=config.docker_capabilities,
            network=config.docker_network,
            memory=config.docker_memory,
            max_memory=config.docker_max_memory,
            cpus=config.docker_cpus,
            max_cpus=config.docker_max_cpus,
            ports=PortPolicy(config.port_ranges, config.restricted_ports),
        )

    @property
    def may_pull(self) -> bool:
        """Whether a missing image may be pulled (only with an explicit allowlist)."""
        return bool(self.images)

    def check(self, service: DockerService) -> DockerService:
        """``service`` if it passes every rule; else InvalidInput naming the first bad field."""
        if service.name in RESERVED_NAMES or not re.match(NAME_PATTERN, service.name):
            raise InvalidInput(
                f"{service.name!r} is not a service name (a DNS label; not "
                f"{', '.join(sorted(RESERVED_NAMES))})",
                field="/name",
            )
        if service.build is not None:
            self._check_build(service.build)
        elif not image_allowed(service.image, self.images):
            raise InvalidInput(
                f"image {service.image!r} is not allowed (OAUTHPROXY_DOCKER_IMAGES)", field="/image"
            )
        for index, mount in enumerate(service.volumes):
            self._check_mount(mount, f"/volumes/{index}")
        self._check_network(service)
        for index, cap in enumerate(service.cap_add):
            if cap not in self.capabilities:
                raise InvalidInput(
                    f"capability {cap} may not be added (OAUTHPROXY_DOCKER_CAPABILITIES)",
                    field=f"/cap_add/{index}",
                )
        if not MIN_MEMORY <= service.memory_limit <= self.max_memory:
            raise InvalidInput(
                f"memory_limit must be between {format_size(MIN_MEMORY)} and "
                f"{format_size(self.max_memory)} (OAUTHPROXY_DOCKER_MAX_MEMORY)",
                field="/memory_limit",
            )
        if not MIN_CPUS <= service.cpu_limit <= self.max_cpus:
            raise InvalidInput(
                f"cpu_limit must be between {MIN_CPUS} and {self.max_cpus:g} "
                "(OAUTHPROXY_DOCKER_MAX_CPUS)",
                field="/cpu_limit",
            )
        if service.restart_max_retries and service.restart_policy != "on-failure":
            raise InvalidInput(
                "restart_max_retries needs restart_policy on-failure", field="/restart_max_retries"
            )
        for key, _ in service.labels:
            where = "/labels/" + key.replace("~", "~0").replace("/", "~1")
            if key.startswith(LABEL_PREFIX):
                raise InvalidInput(
                    f"labels starting with {LABEL_PREFIX!r} are the daemon's", field=where
                )
            if not re.match(LABEL_KEY_PATTERN, key):
                raise InvalidInput(f"{key[:80]!r} is not a label key", field=where)
        self._check_ports(service)
        return service

    def with_defaults(self, service: DockerService, memory: bool, cpus: bool) -> DockerService:
        """``service`` with the default limits where the request gave none."""
        return evolve(
            service,
            memory_limit=service.memory_limit if memory else self.memory,
            cpu_limit=service.cpu_limit if cpus else self.cpus,
        )

    def _check_build(self, build: ImageBuild) -> None:
        """The context must be under a build directory and the Dockerfile inside the context."""
        if not self.build_dirs:
            raise InvalidInput(
                "Dockerfile builds are off (set OAUTHPROXY_DOCKER_BUILD_DIRS)",
                field="/dockerfile_path",
            )
        if not build.context.startswith("/") or not _inside(build.context, self.build_dirs):
            raise InvalidInput(
                f"build context {build.context!r} is not under OAUTHPROXY_DOCKER_BUILD_DIRS",
                field="/build_context",
            )
        dockerfile = os.path.join(build.context, build.dockerfile)
        if build.dockerfile.startswith("/") or not _inside(dockerfile, (build.context,)):
            raise InvalidInput(
                "dockerfile_path must be a path inside the build context", field="/dockerfile_path"
            )

    def _check_mount(self, mount: VolumeMount, where: str) -> None:
        """Bind mounts under the mount directories; named volumes with a valid name."""
        if (
            not mount.target.startswith("/")
            or mount.target.rstrip("/") == ""
            or "\0" in mount.target
        ):
            raise InvalidInput(
                "target must be an absolute path other than /", field=where + "/target"
            )
        if mount.is_bind:
            if not self.mount_dirs or not _inside(mount.source, self.mount_dirs):
                raise InvalidInput(
                    f"host path {mount.source!r} is not under OAUTHPROXY_DOCKER_MOUNT_DIRS",
                    field=where + "/source",
                )
        elif not _DOCKER_NAME.match(mount.source):
            raise InvalidInput(
                f"{mount.source[:80]!r} is neither a volume name nor an absolute host path",
                field=where + "/source",
            )

    def _check_network(self, service: DockerService) -> None:
        """Host networking only when the operator allows it; extra networks only on a bridge."""
        if service.network_mode == "host" and not self.host_network:
            raise InvalidInput(
                "host networking is off (OAUTHPROXY_DOCKER_HOST_NETWORK)", field="/network_mode"
            )
        if service.networks and service.network_mode != "bridge":
            raise InvalidInput(
                f"networks need network_mode bridge, not {service.network_mode}", field="/networks"
            )
        for index, network in enumerate(service.networks):
            if not _DOCKER_NAME.match(network) or network in ("host", "none", "bridge"):
                raise InvalidInput(
                    f"{network[:80]!r} is not a network name", field=f"/networks/{index}"
                )

    def _check_ports(self, service: DockerService) -> None:
        """Ports: allowed host ports, no clash among themselves, what the network mode permits."""
        if service.network_mode == "none" and service.ports:
            raise InvalidInput(
                "network_mode none has no network to reach a port on", field="/ports"
            )
        problem = own_clash(service.ports)
        if problem is not None:
            raise InvalidInput(problem, field="/ports")
        for index, port in enumerate(service.ports):
            where = f"/ports/{index}"
            refusal = None if port.host == 0 else self.ports.refusal(port.host)
            if refusal is not None:
                raise InvalidInput(refusal, field=where + "/host")
            if not 1 <= port.container <= 65535:
                raise InvalidInput("the container port must be 1-65535", field=where + "/container")
            if port.guarded and port.protocol != "tcp":
                raise InvalidInput(
                    "access control (allowed_networks, source_token) needs a tcp port",
                    field=where + "/protocol",
                )
            if service.network_mode == "host":
                if port.guarded and port.host == port.container:
                    raise InvalidInput(
                        "with host networking a guarded port's host port must differ from its "
                        "container port (the daemon listens on one, the container on the other)",
                        field=where + "/host",
                    )
                if not port.guarded and port.host not in (0, port.container):
                    raise InvalidInput(
                        "with host networking Docker publishes nothing: the container binds the "
                        "port itself, so host and container ports must be equal",
                        field=where + "/container",
                    )
