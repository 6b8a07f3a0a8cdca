#!/usr/bin/env python3
"""Side-by-side scrape benchmarks: mcpwatch-exporter against the peer exporters, in one run.

Every exporter is started on a free loopback port and scraped with wrk over keep-alive
connections. Each scenario reports scrapes per second, p50 and p99 latency, CPU seconds per
1,000 scrapes (from /proc/<pid>/stat) and each process's peak resident memory (VmHWM). The
PostgreSQL comparison also counts, on the server, the statements each exporter runs and the
connections it opens per scrape. The MCP daemon comparison probes an MCP server built with
the official Python SDK (tests/fixtures/mcp_server.py) and sets the exporter's time beside
the daemon's own: a direct GET of its /health, blackbox_exporter's probe of it, and
mcpwatch with and without the MCP probes. Ratios are printed; nothing passes or fails on a
time.

    python3 tests/bench/bench.py --exporter target/release/mcpwatch-exporter [--seconds 10]
        [--notifier target/release/mcpwatch-notifier]
        [--rmcp-fixture target/release/mcpwatch-rmcp-fixture] [--venvs DIR] [--probes 300]

The notifier's throughput is described in notifier_bench.py, the MCP probe per protocol era
(`--only mcp`, mcpwatch's /probe beside blackbox_exporter's) in probe_bench.py.
"""

import argparse
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

# What Prometheus 2.x sends with each scrape.
PROMETHEUS_HEADERS = [
    "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding: gzip",
]

