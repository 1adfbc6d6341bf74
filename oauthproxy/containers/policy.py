"""The port policy (pure): which host ports a service may have, and which clash.

A port is held as a :class:`Reservation` ``(protocol, port, bind)`` by one service
port.  Two reservations clash when protocol and port are equal and the bind
addresses overlap: the same address, or either is a wildcard (``0.0.0.0`` or ``::``,
which on Linux take the port on every address).  ``127.0.0.1:8080`` and
``127.0.0.2:8080`` do not clash; ``0.0.0.0:8080`` clashes with both.

:class:`PortPolicy` adds the operator's settings: ports handed out automatically
come from ``port_ranges`` (the seed's 14000-65535), ``restricted_ports`` are never
given (the seed's 22, 25, 53, 80, 443, 3306, 5432, 6379, 27017), and a port named
explicitly may be any other port.  The store checks clashes atomically (the same
rule, in its write script) and the allocator adds a real bind test; this module
says what the rules are, without I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from attrs import frozen

from oauthproxy.model import DockerService, ServicePort

#: addresses that take a port on every address of the host
WILDCARDS = frozenset({"0.0.0.0", "::"})


@frozen
class Reservation:
    """One host port held by one port of one service."""

    protocol: str
    port: int
    bind: str
    service: str
    port_name: str

    @property
    def key(self) -> str:
        """How the store indexes it: ``tcp/14000/127.0.0.1``."""
        return f"{self.protocol}/{self.port}/{self.bind}"

    @property
    def holder(self) -> str:
        """Who holds it: ``service/port_name``."""
        return f"{self.service}/{self.port_name}"

    def describe(self) -> str:
        """``127.0.0.1:14000/tcp`` (``[::1]:14000/tcp`` for IPv6)."""
        bind = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"{bind}:{self.port}/{self.protocol}"


def reservations(
    service: DockerService, previous: DockerService | None = None
) -> list[Reservation]:
    """What ``service`` holds: its ports, plus those of the record an update replaces."""
    ports: list[ServicePort] = list(service.ports)
    if previous is not None:
        ports += [p for p in previous.ports if p not in service.ports]
    return [Reservation(p.protocol, p.host, p.bind, service.name, p.name) for p in ports]


def reservation_from_key(key: str, holder: str) -> Reservation:
    """The reservation the store keeps as ``key`` → ``holder`` (see :attr:`Reservation.key`)."""
    protocol, port, bind = key.split("/", 2)
    service, _, port_name = holder.partition("/")
    return Reservation(protocol, int(port), bind, service, port_name)


def overlaps(bind: str, other: str) -> bool:
    """Whether two bind addresses would take the same port."""
    return bind == other or bind in WILDCARDS or other in WILDCARDS


def clashes(new: Reservation, held: Reservation) -> bool:
    """Whether ``new`` cannot be held while ``held`` is (another service's port)."""
    return (
        new.service != held.service
        and new.protocol == held.protocol
        and new.port == held.port
        and overlaps(new.bind, held.bind)
    )


def first_clash(
    wanted: Iterable[Reservation], held: Iterable[Reservation]
) -> tuple[Reservation, Reservation] | None:
    """The first wanted reservation that clashes with a held one, and that one."""
    existing = list(held)
    for new in wanted:
        for other in existing:
            if clashes(new, other):
                return new, other
    return None


def own_clash(ports: Iterable[ServicePort]) -> str | None:
    """Why a service's own ports cannot coexist (duplicate name or overlapping host port)."""
    seen: list[ServicePort] = []
    for port in ports:
        for other in seen:
            if other.name == port.name:
                return f"two ports are named {port.name!r}"
            if (
                other.protocol == port.protocol
                and other.host == port.host
                and overlaps(other.bind, port.bind)
            ):
                return (
                    f"ports {other.name!r} and {port.name!r} both take {port.host}/{port.protocol}"
                )
        seen.append(port)
    return None


def bind_address(text: str) -> str:
    """A bind address as stored: an IP literal (``localhost`` is ``127.0.0.1``); ValueError."""
    text = text.strip()
    if text.lower() == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise ValueError(f"{text[:80]!r} is not an IP address to bind") from None


@frozen
class PortPolicy:
    """The operator's port settings: ``OAUTHPROXY_PORT_RANGES`` and ``..._RESTRICTED_PORTS``."""

    ranges: tuple[tuple[int, int], ...] = ((14000, 65535),)
    restricted: tuple[int, ...] = (22, 25, 53, 80, 443, 3306, 5432, 6379, 27017)

    def in_ranges(self, port: int) -> bool:
        """Whether ``port`` lies in the automatic ranges."""
        return any(first <= port <= last for first, last in self.ranges)

    def refusal(self, port: int) -> str | None:
        """Why ``port`` may never be a service's host port, or None."""
        if not 1 <= port <= 65535:
            return f"port {port} is not 1-65535"
        if port in self.restricted:
            return f"port {port} is restricted (OAUTHPROXY_RESTRICTED_PORTS)"
        return None

    def candidates(self, taken: Iterable[int]) -> Iterator[int]:
        """Ports to hand out automatically, lowest first: in the ranges, not restricted or taken."""
        excluded = set(taken) | set(self.restricted)
        for first, last in self.ranges:
            for port in range(first, last + 1):
                if port not in excluded:
                    yield port

    def available_ranges(self, taken: Iterable[int]) -> list[tuple[int, int]]:
        """The automatic ranges minus restricted and ``taken`` ports, as inclusive ranges."""
        excluded = sorted(set(taken) | set(self.restricted))
        free: list[tuple[int, int]] = []
        for first, last in self.ranges:
            start = first
            for port in excluded:
                if port < start or port > last:
                    continue
                if port > start:
                    free.append((start, port - 1))
                start = port + 1
            if start <= last:
                free.append((start, last))
        return free
