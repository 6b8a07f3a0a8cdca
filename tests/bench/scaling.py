#!/usr/bin/env python3
"""How mcpwatch-exporter's cost grows with its configuration: MCP daemon targets (1, 10,
100, 300 by default), each probing an MCP server over Streamable HTTP with protocol
auto (server/discover, then tools/list in 3 pages) against rmcp 3.x fixtures on loopback.

For each count a new exporter starts (host collector off, so the targets are all there is)
with the runtime flags given (--exporter-args), is warmed up, then scraped one scrape at
a time, as Prometheus scrapes, with a 10 s scrape timeout. Reported per count: scrape
latency p50 and p99 as the scraper sees it, the exporter's CPU per scrape (scheduler
nanoseconds of all its threads) and the MCP servers' (on the same cores: where the
exporter and the servers together need all the cores, more workers cannot shorten a
scrape), its resident memory after the scrapes (VmRSS) and its
peak (VmHWM), the series served, and the scrapes in which a target was down.

Then the largest exporter is shrunk by a reload to the smallest configuration, scraped a
few times, and its resident memory compared with a fresh exporter's of that
configuration: memory a large configuration took should be given back.

    python3 tests/bench/scaling.py --exporter target/release/mcpwatch-exporter \\
        --rmcp-fixture target/release/mcpwatch-rmcp-fixture [--targets 1,10,100,300]
        [--scrapes 100] [--servers 4] [--exporter-args="--runtime.worker-threads=1"]
"""

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from bench import free_port, wait_until
from probe_bench import CpuMeter, McpServer

WARMUP = 5
# The largest configuration's memory, after its reload to the smallest, is read once the
# exporter had this long to give back what it freed.
SETTLE_SECONDS = 3


def config_text(count, servers):
    lines = ["collectors:", "  host: { enabled: false }", "  wsdaemon:"]
    for i in range(count):
        server = servers[i % len(servers)]
        lines += [
            f"    - name: daemon-{i:03d}",
            f"      mcp_url: {server.url}",
            "      timeout: 8s",
        ]
    return "\n".join(lines) + "\n"


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class ScaledExporter:
    """The exporter with a configuration file it can be told to reload."""

    def __init__(self, binary, extra_args, config, workdir):
        self.config_path = os.path.join(workdir, "exporter.yml")
        self.write(config)
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.log = open(os.path.join(workdir, "exporter.log"), "w")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={self.config_path}", f"--web.listen-address=127.0.0.1:{port}"]
            + extra_args,
            stdout=self.log,
            stderr=self.log,
        )
        wait_until("the exporter to serve", self.ready)

    def write(self, config):
        with open(self.config_path, "w") as f:
            f.write(config)

    def ready(self):
        if self.proc.poll() is not None:
            sys.exit(f"the exporter exited; see {self.log.name}")
        urllib.request.urlopen(self.base + "/health", timeout=5).read()
        return True

    def scrape(self):
        request = urllib.request.Request(
            self.base + "/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "10"}
        )
        started = time.perf_counter()
        body = urllib.request.urlopen(request, timeout=30).read().decode()
        return time.perf_counter() - started, body

    def reload(self, config):
        self.write(config)
        request = urllib.request.Request(self.base + "/-/reload", method="POST", data=b"")
        urllib.request.urlopen(request, timeout=30).read()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=15)
        self.log.close()


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure(exporter, scrapes, servers):
    for _ in range(WARMUP):
        exporter.scrape()
    meter = CpuMeter(exporter.proc.pid)
    server_meters = [CpuMeter(server.proc.pid) for server in servers]
    times, down, series = [], 0, 0
    for _ in range(scrapes):
        seconds, body = exporter.scrape()
        times.append(seconds)
        down += sum(1 for line in body.splitlines()
                    if line.startswith("wsdaemon_mcp_up{") and line.endswith(" 0"))
        series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
    return {
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": percentile(times, 99) * 1000,
        "cpu_ms": meter.seconds() / scrapes * 1000,
        "server_cpu_ms": sum(m.seconds() for m in server_meters) / scrapes * 1000,
        "rss_kib": status_kib(exporter.proc.pid, "VmRSS"),
        "hwm_kib": status_kib(exporter.proc.pid, "VmHWM"),
        "threads": len(os.listdir(f"/proc/{exporter.proc.pid}/task")),
        "series": series,
        "down": down,
    }


def scaling_table(exporter_bin, rmcp_fixture, counts, scrapes, server_count=4, extra=()):
    """Measures each count of targets, prints the table and returns its summary lines."""
    fixture = [rmcp_fixture, "--tools", "29", "--page-size", "10"]
    servers = [McpServer(fixture) for _ in range(server_count)]
    rows = {}
    try:
        with tempfile.TemporaryDirectory(prefix="mcpwatch-scaling-") as workdir:
            for count in counts:
                exporter = ScaledExporter(exporter_bin, list(extra), config_text(count, servers), workdir)
                try:
                    rows[count] = measure(exporter, scrapes, servers)
                    if count == max(counts):
                        exporter.reload(config_text(min(counts), servers))
                        for _ in range(WARMUP):
                            exporter.scrape()
                        time.sleep(SETTLE_SECONDS)
                        rows["shrunk"] = status_kib(exporter.proc.pid, "VmRSS")
                finally:
                    exporter.stop()
    finally:
        for server in servers:
            server.stop()

    flags = " ".join(extra) or "(defaults)"
    print(f"\n== scaling: MCP daemon targets, exporter flags {flags}, {scrapes} scrapes each ==")
    print(f"{'targets':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms':>8} {'servers ms':>10} {'RSS MiB':>8} "
          f"{'peak MiB':>9} {'threads':>8} {'series':>7} {'down':>5}")
    for count in counts:
        r = rows[count]
        print(f"{count:>8} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['cpu_ms']:>8.2f} {r['server_cpu_ms']:>10.2f} "
              f"{r['rss_kib'] / 1024:>8.1f} {r['hwm_kib'] / 1024:>9.1f} {r['threads']:>8} "
              f"{r['series']:>7} {r['down']:>5}")
    small, large = rows[min(counts)], rows[max(counts)]
    span = max(counts) - min(counts)
    lines = []
    if span:
        lines.append(f"scaling {flags}: per target {(large['cpu_ms'] - small['cpu_ms']) / span * 1000:.0f} us CPU, "
                     f"{(large['rss_kib'] - small['rss_kib']) / span:.1f} KiB; at {max(counts)} targets "
                     f"p50 {large['p50_ms']:.1f} ms, p99 {large['p99_ms']:.1f} ms")
    lines.append(f"scaling {flags}: after a reload from {max(counts)} targets to {min(counts)}: "
                 f"{rows['shrunk'] / 1024:.1f} MiB (fresh: {small['rss_kib'] / 1024:.1f} MiB)")
    for line in lines:
        print(line)
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exporter", required=True)
    parser.add_argument("--rmcp-fixture", required=True)
    parser.add_argument("--targets", default="1,10,100,300")
    parser.add_argument("--scrapes", type=int, default=100)
    parser.add_argument("--servers", type=int, default=4, help="rmcp fixture processes the targets share")
    parser.add_argument("--exporter-args", default="", help="extra exporter flags, e.g. the runtime's")
    args = parser.parse_args()
    scaling_table(os.path.realpath(args.exporter), os.path.realpath(args.rmcp_fixture),
                  [int(c) for c in args.targets.split(",")], args.scrapes, args.servers,
                  shlex.split(args.exporter_args))


if __name__ == "__main__":
    main()
