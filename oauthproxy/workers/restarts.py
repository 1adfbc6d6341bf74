"""When to restart a worker that died, and when its deaths are a crash loop (pure).

A worker that ran for :attr:`RestartPolicy.stable_after` seconds or more before
it died is restarted at once: one crash in a long while is not a pattern.  One
that dies sooner is restarted after a delay that doubles with each quick death in
a row (``initial_delay`` up to ``max_delay``), so a worker that cannot run does
not spin the CPU.  From ``loop_after`` quick deaths in a row on, the worker is in
a crash loop: the supervisor says so once in the log, in ``/health`` and in the
metrics, and keeps trying at the longest delay (what broke it, a full disk or a
Redis refusing connections, may be fixed without a restart of the daemon).
"""

from __future__ import annotations

from attrs import evolve, frozen


@frozen
class RestartPolicy:
    """The numbers of the restart rule (see the module docstring)."""

    initial_delay: float = 0.5
    max_delay: float = 30.0
    #: seconds a worker must run for its death to count as isolated
    stable_after: float = 30.0
    #: quick deaths in a row that make a crash loop
    loop_after: int = 5


@frozen
class Deaths:
    """One worker slot's recent deaths."""

    #: quick deaths in a row (reset by a death after a stable run)
    quick: int = 0
    #: every death of this slot
    total: int = 0


def after_death(policy: RestartPolicy, deaths: Deaths, ran_for: float) -> tuple[Deaths, float]:
    """The slot's deaths after one more, and the seconds to wait before the restart."""
    if ran_for >= policy.stable_after:
        return evolve(deaths, quick=0, total=deaths.total + 1), 0.0
    quick = deaths.quick + 1
    delay = min(policy.max_delay, policy.initial_delay * 2.0 ** min(quick - 1, 32))
    return evolve(deaths, quick=quick, total=deaths.total + 1), delay


def is_crash_loop(policy: RestartPolicy, deaths: Deaths) -> bool:
    """Whether ``deaths`` are a crash loop under ``policy``."""
    return deaths.quick >= policy.loop_after
