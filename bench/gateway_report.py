"""Print what ``bench/run_gateway.sh`` measured: the issue's figures, per cell.

Reads ``<run>/<pass>/raw.tsv`` (one per run_peers.sh pass: ``log-on``, ``log-off``,
``workers``, ``tls``) and prints medians of req/s, p50/p99 and CPU us/req for the
gateway with the request log on and off, nginx and tw-agent, with the ratios taken
within a pass (by req/s and by CPU); what the log costs (on vs off); and, for a
``workers`` pass, 1 vs N workers for the gateway and for nginx.

    python3 bench/gateway_report.py RUN_DIR [WORKERS]
"""

from __future__ import annotations

import csv
import os
import statistics
import sys

Rows = list[dict[str, str]]


def load(base: str) -> dict[str, Rows]:
    """The raw rows of each pass found under ``base``."""
    passes = {}
    for name in sorted(os.listdir(base)):
        path = os.path.join(base, name, "raw.tsv")
        if os.path.exists(path):
            with open(path) as f:
                passes[name] = list(csv.DictReader(f, delimiter="\t"))
    return passes


class Figures:
    """Medians over the repetitions of one pass, system and cell."""

    def __init__(self, passes: dict[str, Rows]) -> None:
        self.passes = passes

    def get(self, part: str, system: str, cell: tuple[str, str], field: str) -> float | None:
        """The median of ``field``, or None when that was not measured."""
        values = [
            float(r[field])
            for r in self.passes.get(part, ())
            if (r["system"], r["path"], r["conns"]) == (system, *cell) and r[field] != ""
        ]
        return statistics.median(values) if values else None

    def cells(self) -> list[tuple[str, str]]:
        """Every (path, connections) measured: c50 cells first, /small before /64k."""
        found = {(r["path"], r["conns"]) for rows in self.passes.values() for r in rows}
        return sorted(found, key=lambda c: (c[1] == "1", c[0] != "small", c))


