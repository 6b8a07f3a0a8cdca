#!/usr/bin/env python3
"""Side-by-side scrape benchmark: mcpwatch-exporter against a peer exporter, in one run.

Each exporter is started on a free loopback port and scraped with wrk over keep-alive
connections. For every scenario the script reports scrapes per second, p50 and p99
latency, CPU seconds per 1,000 scrapes (from /proc/<pid>/stat), and at the end each
process's peak resident memory (VmHWM). It prints ratios, never a pass or fail.
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")

# What Prometheus 2.x sends with each scrape.
PROMETHEUS_HEADERS = [
    "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding: gzip",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": to_ms(latency["50"]),
        "p99": to_ms(latency["99"]),
        "errors": int(errors.group(1)) if errors else 0,
    }


class Exporter:
    def __init__(self, name, command, port, path="/metrics"):
        self.name = name
        self.url = f"http://127.0.0.1:{port}{path}"
        self.log = open(f"/tmp/bench-{name}.log", "w")
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=5).read()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    sys.exit(f"{name} did not start; see /tmp/bench-{name}.log")
                time.sleep(0.1)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=15)


def series_count(url):
    body = urllib.request.urlopen(url, timeout=10).read().decode()
    return sum(1 for line in body.splitlines() if line and not line.startswith("#"))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ours", required=True, help="mcpwatch-exporter command line")
    parser.add_argument("--peer", required=True, help="peer exporter command line")
    parser.add_argument("--peer-name", default="peer")
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()

    ours_port, peer_port = free_port(), free_port()
    ours = Exporter(
        "mcpwatch",
        args.ours.split() + [f"--web.listen-address=127.0.0.1:{ours_port}"],
        ours_port,
    )
    peer = Exporter(
        args.peer_name,
        args.peer.split() + [f"--web.listen-address=127.0.0.1:{peer_port}"],
        peer_port,
    )
    print(f"series per scrape: mcpwatch {series_count(ours.url)}, "
          f"{args.peer_name} {series_count(peer.url)}")

    scenarios = [
        ("1 connection", 1, []),
        ("8 connections", 8, []),
        ("1 connection, Prometheus headers (gzip)", 1, PROMETHEUS_HEADERS),
    ]
    rows = []
    try:
        for label, connections, headers in scenarios:
            # Alternate the two so that neither gets a quieter machine.
            for exporter in (ours, peer):
                before = cpu_seconds(exporter.proc.pid)
                result = wrk(exporter.url, connections, args.seconds, headers)
                spent = cpu_seconds(exporter.proc.pid) - before
                result["cpu_per_1k"] = spent / max(result["requests"], 1) * 1000
                rows.append((label, exporter.name, result))
        rss = {e.name: peak_rss_kib(e.proc.pid) for e in (ours, peer)}
    finally:
        ours.stop()
        peer.stop()

    print(f"\n{'scenario':<42} {'exporter':<26} {'scrapes/s':>10} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'CPU s/1k':>9} {'errors':>7}")
    for label, name, r in rows:
        print(f"{label:<42} {name:<26} {r['rps']:>10.1f} {r['p50']:>8.3f} {r['p99']:>8.3f} "
              f"{r['cpu_per_1k']:>9.3f} {r['errors']:>7}")
    print("\nratios (mcpwatch / " + args.peer_name + "):")
    for label, _, _ in scenarios:
        mine = next(r for l, n, r in rows if l == label and n == "mcpwatch")
        theirs = next(r for l, n, r in rows if l == label and n == args.peer_name)
        print(f"  {label:<42} scrapes/s x{mine['rps'] / theirs['rps']:.2f}   "
              f"p50 x{mine['p50'] / theirs['p50']:.3f}   p99 x{mine['p99'] / theirs['p99']:.3f}   "
              f"CPU/1k x{mine['cpu_per_1k'] / max(theirs['cpu_per_1k'], 1e-9):.3f}")
    print(f"\npeak RSS: mcpwatch {rss['mcpwatch'] / 1024:.1f} MiB, {args.peer_name} "
          f"{rss[args.peer_name] / 1024:.1f} MiB, ratio x{rss['mcpwatch'] / rss[args.peer_name]:.3f}")


if __name__ == "__main__":
    main()
