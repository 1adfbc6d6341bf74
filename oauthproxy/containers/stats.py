"""Docker's stats JSON as the few numbers people read (pure).

Docker reports counters; CPU percent is the container's share of the host's CPU
time between the two samples of one stats call, scaled to the number of CPUs
(``docker stats`` shows the same number).  Memory usage leaves out the page cache
(cgroup v1 ``cache``, v2 ``inactive_file``), as ``docker stats`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import asdict, frozen


@frozen
class ContainerStats:
    """A container's resource use at one moment."""

    cpu_percent: float
    memory_usage: int
    memory_limit: int
    memory_percent: float
    network_rx_bytes: int
    network_tx_bytes: int
    block_read_bytes: int
    block_write_bytes: int
    pids: int

    def as_json(self) -> dict[str, Any]:
        """The API's view."""
        return asdict(self)


def _get(data: Mapping[str, Any], *path: str) -> Any:
    """``data[path[0]][path[1]]...``, None where a level is missing or null."""
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _int(value: Any) -> int:
    """A counter, 0 when Docker left it out."""
    return int(value) if isinstance(value, int | float) else 0


def cpu_percent(data: Mapping[str, Any]) -> float:
    """CPU use in percent of one CPU (200.0 = two CPUs busy), 0.0 without two samples."""
    used = _int(_get(data, "cpu_stats", "cpu_usage", "total_usage")) - _int(
        _get(data, "precpu_stats", "cpu_usage", "total_usage")
    )
    system = _int(_get(data, "cpu_stats", "system_cpu_usage")) - _int(
        _get(data, "precpu_stats", "system_cpu_usage")
    )
    cpus = _int(_get(data, "cpu_stats", "online_cpus")) or len(
        _get(data, "cpu_stats", "cpu_usage", "percpu_usage") or ()
    )
    if used <= 0 or system <= 0:
        return 0.0
    return round(used / system * max(cpus, 1) * 100.0, 2)


def memory_usage(data: Mapping[str, Any]) -> int:
    """Bytes in use without the page cache."""
    usage = _int(_get(data, "memory_stats", "usage"))
    stats = _get(data, "memory_stats", "stats") or {}
    cache = _int(stats.get("total_inactive_file", stats.get("inactive_file", stats.get("cache"))))
    return max(usage - cache, 0)


def block_io(data: Mapping[str, Any]) -> tuple[int, int]:
    """Bytes read and written by the container's block I/O."""
    read = written = 0
    for entry in _get(data, "blkio_stats", "io_service_bytes_recursive") or ():
        operation = str(entry.get("op", "")).lower()
        if operation == "read":
            read += _int(entry.get("value"))
        elif operation == "write":
            written += _int(entry.get("value"))
    return read, written


def container_stats(data: Mapping[str, Any]) -> ContainerStats:
    """The summary of one ``GET /containers/{id}/stats?stream=false`` answer."""
    networks = _get(data, "networks") or {}
    usage = memory_usage(data)
    limit = _int(_get(data, "memory_stats", "limit"))
    read, written = block_io(data)
    return ContainerStats(
        cpu_percent=cpu_percent(data),
        memory_usage=usage,
        memory_limit=limit,
        memory_percent=round(usage / limit * 100.0, 2) if limit else 0.0,
        network_rx_bytes=sum(_int(n.get("rx_bytes")) for n in networks.values()),
        network_tx_bytes=sum(_int(n.get("tx_bytes")) for n in networks.values()),
        block_read_bytes=read,
        block_write_bytes=written,
        pids=_int(_get(data, "pids_stats", "current")),
    )
