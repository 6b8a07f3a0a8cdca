"""The cost of mcpwatch's instrumentation in an MCP server: requests per second of the
example server of crate mcpwatch-mcp (rmcp 3.x, Streamable HTTP) with the instrumentation
and without it (--no-instrumentation), in one run, on loopback. wrk sends stateless
2026-07-28 tools/call requests (tests/bench/mcp_call.lua).

Runs come in pairs, one of each, the order alternating from pair to pair, and the loss is
the median of the pairs' own ratios, so that a drift of the machine falls on both sides. Two
placements: "own cores" puts the server on one processor and wrk on another (taskset), as
a server and its clients are in production; "shared" lets them share all processors, where
the instrumentation's cost also shows as the client's lost time. Beside the throughput, the
server's processor time per call (utime + stime from /proc). Never passes or fails on a
time. criterion's cost per recorded request: `cargo bench -p mcpwatch-mcp --bench record`.

    python3 tests/bench/mcp_overhead_bench.py --server target/release/examples/mcp-server [--seconds 5] [--pairs 8]
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import time
import urllib.request

from bench import cpu_seconds, free_port, peak_rss_kib, to_ms, wait_until

LUA = os.path.join(os.path.dirname(os.path.realpath(__file__)), "mcp_call.lua")


def one_run(server, instrumented, seconds, connections, pinned):
    port = free_port()
    command = [server, "--port", str(port)] + ([] if instrumented else ["--no-instrumentation"])
    server_cpu, client_cpu = (["taskset", "-c", "1"], ["taskset", "-c", "0"]) if pinned else ([], [])
    proc = subprocess.Popen(server_cpu + command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def listening():
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/mcp", timeout=1)
            except urllib.error.HTTPError:
                return True
            except OSError:
                return False
            return True
        wait_until("the MCP server", listening)
        url = f"http://127.0.0.1:{port}/mcp"
        wrk = client_cpu + ["wrk", "-t1", f"-c{connections}", "-s", LUA]
        # Warm-up, then the measured run.
        subprocess.run(wrk + ["-d1s", url], capture_output=True, check=True)
        cpu_before = cpu_seconds(proc.pid)
        run = subprocess.run(wrk + [f"-d{seconds}s", "--latency", url], capture_output=True, text=True, check=True)
        cpu_used = cpu_seconds(proc.pid) - cpu_before
        out = run.stdout
        # A failed call is a non-2xx status, or an answer mcp_call.lua's response() refused.
        if "Non-2xx" in out or run.stderr.strip():
            raise SystemExit(f"wrk saw failed calls:\n{out}\n{run.stderr}")
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        p50 = to_ms(dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))["50"])
        calls = None
        if instrumented:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                text = r.read().decode()
            m = re.search(r'^mcp_server_operation_duration_seconds_count\{mcp_method_name="tools/call",gen_ai_tool_name="add",mcp_protocol_version="2026-07-28"\} (\S+)$', text, re.M)
            calls = float(m.group(1)) if m else 0.0
        return {"rps": rps, "p50": p50, "rss": peak_rss_kib(proc.pid), "calls": calls,
                "cpu_us": cpu_used / max(requests, 1) * 1e6}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def placement(server, seconds, pairs, connections, pinned):
    runs = []
    for i in range(pairs):
        pair = {}
        # Alternating which goes first, so that a drift of the machine falls on both.
        for instrumented in ([False, True] if i % 2 == 0 else [True, False]):
            pair[instrumented] = one_run(server, instrumented, seconds, connections, pinned)
        runs.append(pair)
    med = lambda key, k: statistics.median(p[k][key] for p in runs)
    loss = statistics.median((1 - p[True]["rps"] / p[False]["rps"]) * 100 for p in runs)
    cpu = statistics.median(p[True]["cpu_us"] - p[False]["cpu_us"] for p in runs)
    name = "own cores (server on cpu 1, wrk on cpu 0)" if pinned else "shared cores"
    print(f"\n== MCP server (rmcp 3.x example), stateless tools/call over Streamable HTTP, {name}: "
          f"wrk 1 thread, {connections} connections, {seconds} s, {pairs} pairs ==")
    for k, label in [(False, "without instrumentation"), (True, "with instrumentation")]:
        each = ", ".join(f"{p[k]['rps']:,.0f}" for p in runs)
        print(f"{label:>26}: {med('rps', k):,.0f} calls/s (runs {each}), "
              f"server cpu {med('cpu_us', k):.2f} us/call, p50 {med('p50', k):.2f} ms, "
              f"peak RSS {max(p[k]['rss'] for p in runs) / 1024:.1f} MiB")
    counted = ", ".join(f"{p[True]['calls']:,.0f}" for p in runs)
    print(f"throughput lost to the instrumentation, median of the pairs: {loss:.2f}% "
          f"(negative: within the noise); server cpu per call {cpu:+.2f} us; "
          f"calls counted by it per run: {counted}")
    return (f"mcp instrumentation, {name}: {med('rps', True):,.0f} vs {med('rps', False):,.0f} "
            f"tools/call per s with and without it ({loss:+.2f}% lost, median of {pairs} pairs), "
            f"server cpu {cpu:+.2f} us per call, RSS {max(p[True]['rss'] for p in runs) / 1024:.1f} vs "
            f"{max(p[False]['rss'] for p in runs) / 1024:.1f} MiB")


def instrumentation_overhead(server, seconds, pairs=8, connections=16):
    placements = [True, False] if (os.cpu_count() or 1) >= 2 and shutil.which("taskset") else [False]
    return [placement(server, seconds, pairs, connections, pinned) for pinned in placements]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True, help="target/release/examples/mcp-server")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=8)
    args = parser.parse_args()
    for line in instrumentation_overhead(os.path.realpath(args.server), args.seconds, args.pairs):
        print(line)


if __name__ == "__main__":
    main()
