#!/usr/bin/env bash
# Side-by-side benchmarks against the peer tools, in one run on loopback: node_exporter,
# postgres_exporter, redis_exporter and blackbox_exporter from Debian, against PostgreSQL and
# Redis servers and MCP servers (the official Python SDK 1.x and 2.x, rmcp 3.x) started
# here. Prints numbers and ratios; never passes or fails on a time.
#
#   ./tests/bench/run.sh [seconds per scenario, default 10]
#       [--only host|postgres|redis|wsdaemon|mcp|scaling|rss|all|notifier|instrumentation]...
#       [--probes N, default 300]
#
# `--only mcp` is the MCP probe per protocol era, mcpwatch's /probe beside blackbox_exporter's
# (tests/bench/probe_bench.py). `--only scaling` is the exporter's cost at 1, 10, 100 and 300
# MCP daemon targets, and its memory after a reload back to 1 (tests/bench/scaling.py).
# `--only instrumentation` is the cost of mcpwatch-mcp in an
# rmcp server, with and without it (tests/bench/mcp_overhead_bench.py).
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=10
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    seconds=$1
    shift
fi

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v prometheus-node-exporter >/dev/null 2>&1 || missing+=(prometheus-node-exporter)
command -v prometheus-postgres-exporter >/dev/null 2>&1 || missing+=(prometheus-postgres-exporter)
command -v prometheus-redis-exporter >/dev/null 2>&1 || missing+=(prometheus-redis-exporter)
command -v prometheus-blackbox-exporter >/dev/null 2>&1 || missing+=(prometheus-blackbox-exporter)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || missing+=(postgresql)

# The official Python MCP SDK, one virtual environment per generation, where and as
# tests/run.sh makes them (MCPWATCH_VENVS): mcp1 holds 1.x (the legacy era, and WebSocket),
# mcp2 holds 2.x (both eras).
VENVS=${MCPWATCH_VENVS:-/var/cache/mcpwatch/venvs}
declare -A venv_spec=([mcp1]='mcp[ws]>=1.20,<2' [mcp2]='mcp>=2.3,<3')
declare -A venv_probe=(
    [mcp1]='import mcp.server.websocket, uvicorn, websockets, importlib.metadata as m; assert m.version("mcp").startswith("1.")'
    [mcp2]='import mcp.server.mcpserver, uvicorn, importlib.metadata as m; assert m.version("mcp").startswith("2.")'
)
venv_missing=()
for venv in mcp1 mcp2; do
    "$VENVS/$venv/bin/python" -c "${venv_probe[$venv]}" 2>/dev/null || venv_missing+=("$venv")
done
if (( ${#venv_missing[@]} )) && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=(python3-venv)
fi

if (( ${#missing[@]} + ${#venv_missing[@]} )); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "Missing: ${missing[*]:-} ${venv_missing[*]/#/$VENVS/}; as root:" >&2
        (( ${#missing[@]} )) && echo "  apt-get install -y --no-install-recommends ${missing[*]}" >&2
        for venv in "${venv_missing[@]}"; do
            echo "  python3 -m venv $VENVS/$venv && $VENVS/$venv/bin/python -m pip install '${venv_spec[$venv]}'" >&2
        done
        exit 1
    fi
fi
if (( ${#missing[@]} )); then
    # Packaged services must not start: they would hold the ports and skew the measurements.
    policy_added=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        policy_added=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    (( policy_added )) && rm -f /usr/sbin/policy-rc.d
fi
for venv in "${venv_missing[@]}"; do
    echo "Installing ${venv_spec[$venv]} into $VENVS/$venv" >&2
    # One whose interpreter no longer runs (its base Python went) is made anew.
    clear=()
    [[ -e "$VENVS/$venv" ]] && ! "$VENVS/$venv/bin/python" -c '' 2>/dev/null && clear=(--clear)
    mkdir -p "$VENVS"
    python3 -m venv "${clear[@]}" "$VENVS/$venv"
    "$VENVS/$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${venv_spec[$venv]}"
    "$VENVS/$venv/bin/python" -c "${venv_probe[$venv]}"
done

cargo build --release --locked -p mcpwatch-exporter -p mcpwatch-notifier -p mcpwatch-rmcp-fixture
cargo build --release --locked -p mcpwatch-mcp --example mcp-server
prometheus-node-exporter --version 2>&1 | head -1
prometheus-postgres-exporter --version 2>&1 | head -1
prometheus-redis-exporter --version 2>&1 | head -1
prometheus-blackbox-exporter --version 2>&1 | head -1
exec python3 tests/bench/bench.py --exporter target/release/mcpwatch-exporter \
    --notifier target/release/mcpwatch-notifier --rmcp-fixture target/release/mcpwatch-rmcp-fixture \
    --mcp-server target/release/examples/mcp-server \
    --venvs "$VENVS" --seconds "$seconds" "$@"
