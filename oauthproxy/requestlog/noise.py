"""Anonymous noise in the request log: a small budget of records, the rest only counted.

Requests nobody authenticated and that reached no backend -- an unknown ``Host``, a
misdirected or malformed request, a refused credential -- cost the attacker nothing,
so storing each as a record would let anyone fill Redis.  The gateway marks such a
request with a *reason* (:attr:`~oauthproxy.requestlog.record.RequestNotes.noise`);
:class:`NoiseBudget` lets the first ``per_minute`` of them each minute through as
ordinary records (examples to look at) and counts every one of them per
(minute, reason, host).  The number of counters per minute is bounded too: hosts
past ``max_hosts`` share the host ``"*"``.  This module is pure; the writer flushes
the counts with the records.
"""

from __future__ import annotations

from attrs import define, field, frozen

#: the reasons the gateway gives
UNKNOWN_HOST = "unknown_host"
MISDIRECTED = "misdirected"
BAD_REQUEST = "bad_request"
UNAUTHENTICATED = "unauthenticated"
REASONS = (UNKNOWN_HOST, MISDIRECTED, BAD_REQUEST, UNAUTHENTICATED)

#: the host of counters past the per-minute limit of distinct hosts
OTHER_HOSTS = "*"


@frozen
class NoiseCount:
    """How many noise requests of ``reason`` for ``host`` came in the minute ``minute``."""

    #: POSIX seconds at the start of the minute
    minute: int
    reason: str
    host: str
    count: int


def minute_of(seconds: float) -> int:
    """The start of the minute ``seconds`` falls in."""
    return int(seconds // 60) * 60


@define
class NoiseBudget:
    """Decides which noise requests become records; counts all of them (see the module)."""

    per_minute: int = 10
    max_hosts: int = 100
    _minute: int = field(default=-1, init=False)
    _admitted: int = field(default=0, init=False)
    #: (minute, reason, host) -> count, until taken
    _counts: dict[tuple[int, str, str], int] = field(factory=dict, init=False)
    #: distinct (reason, host) pairs counted in the current minute
    _hosts: set[tuple[str, str]] = field(factory=set, init=False)

    def admit(self, now: float, reason: str, host: str) -> bool:
        """Count one noise request; whether it may also be stored as a record."""
        minute = minute_of(now)
        if minute != self._minute:
            self._minute, self._admitted = minute, 0
            self._hosts.clear()
        if (reason, host) not in self._hosts:
            if len(self._hosts) >= self.max_hosts:
                host = OTHER_HOSTS
            else:
                self._hosts.add((reason, host))
        key = (minute, reason, host)
        self._counts[key] = self._counts.get(key, 0) + 1
        if self._admitted < self.per_minute:
            self._admitted += 1
            return True
        return False

    def take(self) -> list[NoiseCount]:
        """The counts so far (they are then forgotten here)."""
        counts, self._counts = self._counts, {}
        return [NoiseCount(m, r, h, n) for (m, r, h), n in sorted(counts.items())]

    def give_back(self, counts: list[NoiseCount]) -> None:
        """Counts a failed write could not store, kept for the next flush."""
        for count in counts:
            key = (count.minute, count.reason, count.host)
            self._counts[key] = self._counts.get(key, 0) + count.count
