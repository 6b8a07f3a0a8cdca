#!/usr/bin/env bash
# Side-by-side benchmarks against the peer tools, in one run on loopback. Prints numbers and
# ratios; never passes or fails on a time.
#
#   ./tests/bench/run.sh [seconds per scenario, default 10]
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:-10}
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v prometheus-node-exporter >/dev/null 2>&1 || missing+=(prometheus-node-exporter)
if (( ${#missing[@]} )); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "Missing ${missing[*]}; as root: apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    pkill -x prometheus-node-exporter 2>/dev/null || true
fi

cargo build --release --locked -p mcpwatch-exporter
exporter=$(pwd)/target/release/mcpwatch-exporter

echo "== host: mcpwatch-exporter (host collector only) vs prometheus-node-exporter (defaults) =="
prometheus-node-exporter --version 2>&1 | head -1
python3 tests/bench/compare.py --seconds "$seconds" \
    --ours "$exporter" \
    --peer "prometheus-node-exporter" --peer-name node_exporter
