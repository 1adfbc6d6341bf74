"""Per-source rate limits of the authorization server's anonymous endpoints (ATK-28, ATK-37).

``/register`` is open to anyone, and ``/token`` and ``/authorize`` answer anyone's
guesses; a :class:`SourceLimiter` bounds what one source may do: a token bucket per
source holding ``count`` requests, refilled at ``count`` per ``period``.  The source is
the client address of the connection (the PROXY-protocol address when the listener
trusts its sender), never a request header; IPv6 clients count per /64, the block one
host usually gets, so an attacker cannot rotate addresses inside it.

The buckets live in the memory of each daemon, not in Redis: a limit is checked on
every request, including the failing ones an attacker sends in bulk, and a Redis
round trip there would let them load the store that every daemon needs.  So with N
daemons behind a balancer, a source gets up to N times the rate; the global bounds
(the client cap with eviction, the reaper) do not depend on it.  Memory is bounded too:
at most ``max_sources`` buckets, the least recently used one goes first.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict

from attrs import define, field, frozen
from twisted.internet.interfaces import IReactorTime


@frozen
class Rate:
    """``count`` requests per ``period`` seconds (also the burst: a full bucket)."""

    count: int
    period: float

    @property
    def per_second(self) -> float:
        """The refill rate."""
        return self.count / self.period


def source_key(host: str | None) -> str:
    """Whose bucket a client address uses: the IPv4 address, or the IPv6 /64."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@define
class SourceLimiter:
    """Token buckets by source; ``rate`` None means no limit."""

    rate: Rate | None
    clock: IReactorTime
    max_sources: int = 10_000
    #: source -> (tokens left, time of the last update); most recently used last
    _buckets: OrderedDict[str, tuple[float, float]] = field(factory=OrderedDict, init=False)

    def _level(self, source: str) -> float:
        """The tokens ``source`` has now (a new source has a full bucket)."""
        assert self.rate is not None
        now = self.clock.seconds()
        tokens, then = self._buckets.get(source, (float(self.rate.count), now))
        level = min(float(self.rate.count), tokens + (now - then) * self.rate.per_second)
        self._buckets[source] = (level, now)
        self._buckets.move_to_end(source)
        while len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return level

    def retry_after(self, source: str) -> int | None:
        """Seconds until ``source`` may send again; None when it may now."""
        if self.rate is None:
            return None
        level = self._level(source)
        if level >= 1.0 - 1e-9:  # refills are floats: a whole request, give or take
            return None
        return max(1, int((1.0 - level) / self.rate.per_second + 0.999))

    def spend(self, source: str) -> None:
        """``source`` used one request (a registration, a failure)."""
        if self.rate is None:
            return
        level = self._level(source)
        self._buckets[source] = (max(0.0, level - 1.0), self.clock.seconds())

    def take(self, source: str) -> int | None:
        """Spend one request if ``source`` may send it: None, else the seconds to wait."""
        wait = self.retry_after(source)
        if wait is None:
            self.spend(source)
        return wait
