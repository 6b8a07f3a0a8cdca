#!/usr/bin/env python3
"""The cost of one MCP probe per protocol era: mcpwatch-exporter's /probe beside
blackbox_exporter's HTTP probe of the same MCP server, in one run on loopback.

The servers, each on a free port with 29 tools listed 10 to a page:

- legacy: the Python SDK 1.x fixture (tests/fixtures/mcp_server.py), sessions only;
- modern: the Python SDK 2.x fixture (tests/fixtures/mcp_server_modern.py);
- modern: the rmcp 3.x fixture (tests/rmcp-fixture);
- legacy, pinned: the Python SDK 2.x fixture again, probed at revision 2025-11-25, so that
  the two eras are compared on one server.

The probers, each asked for one probe at a time over a kept-alive connection, as
Prometheus asks:

- mcpwatch: GET /probe?module=mcp (protocol auto; mcp_legacy, pinned to 2025-11-25, for
  the last server). A modern probe is server/discover and tools/list (3 pages); a legacy
  one initialize, notifications/initialized, tools/list (3 pages), ping and the DELETE of
  the session; all on one connection the probe opens.
- blackbox_exporter: GET /probe with an http module that does what an operator without
  mcpwatch would: one POST of server/discover at 2026-07-28 with the MCP headers and
  _meta, failing unless the body names supportedVersions; for a legacy server one POST
  of initialize, failing unless the answer names a protocolVersion. It cannot follow a
  session, so a legacy check proves less, and each one leaves a session open on the
  server until the server's idle timeout (30 minutes in the Python SDK).
- direct: the same single POST as blackbox_exporter's, sent by this script on a new
  connection: the server's own answer time, for scale.

Each (server, prober) cell gets a new server and a new exporter, a warm-up, then timed
probes in two rounds, the second in the opposite order of probers so that neither gets a
quieter machine. Reported per cell: p50 and p90 latency as the caller sees it, the
exporter's and the server's CPU per probe (utime + stime from /proc/<pid>/stat), the
exporter's peak resident memory (VmHWM), how much the server's resident memory grew per
probe, and, from a separate untimed pass through a counting TCP relay, the HTTP requests,
connections and bytes per probe at the server, and mcpwatch's own time per phase. Then the
ratios mcpwatch / blackbox_exporter for each server. Nothing passes or fails on a time; a
probe that does not succeed is counted and shown.

A server that writes a streamed (SSE) answer in pieces without TCP_NODELAY, as rmcp under
axum::serve's defaults does, holds its last piece until the client acknowledges the first:
on a connection kept for several requests, each one after the first waits for the client's
delayed ACK (about 40 ms on Linux). The single-POST probers never see it; mcpwatch's
tools_list phase shows it.

    python3 tests/bench/probe_bench.py --exporter target/release/mcpwatch-exporter \\
        --rmcp-fixture target/release/mcpwatch-rmcp-fixture [--probes 300] [--venvs DIR]
"""

