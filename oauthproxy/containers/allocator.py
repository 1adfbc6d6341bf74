"""Host ports for a service: explicit ones checked, missing ones picked, each bind-tested.

:class:`PortAllocator` fills in a service's ports before its record is written:

- a port with an explicit host port must not clash with another service's
  reservation (:mod:`~oauthproxy.containers.policy`); one with ``host == 0`` gets the
  lowest free port of the automatic ranges;
- a port this service does not hold already must pass a **bind test**: the daemon
  binds ``bind:port`` itself for a moment, so a port some other program on the host
  uses is refused (or skipped) before it is promised.  The test says something only
  when Docker runs on this host, so it is off for a remote ``DOCKER_HOST``.

The reservation itself happens in the store's atomic write; a write that loses a
race for a picked port fails with Conflict and the caller picks again.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

from attrs import define, evolve

from oauthproxy.containers.policy import PortPolicy, Reservation, clashes
from oauthproxy.errors import Conflict, InvalidInput
from oauthproxy.interfaces import IDockerServiceStore
from oauthproxy.model import DockerService, ServicePort

#: ``(bind, port, protocol)`` -> None when the port can be bound, else why not
Probe = Callable[[str, int, str], str | None]


def bind_probe(bind: str, port: int, protocol: str) -> str | None:
    """Bind ``bind:port`` for a moment; None if that works, else the reason it does not."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as s:
        if kind == socket.SOCK_STREAM:
            # as servers do: a port held only by closed connections (TIME_WAIT) is free
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((bind, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return "another program on this host uses it"
            if e.errno == errno.EADDRNOTAVAIL:
                return f"{bind} is not an address of this host"
            if e.errno == errno.EACCES:
                return "binding it needs privileges the daemon lacks"
            return e.strerror or str(e)
    return None


def no_probe(bind: str, port: int, protocol: str) -> str | None:
    """For a remote Docker host: the daemon's own host says nothing about its ports."""
    return None


def _held_by_service(port: ServicePort, service: DockerService | None) -> bool:
    """Whether ``service`` holds ``port``'s host port already (no bind test then)."""
    return service is not None and any(
        (p.protocol, p.host, p.bind) == (port.protocol, port.host, port.bind) for p in service.ports
    )


@define
class PortAllocator:
    """Assigns and checks a service's host ports (see the module docstring)."""

    store: IDockerServiceStore
    policy: PortPolicy
    probe: Probe = bind_probe

    async def assign(
        self, service: DockerService, current: DockerService | None, skip: int = 0
    ) -> DockerService:
        """``service`` with every host port set and checked; ``current`` is its stored record.

        ``skip``: free ports passed over before one is picked (a retry after losing a
        race spreads out, so racing daemons stop wanting the same lowest port).

        Conflict (409) names a port another service holds; InvalidInput (422) one the
        host uses or one that cannot be picked.
        """
        held = [r for r in await self.store.reservations() if r.service != service.name]
        assigned: list[ServicePort] = []
        for index, port in enumerate(service.ports):
            where = f"/ports/{index}/host"
            if port.host == 0 and service.network_mode == "host" and not port.guarded:
                # the container binds the port itself: the same number on both sides
                port = evolve(port, host=port.container)
            if port.host == 0:
                explicit = [p for p in service.ports if p.host != 0]
                port = self._pick(service.name, port, held, [*assigned, *explicit], where, skip)
            else:
                self._check_explicit(service.name, port, held, where)
                if not _held_by_service(port, current):
                    reason = self.probe(port.bind, port.host, port.protocol)
                    if reason is not None:
                        raise InvalidInput(
                            f"port {port.host}/{port.protocol} on {port.bind} is not free: "
                            f"{reason}",
                            field=where,
                        )
            assigned.append(port)
        return evolve(service, ports=tuple(assigned))

    def _check_explicit(
        self, name: str, port: ServicePort, held: list[Reservation], where: str
    ) -> None:
        """Conflict naming the service that holds an explicit port."""
        wanted = Reservation(port.protocol, port.host, port.bind, name, port.name)
        for other in held:
            if clashes(wanted, other):
                raise Conflict(
                    f"port {port.host}/{port.protocol} on {port.bind} is reserved by service "
                    f"{other.service} (port {other.port_name})",
                    field=where,
                )

    def _pick(
        self,
        name: str,
        port: ServicePort,
        held: list[Reservation],
        own: list[ServicePort],
        where: str,
        skip: int = 0,
    ) -> ServicePort:
        """The port with the lowest automatic host port free of ``held`` and ``own`` ports."""
        mine = [Reservation(p.protocol, p.host, p.bind, "", p.name) for p in own]
        first: int | None = None
        for candidate in self.policy.candidates(
            r.port for r in held if r.protocol == port.protocol
        ):
            wanted = Reservation(port.protocol, candidate, port.bind, name, port.name)
            if any(clashes(wanted, other) for other in [*held, *mine]):
                continue
            if self.probe(port.bind, candidate, port.protocol) is None:
                if skip == 0:
                    return evolve(port, host=candidate)
                skip -= 1
                first = candidate if first is None else first
        if first is not None:
            # fewer free ports than were to be skipped: the lowest one, then
            return evolve(port, host=first)
        raise InvalidInput("no free port is left in OAUTHPROXY_PORT_RANGES", field=where)

    async def why_not(self, port: int, bind: str, protocol: str) -> str | None:
        """Why ``bind:port/protocol`` could not be given to a service now; None if it could."""
        refusal = self.policy.refusal(port)
        if refusal is not None:
            return refusal
        wanted = Reservation(protocol, port, bind, "", "")
        for other in await self.store.reservations():
            if clashes(wanted, other):
                return f"reserved by service {other.service} (port {other.port_name})"
        reason = self.probe(bind, port, protocol)
        return None if reason is None else f"not free on this host: {reason}"