SCENARIOS = [
    ("1 connection", 1, []),
    ("8 connections", 8, []),
    ("1 connection, Prometheus headers (gzip)", 1, PROMETHEUS_HEADERS),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, check, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            if check():
                return
        except (OSError, subprocess.CalledProcessError):
            pass
        time.sleep(0.1)
    sys.exit(f"gave up waiting for {what}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15; fields[0] is field 3.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def to_ms(text):
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url, connections, seconds, headers):
    args = ["wrk", f"-t{min(connections, 2)}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": to_ms(latency["50"]),
        "p99": to_ms(latency["99"]),
        "errors": int(errors.group(1)) if errors else 0,
    }


class Exporter:
    """An exporter process on a free port, stopped by stop()."""

    def __init__(self, name, command, env=None, listen_flag="--web.listen-address"):
        self.name = name
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.log_path = f"/tmp/bench-{name}.log"
        log = open(self.log_path, "w")
        full_env = dict(os.environ, **(env or {}))
        self.proc = subprocess.Popen(
            command + [f"{listen_flag}=127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
        wait_until(f"{name} to serve", lambda: self.ready())

    def ready(self):
        if self.proc.poll() is not None:
            sys.exit(f"{self.name} exited; see {self.log_path}")
        urllib.request.urlopen(self.url, timeout=5).read()
        return True

    def series(self):
        body = urllib.request.urlopen(self.url, timeout=10).read().decode()
        return sum(1 for line in body.splitlines() if line and not line.startswith("#"))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def as_postgres_user():
    """The uid and gid initdb and postgres must run as when we are root."""
    if os.geteuid() != 0:
        return None
    user = pwd.getpwnam("postgres")
    return user.pw_uid, user.pw_gid


def pg_bin():
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(os.path.realpath(found))
    versions = sorted(
        d for d in os.listdir("/usr/lib/postgresql") if os.path.exists(f"/usr/lib/postgresql/{d}/bin/initdb")
    )
    return f"/usr/lib/postgresql/{versions[-1]}/bin"


class Postgres:
    """A PostgreSQL server in a temporary directory, with pg_stat_statements and a table of
    data, and one login role per exporter so that each one's statements can be counted."""

    def __init__(self, roles):
        self.bin = pg_bin()
        self.dir = tempfile.mkdtemp(prefix="mcpwatch-bench-pg-")
        self.owner = as_postgres_user()
        if self.owner:
            os.chown(self.dir, *self.owner)
        self.port = free_port()
        data = f"{self.dir}/data"
        self.run([f"{self.bin}/initdb", "-A", "trust", "-U", "postgres", "--no-sync", "-D", data])
        with open(f"{data}/pg_hba.conf", "w") as f:
            f.write("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        settings = [
            f"port={self.port}",
            "listen_addresses=127.0.0.1",
            f"unix_socket_directories={self.dir}",
            "shared_preload_libraries=pg_stat_statements",
            "pg_stat_statements.track=all",
            "max_connections=300",
            "fsync=off",
        ]
        command = [f"{self.bin}/postgres", "-D", data]
        for s in settings:
            command += ["-c", s]
        self.log = open(f"{self.dir}/postgres.log", "w")
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=self.demote)
        wait_until("PostgreSQL", lambda: self.sql("SELECT 1") == "1")
        self.passwords = {}
        for role in roles:
            password = f"bench-{role}-{os.getpid()}"
            self.passwords[role] = password
            self.sql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}' IN ROLE pg_monitor")
        self.sql("CREATE EXTENSION pg_stat_statements")
        # Something to report: a few tables with rows, as an application database has.
        self.run([f"{self.bin}/pgbench", "-i", "-s", "2", "-q", "-h", self.dir, "-p", str(self.port), "-U", "postgres", "postgres"])

    def demote(self):
        if self.owner:
            os.setgid(self.owner[1])
            os.setuid(self.owner[0])

    def run(self, command):
        subprocess.run(command, check=True, capture_output=True, preexec_fn=self.demote)

    def sql(self, statement):
        out = subprocess.run(
            [f"{self.bin}/psql", "-h", self.dir, "-p", str(self.port), "-U", "postgres", "-d", "postgres", "-Atqc", statement],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()

    def dsn(self, role):
        return f"postgresql://{role}:{self.passwords[role]}@127.0.0.1:{self.port}/postgres?sslmode=disable"

    def counters(self, role):
        """Statements run by `role`, and sessions opened on the server; in one psql session,
        which the caller discounts."""
        statements, sessions = self.sql(
            "SELECT (SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s "
            f"JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = '{role}'), "
            "(SELECT coalesce(sum(sessions), 0) FROM pg_stat_database)"
        ).split("|")
        return int(statements), int(sessions)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """A Redis server with a password and some keys."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="mcpwatch-bench-redis-")
        self.port = free_port()
        self.password = f"bench-redis-{os.getpid()}"
        self.log = open(f"{self.dir}/redis.log", "w")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--requirepass", self.password, "--dir", self.dir],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_until("Redis", lambda: self.cli("PING") == "PONG")
        # 10,000 keys in two databases, some with a time to live, and some traffic.
        commands = []
        for i in range(10_000):
            commands.append(f"SET key:{i} value-{i}" + (" EX 3600" if i % 3 == 0 else ""))
        commands += [f"GET key:{i}" for i in range(0, 2000, 7)]
        commands += ["SELECT 1"] + [f"SET other:{i} x" for i in range(500)]
        subprocess.run(self.cli_command() + ["--pipe"], input=self.resp(commands), capture_output=True, check=True)

    def cli_command(self):
        return ["redis-cli", "-p", str(self.port), "--no-auth-warning", "-a", self.password]

    def cli(self, *args):
        return subprocess.run(self.cli_command() + list(args), capture_output=True, text=True, check=True).stdout.strip()

    @staticmethod
    def resp(commands):
        out = []
        for command in commands:
            parts = command.split(" ")
            out.append(f"*{len(parts)}\r\n" + "".join(f"${len(p)}\r\n{p}\r\n" for p in parts))
        return "".join(out).encode()

    def url(self):
        return f"redis://:{self.password}@127.0.0.1:{self.port}/"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


class McpDaemon:
    """The SDK's MCP server (1.x, from the mcp1 virtual environment) with its /health, as a
    daemon to probe."""

    def __init__(self, venvs):
        self.port = free_port()
        self.log = open("/tmp/bench-mcp-daemon.log", "w")
        self.proc = subprocess.Popen(
            [f"{venvs}/mcp1/bin/python", f"{ROOT}/tests/fixtures/mcp_server.py", "--port", str(self.port),
             "--tools", "29", "--page-size", "100"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.health = f"http://127.0.0.1:{self.port}/health"
        wait_until("the MCP daemon", lambda: urllib.request.urlopen(self.health, timeout=5).read())

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wsdaemon_comparison(ours_bin, seconds, venvs):
    """Scrape latency with one daemon target beside the daemon's own answer time."""
    daemon = McpDaemon(venvs)
    work = tempfile.mkdtemp(prefix="mcpwatch-bench-wsdaemon-")
    configs = {
        "health": f"health_url: {daemon.health}",
        "health+ws": f"health_url: {daemon.health}\n      websocket_url: ws://127.0.0.1:{daemon.port}/ws",
        "health+ws+http": f"health_url: {daemon.health}\n      websocket_url: ws://127.0.0.1:{daemon.port}/ws"
                          f"\n      mcp_url: http://127.0.0.1:{daemon.port}/mcp",
    }
    with open(f"{work}/blackbox.yml", "w") as f:
        f.write("modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n")
    rows = []

    def run(name, url, exporter=None, headers=()):
        before = cpu_seconds(daemon.proc.pid)
        before_exporter = cpu_seconds(exporter.proc.pid) if exporter else 0.0
        r = wrk(url, 1, seconds, list(headers))
        n = max(r["requests"], 1)
        r["daemon_cpu_ms"] = (cpu_seconds(daemon.proc.pid) - before) / n * 1000
        r["exporter_cpu_ms"] = (cpu_seconds(exporter.proc.pid) - before_exporter) / n * 1000 if exporter else 0.0
        r["rss"] = peak_rss_kib(exporter.proc.pid) if exporter else 0
        rows.append((name, r))

    try:
        # The daemon alone, a new connection per request as a probe makes.
        run("daemon /health, direct", daemon.health, headers=["Connection: close"])
        blackbox = Exporter("blackbox_exporter", ["prometheus-blackbox-exporter", f"--config.file={work}/blackbox.yml"])
        try:
            blackbox.url = (blackbox.url.replace("/metrics", "/probe")
                            + f"?module=http_2xx&target={urllib.parse.quote(daemon.health)}")
            run("blackbox_exporter http probe of /health", blackbox.url, blackbox)
        finally:
            blackbox.stop()
        for name, target in configs.items():
            with open(f"{work}/{name}.yml", "w") as f:
                f.write(f"collectors:\n  host: {{enabled: false}}\n  wsdaemon:\n    - name: bench\n      {target}\n")
            ours = Exporter(f"mcpwatch({name})", [ours_bin, f"--config.file={work}/{name}.yml"])
            try:
                run(ours.name, ours.url, ours)
            finally:
                ours.stop()
    finally:
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)

    print("\n== MCP daemon: one target, 1 connection; the daemon is the SDK's Python server ==")
    print(f"{'what is measured':<42} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8} {'daemon CPU ms':>14} "
          f"{'exporter CPU ms':>16} {'peak RSS MiB':>13} {'errors':>7}")
    for name, r in rows:
        print(f"{name:<42} {r['rps']:>8.1f} {r['p50']:>8.3f} {r['p99']:>8.3f} {r['daemon_cpu_ms']:>14.3f} "
              f"{r['exporter_cpu_ms']:>16.3f} {r['rss'] / 1024:>13.1f} {r['errors']:>7}")
    by = dict(rows)
    direct, blackbox_row, health = by["daemon /health, direct"], by["blackbox_exporter http probe of /health"], by["mcpwatch(health)"]
    full = by["mcpwatch(health+ws+http)"]
    lines = [
        f"wsdaemon: added to the daemon's own /health time (p50 {direct['p50']:.3f} ms): "
        f"mcpwatch {health['p50'] - direct['p50']:+.3f} ms, blackbox_exporter {blackbox_row['p50'] - direct['p50']:+.3f} ms; "
        f"exporter CPU per probe mcpwatch {health['exporter_cpu_ms']:.3f} ms vs blackbox {blackbox_row['exporter_cpu_ms']:.3f} ms "
        f"(x{health['exporter_cpu_ms'] / max(blackbox_row['exporter_cpu_ms'], 1e-9):.2f}); "
        f"peak RSS {health['rss'] / 1024:.1f} vs {blackbox_row['rss'] / 1024:.1f} MiB",
        f"wsdaemon: with both MCP probes a scrape takes p50 {full['p50']:.3f} ms; per scrape the daemon spends "
        f"{full['daemon_cpu_ms']:.3f} ms of CPU and mcpwatch {full['exporter_cpu_ms']:.3f} ms "
        f"({full['exporter_cpu_ms'] / max(full['daemon_cpu_ms'] + full['exporter_cpu_ms'], 1e-9):.0%} of the two)",
    ]
    for line in lines:
        print(line)
    return lines


def collector_rss(ours_bin, postgres, redis, venvs):
    """The exporter's resident memory with one collector alone, after 20 scrapes."""
    daemon = McpDaemon(venvs)
    work = tempfile.mkdtemp(prefix="mcpwatch-bench-rss-")
    for name in ("backups", "logs"):
        os.makedirs(f"{work}/{name}")
    for i in range(7):
        with open(f"{work}/backups/db-{i}.sql.gz", "wb") as f:
            f.write(os.urandom(4096))
    with open(f"{work}/logs/app.log", "w") as f:
        f.writelines(f"2026-12-06 INFO request {i} done\n" for i in range(1000))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=bench",
                    "-keyout", f"{work}/key.pem", "-out", f"{work}/cert.pem"], check=True, capture_output=True)
    off = "  host: {enabled: false}\n"
    configs = {
        "none (the exporter alone)": off,
        "host (defaults)": "",
        "postgres": off + f"  postgres:\n    - name: db\n      dsn: {postgres.dsn('mcpwatch_bench')}\n",
        "redis": off + f"  redis:\n    - name: cache\n      url: {redis.url()}\n",
        "wsdaemon (health, WebSocket, MCP)": off + f"  wsdaemon:\n    - name: daemon\n      health_url: {daemon.health}\n"
        f"      websocket_url: ws://127.0.0.1:{daemon.port}/ws\n      mcp_url: http://127.0.0.1:{daemon.port}/mcp\n",
        "http": off + f"  http:\n    - name: page\n      url: {daemon.health}\n",
        "files": off + f"  files:\n    - name: backups\n      path: {work}/backups/*.sql.gz\n      max_age: 1d\n",
        "certificates": off + f"  certificates:\n    - name: site\n      paths: [{work}/cert.pem]\n",
        "log_patterns": off + f"  log_patterns:\n    - name: app\n      path: {work}/logs/app.log\n"
        "      patterns:\n        - { name: errors, regex: ERROR }\n",
    }
    rows = []
    try:
        for name, collectors in configs.items():
            path = write_config("collectors:\n" + collectors if collectors else "{}\n")
            exporter = Exporter("mcpwatch-rss", [ours_bin, f"--config.file={path}"])
            try:
                for _ in range(20):
                    series = exporter.series()
                with open(f"/proc/{exporter.proc.pid}/status") as f:
                    status = dict(line.split(":", 1) for line in f)
                rows.append((name, series, int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])))
            finally:
                exporter.stop()
    finally:
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("\n== resident memory, one collector alone, after 20 scrapes ==")
    print(f"{'collector':<36} {'series':>7} {'RSS MiB':>8} {'peak MiB':>9}")
    for name, series, rss, hwm in rows:
        print(f"{name:<36} {series:>7} {rss / 1024:>8.1f} {hwm / 1024:>9.1f}")
    return ["rss, one collector alone: " + "; ".join(f"{n} {r / 1024:.1f} MiB" for n, _, r, _ in rows)]