import argparse
import asyncio
import collections
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from bench import CLK_TCK, Exporter, cpu_seconds, free_port, peak_rss_kib, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
DEFAULT_VENVS = os.environ.get("MCPWATCH_VENVS", "/var/cache/mcpwatch/venvs")
WARMUP = 20
COUNTED = 20
# A cell's timed probes stop here even if not all were made: the run stays bounded.
CELL_SECONDS = 120

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
CLIENT = {"name": "blackbox_exporter", "version": "0.23.0"}
# What a careful operator would POST without mcpwatch (docs/reference of the MCP revisions):
# the modern request carries its revision in the headers and in _meta.
DISCOVER = {
    "headers": {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": "server/discover",
    },
    "body": {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "server/discover",
        "params": {
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": CLIENT,
            }
        },
    },
    "expect": '"supportedVersions"',
}
# A legacy session's first request; the version header comes only once the server chose.
INITIALIZE = {
    "headers": {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
    "body": {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": CLIENT},
    },
    "expect": '"result".*"protocolVersion"',
}

ALLOWED_TARGETS = r"^http://127\.0\.0\.1:[0-9]+/mcp$"


def server_specs(venvs, rmcp_fixture):
    """(label, command without the port, mcpwatch module, single-POST check)."""
    fixture = ["--tools", "29", "--page-size", "10"]
    sdk1 = [f"{venvs}/mcp1/bin/python", f"{ROOT}/tests/fixtures/mcp_server.py"]
    sdk2 = [f"{venvs}/mcp2/bin/python", f"{ROOT}/tests/fixtures/mcp_server_modern.py"]
    return [
        ("legacy: Python SDK 1.x", sdk1 + fixture, "mcp", INITIALIZE),
        ("modern: Python SDK 2.x", sdk2 + fixture, "mcp", DISCOVER),
        ("modern: rmcp 3.x", [rmcp_fixture] + fixture, "mcp", DISCOVER),
        ("legacy pinned: Python SDK 2.x", sdk2 + fixture, "mcp_legacy", INITIALIZE),
    ]


def mcpwatch_config():
    module = {"transport": "streamable_http", "protocol": "auto", "timeout": "5s",
              "allowed_targets": ALLOWED_TARGETS}
    return {
        "collectors": {"host": {"enabled": False}},
        "probe": {"modules": {"mcp": module, "mcp_legacy": dict(module, protocol=LEGACY)}},
    }


def blackbox_config():
    def module(check):
        return {
            "prober": "http",
            "timeout": "5s",
            "http": {
                "method": "POST",
                "headers": check["headers"],
                "body": json.dumps(check["body"], separators=(",", ":")),
                "valid_status_codes": [200],
                "fail_if_body_not_matches_regexp": [check["expect"]],
                "preferred_ip_protocol": "ip4",
                "ip_protocol_fallback": False,
            },
        }

    return {"modules": {"mcp_discover": module(DISCOVER), "mcp_initialize": module(INITIALIZE)}}


def thread_cpu_seconds(pid):
    """{thread id: seconds on a CPU}, from the scheduler's nanosecond counters."""
    times = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                times[tid] = int(f.read().split()[0]) / 1e9
        except OSError:
            pass  # the thread ended
    return times


class CpuMeter:
    """The CPU time a process spends from now until seconds() is asked. A probe costs a
    millisecond or less, below /proc/<pid>/stat's 10 ms ticks over a few hundred probes:
    the scheduler's per-thread nanoseconds are summed instead, unless threads ended in
    between (their time went with them) and the ticks say clearly more."""

    def __init__(self, pid):
        self.pid = pid
        self.threads = thread_cpu_seconds(pid)
        self.ticks = cpu_seconds(pid)

    def seconds(self):
        fine = sum(t - self.threads.get(tid, 0.0) for tid, t in thread_cpu_seconds(self.pid).items())
        coarse = cpu_seconds(self.pid) - self.ticks
        return coarse if coarse - fine > 2 / CLK_TCK else fine


class McpServer:
    """An MCP server fixture on a free loopback port, stopped by stop()."""

    def __init__(self, command):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.log = open("/tmp/bench-probe-server.log", "a")
        self.proc = subprocess.Popen(command + ["--port", str(self.port)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        # Both uvicorn and the rmcp fixture listen only once they are ready to serve.
        wait_until(f"the MCP server {' '.join(command[:2])}", self.listening)

    def listening(self):
        if self.proc.poll() is not None:
            sys.exit(f"the MCP server exited; see {self.log.name}")
        socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        return True

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class RequestCounter:
    """A TCP relay on a loopback port in front of a server that counts what passes: the
    connections, the HTTP/1.x requests by method, and the bytes each way. It lets the
    requests of a probe be counted without changing the server; it adds a hop, so it serves
    an untimed pass only."""

    # A request line follows the previous request's body directly, with no line break; a
    # JSON body cannot hold one (a raw CR LF), so the pattern needs no anchor.
    REQUEST_LINE = re.compile(rb"(GET|POST|DELETE|PUT|HEAD|OPTIONS|PATCH) /\S* HTTP/1\.[01]\r\n")

    def __init__(self, backend_port):
        self.backend_port = backend_port
        self.counts = collections.Counter()
        self.lock = threading.Lock()
        self.writers = set()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(started,), daemon=True)
        self.thread.start()
        started.wait(10)

    def _serve(self, started):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._relay, sock=self.listener))
        started.set()
        self.loop.run_forever()
        self.server.close()
        # Connections the server or the prober still hold open are cut, which ends their relays.
        for writer in list(self.writers):
            writer.close()
        relays = asyncio.all_tasks(self.loop)
        if relays:
            self.loop.run_until_complete(asyncio.wait(relays, timeout=5))
        self.loop.run_until_complete(self.server.wait_closed())
        self.loop.close()

    def _add(self, **amounts):
        with self.lock:
            self.counts.update(amounts)

    def snapshot(self):
        with self.lock:
            return collections.Counter(self.counts)

    async def _relay(self, client_reader, client_writer):
        self._add(connections=1)
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        except OSError:
            client_writer.close()
            return
        pair = {client_writer, server_writer}
        self.writers |= pair
        try:
            await asyncio.gather(self._pipe(client_reader, server_writer, upstream=True),
                                 self._pipe(server_reader, client_writer, upstream=False))
        finally:
            for writer in pair:
                writer.close()
            self.writers -= pair

    async def _pipe(self, reader, writer, upstream):
        # The request lines are counted on the way up; a line cut between two reads is
        # found in the kept tail of the previous read.
        tail = b""
        try:
            while data := await reader.read(65536):
                if upstream:
                    buffer = tail + data
                    end, methods = 0, collections.Counter()
                    for match in self.REQUEST_LINE.finditer(buffer):
                        methods[match.group(1).decode()] += 1
                        end = match.end()
                    tail = buffer[end:][-256:]
                    self._add(bytes_up=len(data), **methods)
                else:
                    self._add(bytes_down=len(data))
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        # HTTP needs no half-closed connection: one side done ends both, and the other
        # pipe reads its end.
        writer.close()

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


