"""The cost of mcpwatch's instrumentation in an MCP server: requests per second of the
example server of crate mcpwatch-mcp (rmcp 3.x, Streamable HTTP) with the instrumentation
and without it (--no-instrumentation), in one run, alternating, on loopback. wrk sends stateless
2026-07-28 tools/call requests (tests/bench/mcp_call.lua). Prints the medians and the
throughput lost; never passes or fails on a time. criterion's cost per recorded request:
`cargo bench -p mcpwatch-mcp --bench record`.

    python3 tests/bench/mcp_overhead_bench.py --server target/release/examples/mcp-server [--seconds 10] [--rounds 3]
"""

import argparse
import os
import re
import statistics
import subprocess
import time
import urllib.request

from bench import free_port, peak_rss_kib, to_ms, wait_until

LUA = os.path.join(os.path.dirname(os.path.realpath(__file__)), "mcp_call.lua")


def one_run(server, instrumented, seconds, connections):
    port = free_port()
    command = [server, "--port", str(port)] + ([] if instrumented else ["--no-instrumentation"])
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        # Warm-up, then the measured run.
        subprocess.run(["wrk", "-t1", f"-c{connections}", "-d1s", "-s", LUA, url], capture_output=True, check=True)
        run = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", LUA, url],
                             capture_output=True, text=True, check=True)
        out = run.stdout
        # A failed call is a non-2xx status, or an answer mcp_call.lua's response() refused.
        if "Non-2xx" in out or run.stderr.strip():
            raise SystemExit(f"wrk saw failed calls:\n{out}\n{run.stderr}")
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        p50 = to_ms(dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))["50"])
        calls = None
        if instrumented:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                text = r.read().decode()
            m = re.search(r'^mcp_server_operation_duration_seconds_count\{mcp_method_name="tools/call",gen_ai_tool_name="add",mcp_protocol_version="2026-07-28"\} (\S+)$', text, re.M)
            calls = float(m.group(1)) if m else 0.0
        return rps, p50, peak_rss_kib(proc.pid), calls
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def instrumentation_overhead(server, seconds, rounds=3, connections=16):
    runs = {True: [], False: []}
    for i in range(rounds):
        # Alternating which goes first, so that a drift of the machine falls on both.
        for instrumented in ([False, True] if i % 2 == 0 else [True, False]):
            runs[instrumented].append(one_run(server, instrumented, seconds, connections))
    med = {k: statistics.median(r[0] for r in v) for k, v in runs.items()}
    p50 = {k: statistics.median(r[1] for r in v) for k, v in runs.items()}
    rss = {k: max(r[2] for r in v) for k, v in runs.items()}
    loss = (1 - med[True] / med[False]) * 100
    counted = [r[3] for r in runs[True]]
    print(f"\n== MCP server (rmcp 3.x example), stateless tools/call over Streamable HTTP: "
          f"wrk 1 thread, {connections} connections, {seconds} s, {rounds} rounds alternating ==")
    for k, name in [(False, "without instrumentation"), (True, "with instrumentation")]:
        print(f"{name:>26}: {med[k]:,.0f} calls/s (runs {', '.join(f'{r[0]:,.0f}' for r in runs[k])}), "
              f"p50 {p50[k]:.2f} ms, peak RSS {rss[k] / 1024:.1f} MiB")
    print(f"throughput lost to the instrumentation: {loss:.2f}% (negative: within the noise); "
          f"calls counted by it per run: {', '.join(f'{c:,.0f}' for c in counted)}")
    return [f"mcp instrumentation: {med[True]:,.0f} vs {med[False]:,.0f} tools/call per s with and without it "
            f"({loss:+.2f}% lost), RSS {rss[True] / 1024:.1f} vs {rss[False] / 1024:.1f} MiB"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True, help="target/release/examples/mcp-server")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for line in instrumentation_overhead(os.path.realpath(args.server), args.seconds, args.rounds):
        print(line)


if __name__ == "__main__":
    main()