def measure(exporter, connections, seconds, headers, postgres=None, role=None):
    before_cpu = cpu_seconds(exporter.proc.pid)
    before = postgres.counters(role) if postgres else None
    result = wrk(exporter.url, connections, seconds, headers)
    result["cpu_per_1k"] = (cpu_seconds(exporter.proc.pid) - before_cpu) / max(result["requests"], 1) * 1000
    if postgres:
        statements, sessions = postgres.counters(role)
        # The counting query runs as the superuser, in one session of its own.
        result["statements"] = (statements - before[0]) / max(result["requests"], 1)
        result["sessions_per_1k"] = (sessions - before[1] - 1) / max(result["requests"], 1) * 1000
    return result


# node_exporter's collectors for what mcpwatch's host collector covers by default: CPU,
# memory, load, filesystems, network devices, disk I/O, pressure, sockets, TCP and UDP
# counters, file handles, kernel counters, clock, the system's name.
NODE_EXPORTER_AS_OURS = ["cpu", "meminfo", "loadavg", "filesystem", "netdev", "diskstats", "pressure",
                         "sockstat", "netstat", "filefd", "stat", "timex", "time", "uname"]


CONFIGS = tempfile.TemporaryDirectory(prefix="mcpwatch-bench-configs-")


def write_config(text):
    """A configuration file for one exporter run, in a directory removed at exit."""
    handle, path = tempfile.mkstemp(dir=CONFIGS.name, suffix=".yml")
    with os.fdopen(handle, "w") as f:
        f.write(text)
    return path