PHASE = re.compile(rb'^wsdaemon_mcp_phase_duration_seconds\{[^}]*phase="(\w+)"[^}]*\} (\S+)$', re.M)


class Prober:
    """One way of probing a server: through an exporter's /probe, or a direct POST."""

    def __init__(self, name, exporter=None, module=None, check=None):
        self.name = name
        self.exporter = exporter
        self.module = module
        self.check = check
        self.connection = None
        if exporter:
            port = urllib.parse.urlsplit(exporter.url).port
            self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.body = json.dumps(check["body"], separators=(",", ":")).encode() if check else b""
        self.expect = re.compile(check["expect"].encode()) if check else None
        # mcpwatch's own time per phase in the last probe, in milliseconds.
        self.phases = {}

    def probe(self, target):
        """One probe; whether it succeeded."""
        self.phases = {}
        if self.exporter is None:
            url = urllib.parse.urlsplit(target)
            connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
            try:
                connection.request("POST", url.path, body=self.body, headers=self.check["headers"])
                response = connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException):
                return False
            finally:
                connection.close()
            return response.status == 200 and bool(self.expect.search(body))
        query = urllib.parse.urlencode({"module": self.module, "target": target})
        try:
            self.connection.request("GET", f"/probe?{query}")
            response = self.connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()
            return False
        self.phases = {m.group(1).decode(): float(m.group(2)) * 1000 for m in PHASE.finditer(body)}
        return response.status == 200 and re.search(rb"^probe_success 1(\.0)?$", body, re.M) is not None

    def pid(self):
        return self.exporter.proc.pid if self.exporter else None

    def stop(self):
        if self.connection:
            self.connection.close()
        if self.exporter:
            self.exporter.stop()


