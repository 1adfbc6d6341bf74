"""Docker's stats JSON summarised as ``docker stats`` shows it."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from oauthproxy.containers.stats import container_stats

SAMPLE = {
    "cpu_stats": {
        "cpu_usage": {"total_usage": 3_000_000},
        "system_cpu_usage": 20_000_000,
        "online_cpus": 2,
    },
    "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000}, "system_cpu_usage": 10_000_000},
    "memory_stats": {"usage": 10 * 1024**2, "limit": 64 * 1024**2, "stats": {"cache": 2 * 1024**2}},
    "networks": {"eth0": {"rx_bytes": 100, "tx_bytes": 50}, "eth1": {"rx_bytes": 1, "tx_bytes": 2}},
    "blkio_stats": {
        "io_service_bytes_recursive": [
            {"op": "Read", "value": 4096},
            {"op": "Write", "value": 8192},
            {"op": "read", "value": 4},
        ]
    },
    "pids_stats": {"current": 3},
}


class StatsTests(SynchronousTestCase):
    """CPU percent, memory without cache, network and block I/O totals, processes."""

    def test_a_full_sample(self) -> None:
        """The numbers of a complete sample."""
        stats = container_stats(SAMPLE)
        self.assertEqual(stats.cpu_percent, 40.0)
        self.assertEqual(stats.memory_usage, 8 * 1024**2)
        self.assertEqual(stats.memory_percent, 12.5)
        self.assertEqual((stats.network_rx_bytes, stats.network_tx_bytes), (101, 52))
        self.assertEqual((stats.block_read_bytes, stats.block_write_bytes), (4100, 8192))
        self.assertEqual(stats.pids, 3)

    def test_missing_parts_are_zero(self) -> None:
        """A first sample (no precpu), host networking (no networks) or cgroup v2 fields."""
        stats = container_stats(
            {
                "memory_stats": {"usage": 100, "limit": 0, "stats": {"inactive_file": 40}},
                "networks": None,
            }
        )
        self.assertEqual(
            (stats.cpu_percent, stats.memory_usage, stats.memory_percent, stats.network_rx_bytes),
            (0.0, 60, 0.0, 0),
        )
