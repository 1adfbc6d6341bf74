#!/usr/bin/env bash
# oauthproxy quick start, for a fresh Debian 12 machine (run as root, or with sudo available).
#
#   ./quickstart.sh run    install, then run the daemon in the foreground
#                          (HTTP :8080, HTTPS :8443, admin API 127.0.0.1:9000,
#                          embedded redis-server, data in ./oauthproxy-data)
#   ./quickstart.sh test   install everything the test suite needs and run it;
#                          the last line is "N passed, N failed[, N skipped]"
#
# Extra arguments after "run" go to `twistd oauthproxy` (e.g. --log-format json).
# Settings also come from the environment and ./.env (see README.rst).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

# --- the Debian packages, in one place -------------------------------------------------
RUN_PACKAGES=(python3 python3-venv ca-certificates redis-server)
TEST_PACKAGES=(
    redis-server pebble haproxy nginx wrk nghttp2-client curl openssl prometheus
    chromium chromium-driver docker.io busybox-static
)
VENV=.venv

log() { printf 'quickstart: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else log "need root to run: $*"; exit 1
    fi
}

install_packages() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    if [ ${#missing[@]} -eq 0 ]; then return; fi
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_python() {
    local extras=$1
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating $VENV"
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # compat mode: twistd finds the plugin in twisted/plugins/ through sys.path
    "$VENV/bin/python" -m pip install -q -e ".${extras}" --config-settings editable_mode=compat
    # regenerate the plugin cache as the installing user (see README, "twistd plugin")
    "$VENV/bin/python" -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
}

# Is a setting given in the environment or in ./.env?  (Then we do not override it.)
configured() {
    for name in "$@"; do
        if [ -n "${!name:-}" ]; then return 0; fi
        if [ -f .env ] && grep -Eq "^[[:space:]]*(export[[:space:]]+)?${name}=" .env; then return 0; fi
    done
    return 1
}

run() {
    install_packages "${RUN_PACKAGES[@]}"
    install_python ""
    local args=()
    configured OAUTHPROXY_HTTP HTTP_PORT || args+=(--http tcp:8080)
    configured OAUTHPROXY_HTTPS HTTPS_PORT || args+=(--https tcp:8443)
    configured OAUTHPROXY_API || args+=(--api tcp:9000:interface=127.0.0.1)
    configured OAUTHPROXY_DATA_DIR || args+=(--data-dir ./oauthproxy-data)
    log "the command line is $PWD/$VENV/bin/oauthproxyctl (export PATH=\"$PWD/$VENV/bin:\$PATH\")"
    log "the web console is http://127.0.0.1:9000/ (sign in with the admin token the daemon prints on its first start)"
    if [ -n "${QUICKSTART_INSTALL_ONLY:-}" ]; then
        log "installed (QUICKSTART_INSTALL_ONLY set: not starting)"
        return
    fi
    log "starting: twistd -n --pidfile= oauthproxy ${args[*]} $*"
    exec "$VENV/bin/twistd" -n --pidfile= oauthproxy "${args[@]}" "$@"
}

# Turn trial's last summary line into "N passed, N failed[, N skipped]".
summarize() {
    local line=$1 passed=0 failed=0 skipped=0 name count
    for pair in $(grep -oE '[a-zA-Z]+=[0-9]+' <<<"$line"); do
        name=${pair%%=*}; count=${pair##*=}
        case $name in
            successes|expectedFailures) passed=$((passed + count)) ;;
            failures|errors|unexpectedSuccesses) failed=$((failed + count)) ;;
            skips) skipped=$((skipped + count)) ;;
        esac
    done
    if [ "$skipped" -gt 0 ]; then
        echo "$passed passed, $failed failed, $skipped skipped"
    else
        echo "$passed passed, $failed failed"
    fi
    [ "$failed" -eq 0 ]
}

test_suite() {
    install_packages "${RUN_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    # the MCP conformance test installs its npm packages (and a Node 22 binary) itself
    command -v npm >/dev/null || install_packages npm
    install_python "[test]"
    local output status summary
    output=$(mktemp)
    set +e
    "$VENV/bin/python" -m twisted.trial -j2 tests 2>&1 | tee "$output"
    status=${PIPESTATUS[0]}
    set -e
    summary=$(grep -E '^(PASSED|FAILED) \(' "$output" | tail -n 1 || true)
    rm -f "$output"
    if [ -z "$summary" ]; then
        echo "0 passed, 1 failed"
        exit 1
    fi
    summarize "$summary" || exit 1
    exit "$status"
}

case "${1:-}" in
    run) shift; run "$@" ;;
    test) test_suite ;;
    *) echo "usage: $0 run [twistd oauthproxy options] | $0 test" >&2; exit 2 ;;
esac