class Cell:
    """What one prober cost against one server, summed over the rounds."""

    def __init__(self):
        self.latencies = []
        self.failures = 0
        self.exporter_cpu = 0.0
        self.server_cpu = 0.0
        self.server_rss_growth = 0
        self.exporter_rss = 0
        self.counted = None
        self.phases = collections.defaultdict(list)

    def percentile(self, q, values=None):
        ordered = sorted(self.latencies if values is None else values)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def per_probe(self, value):
        return value / max(len(self.latencies), 1)


def start_prober(kind, exporter_bin, module, check, work):
    if kind == "mcpwatch":
        exporter = Exporter("probe-mcpwatch", [exporter_bin, f"--config.file={work}/mcpwatch.json"])
        return Prober(kind, exporter, module)
    if kind == "blackbox":
        exporter = Exporter("probe-blackbox", ["prometheus-blackbox-exporter", f"--config.file={work}/blackbox.json"])
        return Prober(kind, exporter, "mcp_initialize" if check is INITIALIZE else "mcp_discover")
    return Prober(kind, check=check)


def run_cell(cell, command, kind, exporter_bin, module, check, probes, work, count):
    """A new server and prober: warm up, time `probes` probes, then maybe count requests."""
    server = McpServer(command)
    prober = None
    try:
        prober = start_prober(kind, exporter_bin, module, check, work)
        for _ in range(WARMUP):
            prober.probe(server.url)
        pid = prober.pid()
        exporter_cpu = CpuMeter(pid) if pid else None
        server_cpu = CpuMeter(server.proc.pid)
        rss_before = server.rss_kib()
        deadline = time.monotonic() + CELL_SECONDS
        for _ in range(probes):
            started = time.perf_counter()
            ok = prober.probe(server.url)
            cell.latencies.append((time.perf_counter() - started) * 1000)
            cell.failures += not ok
            for phase, ms in prober.phases.items():
                cell.phases[phase].append(ms)
            if time.monotonic() > deadline:
                break
        cell.exporter_cpu += exporter_cpu.seconds() if exporter_cpu else 0.0
        cell.server_cpu += server_cpu.seconds()
        cell.server_rss_growth += server.rss_kib() - rss_before
        cell.exporter_rss = max(cell.exporter_rss, peak_rss_kib(pid) if pid else 0)
        if count:
            relay = RequestCounter(server.port)
            try:
                # The first probes of a new target find its era: not counted.
                for _ in range(3):
                    prober.probe(relay.url)
                before = relay.snapshot()
                for _ in range(COUNTED):
                    prober.probe(relay.url)
                after = relay.snapshot()
                after.subtract(before)
                cell.counted = {k: v / COUNTED for k, v in after.items()}
            finally:
                relay.stop()
    finally:
        if prober:
            prober.stop()
        server.stop()


def ratio(a, b):
    return f"x{a / b:.2f}" if b > 0 else "n/a"


def requests_text(counted):
    if not counted:
        return "-"
    methods = [(m, counted.get(m, 0)) for m in ("POST", "GET", "DELETE", "PUT", "HEAD", "OPTIONS", "PATCH")]
    total = sum(v for _, v in methods)
    parts = "+".join(f"{v:g} {m}" for m, v in methods if v)
    return f"{total:g} ({parts})" if parts else "0"