def fmt(value: float | None, spec: str) -> str:
    """``value`` formatted, or ``-``."""
    return "-" if value is None else spec % value


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` when both are known."""
    return a / b if a is not None and b else None


def ms(value: float | None) -> float | None:
    """Microseconds as milliseconds."""
    return None if value is None else value / 1000


#: what the ratios are taken of
FIGURES = ("rps", "proxy_cpu_us_per_req")
#: (system, pass, label) rows of the main table
MAIN = [
    ("gateway", "log-on", "gateway, log on"),
    ("gateway-nolog", "log-off", "gateway, log off"),
    ("tw-agent", "log-on", "tw-agent"),
    ("nginx", "log-on", "nginx"),
]


def main_table(fig: Figures) -> None:
    """req/s, latency, CPU and the ratios to tw-agent and nginx of the same pass."""
    print("\n## oauthproxy gateway vs peers (median of repetitions; ratios within a pass)\n")
    print(
        "| cell | system | req/s | p50 ms | p99 ms | CPU us/req | x tw-agent "
        "| x tw-agent by CPU | x nginx | x nginx by CPU |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cell in fig.cells():
        for system, part, label in MAIN:
            rps = fig.get(part, system, cell, "rps")
            if rps is None:
                continue
            cpu = fig.get(part, system, cell, "proxy_cpu_us_per_req")
            tw, tw_cpu = (
                fig.get(part, "tw-agent", cell, k) for k in ("rps", "proxy_cpu_us_per_req")
            )
            ng, ng_cpu = (fig.get(part, "nginx", cell, k) for k in ("rps", "proxy_cpu_us_per_req"))
            ours, peer = system.startswith("gateway"), system != "nginx"
            print(
                f"| /{cell[0]} c{cell[1]} | {label} | {rps:.0f} "
                f"| {fmt(ms(fig.get(part, system, cell, 'p50_us')), '%.3f')} "
                f"| {fmt(ms(fig.get(part, system, cell, 'p99_us')), '%.3f')} | {fmt(cpu, '%.1f')} "
                f"| {fmt(ratio(rps, tw) if ours else None, '%.2f')} "
                f"| {fmt(ratio(tw_cpu, cpu) if ours else None, '%.2f')} "
                f"| {fmt(ratio(rps, ng) if peer else None, '%.3f')} "
                f"| {fmt(ratio(ng_cpu, cpu) if peer else None, '%.3f')} |"
            )


def log_cost(fig: Figures) -> None:
    """The request log's price: CPU per request and p99, log on vs off."""
    print("\n### What the request log costs (gateway, log on vs off; two passes)\n")
    print("| cell | CPU us/req on | off | on / off | p99 ms on | off | p99 on - off ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for cell in fig.cells():
        on = fig.get("log-on", "gateway", cell, "proxy_cpu_us_per_req")
        off = fig.get("log-off", "gateway-nolog", cell, "proxy_cpu_us_per_req")
        p_on = ms(fig.get("log-on", "gateway", cell, "p99_us"))
        p_off = ms(fig.get("log-off", "gateway-nolog", cell, "p99_us"))
        if on is None or off is None or p_on is None or p_off is None:
            continue
        print(
            f"| /{cell[0]} c{cell[1]} | {on:.1f} | {off:.1f} | {on / off:.3f} | {p_on:.3f} "
            f"| {p_off:.3f} | {p_on - p_off:+.3f} |"
        )


def workers_table(fig: Figures, n: str) -> None:
    """1 worker (the log-on pass) vs N workers (the workers pass), gateway and nginx.

    wrk and the origin run on the same cores: "wrk + origin" is their CPU per request
    in the N-worker run, and "ceiling x" what N workers could reach at most on this
    machine's cores with the gateway's and their CPU per request as measured (cores
    x 1e6 / (gateway + wrk + origin us/req), over one worker's req/s): where the
    workers are saturated, the throughput N workers can show on a machine they share
    with the load generator.
    """
    target = f"gateway-w{n}"
    cores = os.cpu_count() or 1
    print(f"\n### 1 worker vs {n} (gateway --workers {n}, log on; nginx worker_processes {n})\n")
    print(
        f"| cell | gateway 1 req/s | gateway {n} req/s | x | nginx 1 req/s | nginx {n} req/s "
        f"| x | gateway {n} x nginx {n} | gateway {n} p99 ms | gateway {n} CPU us/req "
        f"| wrk + origin CPU us/req | ceiling x on {cores} cores |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cell in fig.cells():
        many = fig.get("workers", target, cell, "rps")
        if many is None:
            continue
        one = fig.get("log-on", "gateway", cell, "rps")
        n1, nn = fig.get("log-on", "nginx", cell, "rps"), fig.get("workers", "nginx", cell, "rps")
        cpu = fig.get("workers", target, cell, "proxy_cpu_us_per_req")
        wrk = fig.get("workers", target, cell, "wrk_cpu_pct")
        origin = fig.get("workers", target, cell, "origin_cpu_pct")
        others = None if wrk is None or origin is None else (wrk + origin) / 100 * 1e6 / many
        ceiling = None
        if cpu is not None and others is not None and one:
            ceiling = cores * 1e6 / (cpu + others) / one
        print(
            f"| /{cell[0]} c{cell[1]} | {fmt(one, '%.0f')} | {many:.0f} "
            f"| {fmt(ratio(many, one), '%.2f')} | {fmt(n1, '%.0f')} | {fmt(nn, '%.0f')} "
            f"| {fmt(ratio(nn, n1), '%.2f')} | {fmt(ratio(many, nn), '%.3f')} "
            f"| {fmt(ms(fig.get('workers', target, cell, 'p99_us')), '%.3f')} "
            f"| {fmt(cpu, '%.1f')} | {fmt(others, '%.1f')} | {fmt(ceiling, '%.2f')} |"
        )
    print(
        f"\nceiling x = what {n} workers could reach at most here: {cores} cores x 1e6 /"
        " (the gateway's + wrk's + the origin's CPU us/req in this run), over one worker's"
        " req/s; it applies where the workers are saturated (c50), not at c1."
    )


def tls_table(fig: Figures) -> None:
    """The HTTPS pass."""
    print("\n### HTTPS (log on)\n")
    print("| cell | gateway-tls req/s | p99 ms | CPU us/req | x tw-agent-tls | x nginx-tls |")
    print("|---|---:|---:|---:|---:|---:|")
    for cell in fig.cells():
        rps = fig.get("tls", "gateway-tls", cell, "rps")
        if rps is None:
            continue
        print(
            f"| /{cell[0]} c{cell[1]} | {rps:.0f} "
            f"| {fmt(ms(fig.get('tls', 'gateway-tls', cell, 'p99_us')), '%.3f')} "
            f"| {fmt(fig.get('tls', 'gateway-tls', cell, 'proxy_cpu_us_per_req'), '%.1f')} "
            f"| {fmt(ratio(rps, fig.get('tls', 'tw-agent-tls', cell, 'rps')), '%.2f')} "
            f"| {fmt(ratio(rps, fig.get('tls', 'nginx-tls', cell, 'rps')), '%.3f')} |"
        )


def main() -> None:
    """Print every table the run has data for."""
    base = sys.argv[1]
    workers = sys.argv[2] if len(sys.argv) > 2 else "1"
    fig = Figures(load(base))
    main_table(fig)
    if "log-on" in fig.passes and "log-off" in fig.passes:
        log_cost(fig)
    if "workers" in fig.passes:
        workers_table(fig, workers)
    if "tls" in fig.passes:
        tls_table(fig)
    print(
        "\nx ... by CPU = the peer's CPU us/req / the gateway's: the ratio least disturbed by"
        " other load on the machine (req/s ratios need an idle one). CPU is the process"
        " tree: the daemon's embedded redis-server and its workers count."
    )
    print(f"\nraw data and the driver's full tables: {base}/<pass>/")


if __name__ == "__main__":
    main()
