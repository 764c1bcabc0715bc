#!/usr/bin/env bash
# Entry point of the benchmarks: `make bench [QUICK=1]` and `make bench-cache [QUICK=1]`.
# Installs its own peers (idempotently), then runs bench/bench.py with every
# argument passed through (e.g. --quick, --servers nginx,caddy); with --cache
# as the first argument, bench/cache_bench.py instead.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCH_DIR")"
PEERS_VENV="$BENCH_DIR/.venv-peers"
REQUIREMENTS="$BENCH_DIR/requirements-peers.txt"
PYTHON="${PYTHON:-python3}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# Debian packages: "package:command" pairs, installed only when missing.
# ab (apache2-utils) drives the HEAD workload, which wrk cannot read.
DEBIAN_PEERS="nginx:nginx caddy:caddy wrk:wrk apache2-utils:ab"
SCRIPT="bench.py"
RUN_PYTHON="$PEERS_VENV/bin/python"

if [ "${1:-}" = "--cache" ]; then
    shift
    # The cache benchmark starts moto from the project's tests (tests/s3server.py),
    # so it runs under the project's .venv; the peers' venv still draws its chart.
    SCRIPT="cache_bench.py"
    RUN_PYTHON="$REPO_DIR/.venv/bin/python"
    DEBIAN_PEERS="nginx:nginx wrk:wrk"
    if [ ! -x "$RUN_PYTHON" ]; then
        echo "bench: $RUN_PYTHON is missing: run \`make setup\` first" >&2
        exit 1
    fi
fi

install_debian_peers() {
    local missing="" pair
    for pair in $DEBIAN_PEERS; do
        command -v "${pair##*:}" >/dev/null 2>&1 || missing="$missing ${pair%%:*}"
    done
    [ -n "$missing" ] || return 0
    echo "bench: installing Debian packages:$missing"
    $SUDO apt-get update -qq
    # policy-rc.d-less containers may try to start the system services; we
    # never use them (every server runs from a generated config).
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
}

install_python_peers() {
    local stamp
    stamp="$PEERS_VENV/.stamp-$(cksum "$REQUIREMENTS" | cut -d' ' -f1)"
    [ -f "$stamp" ] && return 0
    echo "bench: setting up $PEERS_VENV"
    "$PYTHON" -m venv "$PEERS_VENV"
    local log="$PEERS_VENV/pip-install.log"
    if ! { "$PEERS_VENV/bin/pip" install --upgrade pip \
        && "$PEERS_VENV/bin/pip" install -r "$REQUIREMENTS"; } >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        echo "bench: pip install failed (full log: $log)" >&2
        exit 1
    fi
    rm -f "$PEERS_VENV"/.stamp-*
    touch "$stamp"
}

install_debian_peers
install_python_peers

# 10,000 idle connections need more descriptors than the default 1,024.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cd "$REPO_DIR"
exec "$RUN_PYTHON" "$BENCH_DIR/$SCRIPT" "$@"
