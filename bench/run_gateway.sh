#!/usr/bin/env bash
# run_gateway.sh - benchmark the oauthproxy gateway against nginx and the bare
# Twisted pool proxy (tw-agent) with ../shared/bench/run_peers.sh.
#
# The target is the real daemon (`twistd -n oauthproxy`, embedded redis-server,
# fresh data directory in run_peers.sh's run dir, access log off, log level
# warn) with one proxy 127.0.0.1 -> the origin, created through the admin API
# by bench/configure_proxy.py once the daemon answers.
#
# A proxy with HTTPS enabled redirects plain HTTP to HTTPS, so the matrix runs
# in two passes of run_peers.sh, each with its own daemon:
#   1. plain:  SYSTEMS' plain peers + "gateway"     (proxy enable_http only)
#   2. tls:    SYSTEMS' *-tls peers + "gateway-tls" (proxy enable_https, the run's
#              {CERT}/{KEY} stored as certificate "bench" for 127.0.0.1)
# Ratios are taken within a pass (same run, same origin). At the end it prints
# req/s, p50/p99, CPU us/req and the ratios to nginx(-tls) and tw-agent(-tls),
# also by CPU us/req (the figure least disturbed by other load on the machine).
# `run_gateway.sh --report DIR` prints that table again from a finished run.
#
# Knobs (environment, defaults in brackets):
#   RUN_PEERS  the driver [<repo>/../shared/bench/run_peers.sh]
#   SYSTEMS    peers to compare with [direct nginx tw-agent nginx-tls tw-agent-tls]
#   SCENARIOS / TLS_SCENARIOS [small:50:4 64k:50:4 small:1:3] / [small:50:4 64k:50:4]
#   REPS [3]   RESULTS [a new /tmp/gateway-bench.XXXXXX]: raw.tsv + summary.md per pass
#   PY         Python for the tw-agent peers [/tmp/benchvenv/bin/python if present,
#              else this repo's .venv]; everything else is passed on to run_peers.sh.
# run_peers.sh stops everything it starts (the daemon, its redis-server, the
# configure helper and the peers) by PID, also on Ctrl-C.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$REPO/.venv}

if [[ ${1:-} == --target ]]; then
    # Started by run_peers.sh through TARGET_CMD (with exec: this PID is measured).
    # --target scheme=S port=P tls_port=P origin=URL cert=F key=F run=DIR (tls_port may be empty)
    shift
    scheme=http port= tls_port= origin= cert= key= run=
    for kv in "$@"; do
        case $kv in
            scheme=*|port=*|tls_port=*|origin=*|cert=*|key=*|run=*) declare "$kv";;
            *) echo "run_gateway.sh --target: unexpected argument $kv" >&2; exit 2;;
        esac
    done
    data=$run/oauthproxy-data
    api_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    https=off
    [[ $scheme == https ]] && https="tcp:$tls_port:interface=127.0.0.1"
    [[ -n ${GATEWAY_BENCH_DATA_DIRS:-} ]] && echo "$data" >> "$GATEWAY_BENCH_DATA_DIRS"
    cd "$run"   # no stray .env from the caller's directory
    export PYTHONPATH=$REPO
    # the ACME issuing service runs too; nothing is due, but keep it on loopback anyway
    export ACME_DIRECTORY_URL=https://127.0.0.1:1/directory ACME_STAGING_URL=https://127.0.0.1:1/directory
    # like the peers (all access logs off): the request log is a feature, not the proxy's cost
    export OAUTHPROXY_REQUEST_LOG=${OAUTHPROXY_REQUEST_LOG:-off}
    # the helper outlives nothing: it exits once the proxy exists (or after 60 s)
    "$VENV/bin/python" "$REPO/bench/configure_proxy.py" --api "http://127.0.0.1:$api_port" \
        --data-dir "$data" --origin "$origin" --scheme "$scheme" --cert "$cert" --key "$key" \
        >"$run/configure_proxy.out" 2>&1 &
    exec "$VENV/bin/twistd" -n --pidfile= oauthproxy \
        --http "tcp:$port:interface=127.0.0.1" --https "$https" \
        --api "tcp:$api_port:interface=127.0.0.1" --data-dir "$data" --log-level warn
fi