def probe_comparison(exporter, rmcp_fixture, venvs, probes):
    """Runs every (server, prober) cell; prints the table and ratios; returns summary lines."""
    specs = server_specs(venvs, rmcp_fixture)
    work = tempfile.mkdtemp(prefix="mcpwatch-bench-probe-")
    with open(f"{work}/mcpwatch.json", "w") as f:
        json.dump(mcpwatch_config(), f, indent=2)
    with open(f"{work}/blackbox.json", "w") as f:
        json.dump(blackbox_config(), f, indent=2)
    kinds = ["mcpwatch", "blackbox", "direct"]
    cells = {(label, kind): Cell() for label, *_ in specs for kind in kinds}
    halves = [probes // 2, probes - probes // 2]
    started = time.monotonic()
    try:
        for round_number, share in enumerate(halves):
            for label, command, module, check in specs:
                order = kinds if round_number == 0 else kinds[::-1]
                for kind in order:
                    run_cell(cells[(label, kind)], command, kind, exporter, module, check, share, work,
                             count=round_number == 0)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n== MCP probe per protocol era: mcpwatch /probe vs blackbox_exporter http probe "
          f"({probes} probes per cell, {time.monotonic() - started:.0f} s) ==")
    header = (f"{'server':<31} {'prober':<9} {'probes':>6} {'fail':>4} {'p50 ms':>7} {'p90 ms':>7} "
              f"{'exp CPU ms':>10} {'exp RSS MiB':>11} {'srv CPU ms':>10} {'srv RSS KiB':>11} "
              f"{'conns':>5} {'KiB up/down':>11}  requests at the server")
    print(header)
    print("(per probe; exp = the exporter, srv = the MCP server; srv RSS = its growth per probe)")
    for (label, kind), c in cells.items():
        counted = c.counted or {}
        kib = f"{counted.get('bytes_up', 0) / 1024:.1f}/{counted.get('bytes_down', 0) / 1024:.1f}"
        exporter_cells = (f"{c.per_probe(c.exporter_cpu) * 1000:>10.3f} {c.exporter_rss / 1024:>11.1f}"
                          if kind != "direct" else f"{'-':>10} {'-':>11}")
        print(f"{label:<31} {kind:<9} {len(c.latencies):>6} {c.failures:>4} {c.percentile(0.5):>7.2f} "
              f"{c.percentile(0.9):>7.2f} {exporter_cells} {c.per_probe(c.server_cpu) * 1000:>10.3f} "
              f"{c.per_probe(c.server_rss_growth):>11.1f} {counted.get('connections', 0):>5g} {kib:>11}  "
              f"{requests_text(c.counted)}")

    print("mcpwatch's own time per phase of a probe (p50 ms, wsdaemon_mcp_phase_duration_seconds):")
    for label, *_ in specs:
        phases = cells[(label, "mcpwatch")].phases
        print(f"  {label:<31} " + ", ".join(f"{p} {cells[(label, 'mcpwatch')].percentile(0.5, v):.2f}"
                                             for p, v in phases.items()))
    print("ratios (mcpwatch / blackbox_exporter, same run):")
    summary = []
    for label, *_ in specs:
        ours, theirs = cells[(label, "mcpwatch")], cells[(label, "blackbox")]
        requests = (sum(v for k, v in (ours.counted or {}).items() if k.isupper()),
                    sum(v for k, v in (theirs.counted or {}).items() if k.isupper()))
        line = (f"{label}: p50 {ratio(ours.percentile(0.5), theirs.percentile(0.5))}, "
                f"p90 {ratio(ours.percentile(0.9), theirs.percentile(0.9))}, "
                f"exporter CPU/probe {ratio(ours.per_probe(ours.exporter_cpu), theirs.per_probe(theirs.exporter_cpu))}, "
                f"exporter peak RSS {ratio(ours.exporter_rss, theirs.exporter_rss)}, "
                f"server CPU/probe {ratio(ours.per_probe(ours.server_cpu), theirs.per_probe(theirs.server_cpu))}, "
                f"requests/probe {requests[0]:g} vs {requests[1]:g}")
        print(f"  {line}")
        summary.append(f"mcp probe, {line}")
    failed = sum(c.failures for c in cells.values())
    if failed:
        print(f"{failed} probes did not succeed: see the fail column; exporter logs in /tmp/bench-probe-*.log")
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exporter", required=True, help="the mcpwatch-exporter binary")
    parser.add_argument("--rmcp-fixture", required=True, help="the mcpwatch-rmcp-fixture binary")
    parser.add_argument("--venvs", default=DEFAULT_VENVS, help="the mcp1 and mcp2 virtual environments")
    parser.add_argument("--probes", type=int, default=300, help="timed probes per server and prober")
    args = parser.parse_args()
    probe_comparison(os.path.realpath(args.exporter), os.path.realpath(args.rmcp_fixture), args.venvs, args.probes)


if __name__ == "__main__":
    main()
