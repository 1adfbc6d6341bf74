#!/usr/bin/env bash
# run_gateway.sh - benchmark the oauthproxy gateway against nginx and the bare
# Twisted pool proxy (tw-agent) with ../shared/bench/run_peers.sh.
#
# The target is the real daemon (`twistd -n oauthproxy`, embedded redis-server,
# fresh data directory in run_peers.sh's run dir, log level warn) with one proxy
# 127.0.0.1 -> the origin, created through the admin API by
# bench/configure_proxy.py once the daemon answers. Its CPU is the process tree's:
# the embedded redis-server (and any worker) counts too.
#
# One run is several passes of run_peers.sh, each with its own daemon and origin;
# ratios are taken within a pass:
#   1. log-on:  the plain peers + "gateway"       (request log on, the default)
#   2. log-off: the plain peers + "gateway-nolog" (OAUTHPROXY_REQUEST_LOG=off)
#   3. workers (WORKERS=N > 1): nginx with worker_processes N (PROXY_WORKERS=N) +
#      "gateway-wN" (`--workers N`, log on); compared with pass 1 (1 worker each)
#   4. tls (only if SYSTEMS names *-tls peers): those + "gateway-tls" (log on; the
#      proxy has enable_https, the run's {CERT}/{KEY} stored as certificate "bench")
# At the end it prints, per cell, req/s, p50/p99 and CPU us/req of the gateway
# with the log on and off, nginx and tw-agent, the ratios the issue asks for
# (x tw-agent, x nginx, by req/s and by CPU), what the log costs (CPU and p99),
# and with WORKERS the 1-worker vs N-worker ratios of the gateway and nginx, with
# the ceiling that the cores shared with wrk and the origin allow.
# `run_gateway.sh --report DIR` prints that again from a finished run.
#
# Knobs (environment, defaults in brackets):
#   RUN_PEERS  the driver [<repo>/../shared/bench/run_peers.sh, else /work/shared/bench/...]
#   SYSTEMS    peers [direct nginx tw-agent]; add nginx-tls tw-agent-tls for the tls pass
#   SCENARIOS / TLS_SCENARIOS [small:50:4 64k:50:4 small:1:3] / [small:50:4 64k:50:4]
#   WORKERS [1]  N > 1 adds pass 3 (needs `twistd oauthproxy --workers`)
#   PASSES [log-on log-off workers tls]  which passes to run (those that apply)
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
    # --target scheme=S log=on|off workers=N port=P tls_port=P origin=URL cert=F key=F run=DIR
    shift
    scheme=http log=on workers=1 port= tls_port= origin= cert= key= run=
    for kv in "$@"; do
        case $kv in
            scheme=*|log=*|workers=*|port=*|tls_port=*|origin=*|cert=*|key=*|run=*) declare "$kv";;
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
    export OAUTHPROXY_REQUEST_LOG=$log
    extra=()
    ((workers > 1)) && extra=(--workers "$workers")
    # the helper outlives nothing: it exits once the proxy exists (or after 60 s)
    "$VENV/bin/python" "$REPO/bench/configure_proxy.py" --api "http://127.0.0.1:$api_port" \
        --data-dir "$data" --origin "$origin" --scheme "$scheme" --cert "$cert" --key "$key" \
        >"$run/configure_proxy.out" 2>&1 &
    exec "$VENV/bin/twistd" -n --pidfile= oauthproxy \
        --http "tcp:$port:interface=127.0.0.1" --https "$https" \
        --api "tcp:$api_port:interface=127.0.0.1" --data-dir "$data" --log-level warn "${extra[@]}"
fi

report() {  # report DIR: the figures from DIR/<pass>/raw.tsv
    python3 "$REPO/bench/gateway_report.py" "$1" "${WORKERS:-1}"
}

if [[ ${1:-} == --report ]]; then report "$2"; exit 0; fi   # again, from a finished run

if [[ -z ${RUN_PEERS:-} ]]; then
    RUN_PEERS=$REPO/../shared/bench/run_peers.sh
    [[ -f $RUN_PEERS ]] || RUN_PEERS=/work/shared/bench/run_peers.sh
fi
[[ -f $RUN_PEERS ]] || { echo "run_peers.sh not found at $RUN_PEERS (set RUN_PEERS)" >&2; exit 1; }
: "${SYSTEMS:=direct nginx tw-agent}"
: "${WORKERS:=1}"
: "${PASSES:=log-on log-off workers tls}"
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
want_pass() { [[ " $PASSES " == *" $1 "* ]]; }

run_pass() {  # run_pass NAME SYSTEMS TARGET_NAME TARGET_ARGS [VAR=VALUE...]
    local name=$1 systems=$2 target=$3 args=$4; shift 4
    echo "== pass $name: $systems + $target" >&2
    env "$@" SYSTEMS="$systems" TARGET_NAME="$target" TARGET_TLS= TARGET_TLS_PORT= \
        TARGET_CMD="bash $SELF --target $args $ARGS" RESULTS_DIR="$RESULTS/$name" \
        bash "$RUN_PEERS"
}

if ((${#plain[@]})); then
    if want_pass log-on; then run_pass log-on "${plain[*]}" gateway "scheme=http log=on"; fi
    if want_pass log-off; then run_pass log-off "${plain[*]}" gateway-nolog "scheme=http log=off"; fi
fi
if ((WORKERS > 1)) && want_pass workers; then
    if "$VENV/bin/twistd" oauthproxy --help 2>/dev/null | grep -q -- --workers; then
        run_pass workers nginx "gateway-w$WORKERS" "scheme=http log=on workers=$WORKERS" \
            PROXY_WORKERS="$WORKERS"
    else
        echo "WORKERS=$WORKERS: this daemon has no --workers option; the workers pass is skipped" >&2
    fi
fi
if ((${#tls[@]})) && want_pass tls; then
    # TARGET_TLS also adds the plain "gateway" row; it fails the driver's body check
    # (HTTP redirects to HTTPS) and is skipped.
    echo "== pass tls: ${tls[*]} + gateway-tls" >&2
    SYSTEMS="${tls[*]}" TARGET_NAME=gateway TARGET_TLS=1 \
        TARGET_CMD="bash $SELF --target scheme=https log=on $ARGS" RESULTS_DIR=$RESULTS/tls \
        bash "$RUN_PEERS"
fi

report "$RESULTS"