report() {  # report DIR: the gateway's figures from DIR/{plain,tls}/raw.tsv
    python3 - "$1" <<'EOF'
"""Print the gateway's figures and its ratios to nginx and tw-agent, per cell."""
import csv, os, statistics, sys

rows = []
for part in ("plain", "tls"):
    path = os.path.join(sys.argv[1], part, "raw.tsv")
    if os.path.exists(path):
        rows += list(csv.DictReader(open(path), delimiter="\t"))
cells = {}
for r in rows:
    cells.setdefault((r["path"], r["conns"], r["system"]), []).append(r)

def med(system, path, conns, field):
    rs = cells.get((path, conns, system), [])
    v = [float(r[field]) for r in rs if r[field] != ""]
    return statistics.median(v) if v else None

print("\n## oauthproxy gateway vs peers (median of repetitions)\n")
print("| cell | gateway req/s | p50 ms | p99 ms | CPU us/req | x nginx | x tw-agent "
      "| tw-agent req/s | nginx req/s | tw-agent CPU us/req | x tw-agent by CPU |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for path, conns in sorted({(k[0], k[1]) for k in cells}, key=lambda k: (k[0] != "small", k)):
    for suffix in ("", "-tls"):
        gw = med("gateway" + suffix, path, conns, "rps")
        if gw is None:
            continue
        ng = med("nginx" + suffix, path, conns, "rps")
        tw = med("tw-agent" + suffix, path, conns, "rps")
        cpu = med("gateway" + suffix, path, conns, "proxy_cpu_us_per_req")
        tw_cpu = med("tw-agent" + suffix, path, conns, "proxy_cpu_us_per_req")
        fmt = lambda v, spec: "-" if v is None else spec % v  # noqa: E731
        print(f"| /{path} c{conns}{' https' if suffix else ''} | {gw:.0f} "
              f"| {med('gateway' + suffix, path, conns, 'p50_us') / 1000:.3f} "
              f"| {med('gateway' + suffix, path, conns, 'p99_us') / 1000:.3f} "
              f"| {fmt(cpu, '%.1f')} | {fmt(ng and gw / ng, '%.3f')} | {fmt(tw and gw / tw, '%.2f')} "
              f"| {fmt(tw, '%.0f')} | {fmt(ng, '%.0f')} | {fmt(tw_cpu, '%.1f')} "
              f"| {fmt(tw_cpu and cpu and tw_cpu / cpu, '%.2f')} |")
print("\nx tw-agent by CPU = tw-agent's CPU us/req / the gateway's: the ratio that depends "
      "least on other load (req/s ratios need an idle machine).")
print(f"\nraw data and the driver's full tables: {sys.argv[1]}/{{plain,tls}}/")
EOF
}

if [[ ${1:-} == --report ]]; then report "$2"; exit 0; fi   # again, from a finished run

RUN_PEERS=${RUN_PEERS:-$REPO/../shared/bench/run_peers.sh}
[[ -x $RUN_PEERS || -f $RUN_PEERS ]] || { echo "run_peers.sh not found at $RUN_PEERS" >&2; exit 1; }
: "${SYSTEMS:=direct nginx tw-agent nginx-tls tw-agent-tls}"
if [[ -z ${PY:-} ]]; then
    if [[ -x /tmp/benchvenv/bin/python ]]; then PY=/tmp/benchvenv/bin/python; else PY=$VENV/bin/python; fi
fi
export PY
RESULTS=${RESULTS:-$(mktemp -d /tmp/gateway-bench.XXXXXX)}
mkdir -p "$RESULTS"
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
ARGS='port={PORT} tls_port={TLS_PORT} origin={ORIGIN_URL} cert={CERT} key={KEY} run={RUN}'

# The driver stops the daemon and its redis-server by PID; should the daemon's
# supervisor have restarted a redis-server during that, stop it here (by PID).
export GATEWAY_BENCH_DATA_DIRS=$RESULTS/data_dirs
: > "$GATEWAY_BENCH_DATA_DIRS"
stop_leftovers() {
    local dir pid
    while read -r dir; do
        for pid in $(pgrep -f "redis-server.*$dir/redis.sock" || true); do
            echo "stopping leftover redis-server $pid ($dir)" >&2
            kill "$pid" 2>/dev/null || true
        done
    done < "$GATEWAY_BENCH_DATA_DIRS"
}
trap stop_leftovers EXIT

plain=() tls=()
for s in $SYSTEMS; do if [[ $s == *-tls ]]; then tls+=("$s"); else plain+=("$s"); fi; done

if ((${#plain[@]})); then
    echo "== pass 1/2: plain HTTP (${plain[*]} gateway)" >&2
    SYSTEMS="${plain[*]}" TARGET_NAME=gateway TARGET_TLS= TARGET_TLS_PORT= \
        TARGET_CMD="bash $SELF --target scheme=http $ARGS" RESULTS_DIR=$RESULTS/plain \
        bash "$RUN_PEERS"
fi
if ((${#tls[@]})); then
    # TARGET_TLS also adds the plain "gateway" row; it fails the driver's body check
    # (HTTP redirects to HTTPS) and is skipped.
    echo "== pass 2/2: HTTPS (${tls[*]} gateway-tls)" >&2
    SYSTEMS="${tls[*]}" TARGET_NAME=gateway TARGET_TLS=1 \
        TARGET_CMD="bash $SELF --target scheme=https $ARGS" RESULTS_DIR=$RESULTS/tls \
        bash "$RUN_PEERS"
fi

report "$RESULTS"