def headline(title, rows, ours, peer):
    """One summary line: scrapes, series and series per second at 1 connection, ours / the peer's."""
    first = {n: r for l, n, r in rows if l == SCENARIOS[0][0]}
    mine, theirs = first[ours.name], first[peer.name]
    return (f"{title}: 1 connection: scrapes/s {mine['rps']:.1f} vs {peer.name} {theirs['rps']:.1f} "
            f"(x{mine['rps'] / theirs['rps']:.1f}); series per scrape {mine['series']} vs {theirs['series']}; "
            f"series/s {mine['series_per_s']:.0f} vs {theirs['series_per_s']:.0f} "
            f"(x{mine['series_per_s'] / max(theirs['series_per_s'], 1e-9):.2f})")


def compare_fresh(title, start_ours, start_peer, seconds, postgres=None, roles=(None, None)):
    """Starts both exporters (each a function returning an Exporter), compares them and
    stops them; returns the rows and the peak RSS of compare(), with the two exporters."""
    ours = start_ours()
    try:
        peer = start_peer()
        try:
            rows, rss = compare(title, ours, peer, seconds, postgres, roles)
        finally:
            peer.stop()
    finally:
        ours.stop()
    return rows, rss, ours, peer


def compare(title, ours, peer, seconds, postgres=None, roles=(None, None)):
    print(f"\n== {title}: {ours.name} vs {peer.name} ==")
    series = {e.name: e.series() for e in (ours, peer)}
    print(f"series per scrape: {ours.name} {series[ours.name]}, {peer.name} {series[peer.name]}")
    rows = []
    for label, connections, headers in SCENARIOS:
        # Alternate the two so that neither gets a quieter machine.
        for exporter, role in ((ours, roles[0]), (peer, roles[1])):
            r = measure(exporter, connections, seconds, headers, postgres, role)
            r["series"] = series[exporter.name]
            r["series_per_s"] = r["rps"] * r["series"]
            rows.append((label, exporter.name, r))
    extra = postgres is not None
    print(f"{'scenario':<42} {'exporter':<22} {'scrapes/s':>10} {'series':>7} {'series/s':>10} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'CPU s/1k':>9}"
          + (f" {'stmts/scrape':>12} {'conns/1k':>9}" if extra else "") + f" {'errors':>7}")
    for label, name, r in rows:
        print(f"{label:<42} {name:<22} {r['rps']:>10.1f} {r['series']:>7} {r['series_per_s']:>10.0f} {r['p50']:>8.3f} "
              f"{r['p99']:>8.3f} {r['cpu_per_1k']:>9.3f}"
              + (f" {r['statements']:>12.2f} {r['sessions_per_1k']:>9.1f}" if extra else "") + f" {r['errors']:>7}")
    print(f"ratios ({ours.name} / {peer.name}):")
    for label, _, _ in SCENARIOS:
        mine = next(r for l, n, r in rows if l == label and n == ours.name)
        theirs = next(r for l, n, r in rows if l == label and n == peer.name)
        print(f"  {label:<42} scrapes/s x{mine['rps'] / theirs['rps']:.2f}   "
              f"series/s x{mine['series_per_s'] / max(theirs['series_per_s'], 1e-9):.2f}   "
              f"p50 x{mine['p50'] / theirs['p50']:.3f}   "
              f"p99 x{mine['p99'] / theirs['p99']:.3f}   CPU/1k x{mine['cpu_per_1k'] / max(theirs['cpu_per_1k'], 1e-9):.3f}")
    rss = {e.name: peak_rss_kib(e.proc.pid) for e in (ours, peer)}
    print(f"peak RSS: {ours.name} {rss[ours.name] / 1024:.1f} MiB, {peer.name} {rss[peer.name] / 1024:.1f} MiB, "
          f"ratio x{rss[ours.name] / rss[peer.name]:.3f}")
    return rows, rss


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exporter", required=True, help="the mcpwatch-exporter binary")
    parser.add_argument("--notifier", help="the mcpwatch-notifier binary, for its throughput")
    parser.add_argument("--rmcp-fixture", help="the mcpwatch-rmcp-fixture binary, for the MCP probe per era")
    parser.add_argument("--mcp-server", help="the example server of mcpwatch-mcp, for the instrumentation's cost")
    parser.add_argument("--venvs", default=os.environ.get("MCPWATCH_VENVS", "/var/cache/mcpwatch/venvs"),
                        help="where the mcp1 and mcp2 virtual environments of tests/run.sh are")
    parser.add_argument("--seconds", type=int, default=10, help="per scenario and exporter")
    parser.add_argument("--probes", type=int, default=300, help="timed MCP probes per server and prober")
    sections = ["host", "postgres", "redis", "wsdaemon", "mcp", "scaling", "rss", "all", "notifier",
                "instrumentation"]
    parser.add_argument("--only", choices=sections, action="append")
    args = parser.parse_args()
    only = set(args.only or sections)
    if args.only and only & {"mcp", "scaling"} and not args.rmcp_fixture:
        parser.error("--only mcp and --only scaling need --rmcp-fixture")
    ours_bin = os.path.realpath(args.exporter)
    summary = []

    if "host" in only:
        def start_ours():
            return Exporter("mcpwatch(host)", [ours_bin])

        rows, rss, ours, peer = compare_fresh(
            "host", start_ours, lambda: Exporter("node_exporter", ["prometheus-node-exporter"]), args.seconds)
        summary.append(headline("host, each at its defaults", rows, ours, peer)
                       + f"; RSS x{rss['mcpwatch(host)'] / rss['node_exporter']:.2f}")
        # node_exporter narrowed to what mcpwatch's host collector covers by default.
        rows, _, ours, peer = compare_fresh(
            "host, node_exporter with mcpwatch's coverage", start_ours,
            lambda: Exporter("node_exporter(ours)", ["prometheus-node-exporter", "--collector.disable-defaults"]
                             + [f"--collector.{c}" for c in NODE_EXPORTER_AS_OURS]),
            args.seconds)
        summary.append(headline("host, node_exporter with mcpwatch's coverage", rows, ours, peer))

    if "wsdaemon" in only:
        summary += wsdaemon_comparison(ours_bin, args.seconds, args.venvs)

    if "mcp" in only and args.rmcp_fixture:
        from probe_bench import probe_comparison
        summary += probe_comparison(ours_bin, os.path.realpath(args.rmcp_fixture), args.venvs, args.probes)

    if "scaling" in only and args.rmcp_fixture:
        from scaling import scaling_table
        fixture = os.path.realpath(args.rmcp_fixture)
        # Sized to the work (the default), then pinned to one worker as before.
        summary += scaling_table(ours_bin, fixture, [1, 10, 100, 300], 100)
        summary += scaling_table(ours_bin, fixture, [1, 10, 100, 300], 100, extra=["--runtime.worker-threads=1"])

    if "instrumentation" in only and args.mcp_server:
        from mcp_overhead_bench import instrumentation_overhead
        summary += instrumentation_overhead(os.path.realpath(args.mcp_server), min(args.seconds, 5))

    if "notifier" in only and args.notifier:
        from notifier_bench import notifier_throughput
        summary += notifier_throughput(os.path.realpath(args.notifier), args.seconds)

    needs_db = only & {"postgres", "redis", "all", "rss"}
    postgres = Postgres(["mcpwatch_bench", "pgexporter_bench"]) if needs_db else None
    redis = Redis() if needs_db else None
    peer_rss = {}
    try:
        if "postgres" in only:
            roles = ("mcpwatch_bench", "pgexporter_bench")

            def start_peer():
                return Exporter("postgres_exporter", ["prometheus-postgres-exporter"],
                                env={"DATA_SOURCE_NAME": postgres.dsn("pgexporter_bench")})

            rows, rss, ours, peer = compare_fresh(
                "postgres",
                lambda: Exporter("mcpwatch(postgres)", [ours_bin, "--no-collector.host",
                                                        f"--postgres.dsn={postgres.dsn('mcpwatch_bench')}"]),
                start_peer, args.seconds, postgres, roles)
            peer_rss["postgres_exporter"] = rss["postgres_exporter"]
            # mcpwatch widened to the peer's default coverage: every table's statistics.
            wide = write_config(f"collectors:\n  host: {{enabled: false}}\n  postgres:\n    - name: bench\n"
                                f"      dsn: {postgres.dsn('mcpwatch_bench')}\n      top_tables: 10000\n")
            wide_rows, _, ours_wide, _ = compare_fresh(
                "postgres, mcpwatch with postgres_exporter's coverage",
                lambda: Exporter("mcpwatch(postgres, wide)", [ours_bin, f"--config.file={wide}"]),
                start_peer, args.seconds, postgres, roles)
            first = [r for l, _, r in rows if l == SCENARIOS[0][0]]
            summary.append(
                headline("postgres, each at its defaults", rows, ours, peer) + "; "
                f"statements per scrape {first[0]['statements']:.1f} vs {first[1]['statements']:.1f}; "
                f"connections opened per 1,000 scrapes {first[0]['sessions_per_1k']:.1f} vs {first[1]['sessions_per_1k']:.1f}")
            summary.append(headline("postgres, mcpwatch with postgres_exporter's coverage", wide_rows, ours_wide, peer))
        if "redis" in only:
            def start_peer():
                return Exporter("redis_exporter",
                                ["prometheus-redis-exporter", f"-redis.addr=redis://127.0.0.1:{redis.port}"],
                                env={"REDIS_PASSWORD": redis.password}, listen_flag="-web.listen-address")

            rows, rss, ours, peer = compare_fresh(
                "redis",
                lambda: Exporter("mcpwatch(redis)", [ours_bin, "--no-collector.host", f"--redis.url={redis.url()}"]),
                start_peer, args.seconds)
            peer_rss["redis_exporter"] = rss["redis_exporter"]
            summary.append(headline("redis, each at its defaults", rows, ours, peer))
            # mcpwatch widened to the peer's default coverage: every command's statistics.
            wide = write_config(f"collectors:\n  host: {{enabled: false}}\n  redis:\n    - name: bench\n"
                                f"      url: {redis.url()}\n      max_commands: 10000\n")
            rows, _, ours, peer = compare_fresh(
                "redis, mcpwatch with redis_exporter's coverage",
                lambda: Exporter("mcpwatch(redis, wide)", [ours_bin, f"--config.file={wide}"]),
                start_peer, args.seconds)
            summary.append(headline("redis, mcpwatch with redis_exporter's coverage", rows, ours, peer))
        if "rss" in only:
            summary += collector_rss(ours_bin, postgres, redis, args.venvs)
        if "all" in only:
            everything = Exporter("mcpwatch(all)", [ours_bin, f"--postgres.dsn={postgres.dsn('mcpwatch_bench')}",
                                                    f"--redis.url={redis.url()}"])
            try:
                print(f"\n== every collector in one process: {everything.name} ==")
                print(f"series per scrape: {everything.series()}")
                for label, connections, headers in SCENARIOS:
                    r = measure(everything, connections, args.seconds, headers)
                    print(f"{label:<42} {r['rps']:>10.1f} scrapes/s  p50 {r['p50']:.3f} ms  p99 {r['p99']:.3f} ms  "
                          f"CPU {r['cpu_per_1k']:.3f} s/1k  errors {r['errors']}")
                rss = peak_rss_kib(everything.proc.pid)
            finally:
                everything.stop()
            line = f"every collector: peak RSS {rss / 1024:.1f} MiB"
            for name, peer in sorted(peer_rss.items()):
                line += f"; {name} alone {peer / 1024:.1f} MiB (x{rss / peer:.2f})"
            print(line)
            summary.append(line)
    finally:
        if postgres:
            postgres.stop()
        if redis:
            redis.stop()

    print("\n== summary ==")
    for line in summary:
        print(line)


if __name__ == "__main__":
    main()
