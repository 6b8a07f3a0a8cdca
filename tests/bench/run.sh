#!/usr/bin/env bash
# Side-by-side benchmarks against the peer tools, in one run on loopback: node_exporter,
# postgres_exporter, redis_exporter and blackbox_exporter from Debian, against PostgreSQL and
# Redis servers and an MCP server (the official Python SDK) started here. Prints numbers and
# ratios; never passes or fails on a time.
#
#   ./tests/bench/run.sh [seconds per scenario, default 10] [--only host|postgres|redis|wsdaemon|all|notifier]...
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
if (( ${#missing[@]} )); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "Missing ${missing[*]}; as root: apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Packaged services must not hold the ports or skew the measurements.
    for service in prometheus-node-exporter prometheus-postgres-exporter prometheus-redis-exporter \
        prometheus-blackbox-exporter redis-server; do
        # Process names are cut at 15 characters: match the command line.
        pkill -f "^/usr/bin/$service( |$)" 2>/dev/null || true
    done
fi
if ! python3 -c 'import mcp.server.websocket, uvicorn, websockets' 2>/dev/null; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "Missing the MCP SDK; as root: python3 -m pip install 'mcp[ws]>=1.20,<2'" >&2
        exit 1
    fi
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'mcp[ws]>=1.20,<2'
fi

cargo build --release --locked -p mcpwatch-exporter -p mcpwatch-notifier
prometheus-node-exporter --version 2>&1 | head -1
prometheus-postgres-exporter --version 2>&1 | head -1
prometheus-redis-exporter --version 2>&1 | head -1
prometheus-blackbox-exporter --version 2>&1 | head -1
exec python3 tests/bench/bench.py --exporter target/release/mcpwatch-exporter \
    --notifier target/release/mcpwatch-notifier --seconds "$seconds" "$@"
