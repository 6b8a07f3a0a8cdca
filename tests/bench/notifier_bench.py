"""The notifier's throughput: webhooks durably accepted per second.

mcpwatch-notifier (release build) is started on a free loopback port with its SQLite store
in a temporary directory on the same disk as the rest of the run and one `log` channel
writing to a file. wrk posts a realistic Alertmanager payload (10 alerts with labels,
annotations and generator URLs, about 6.5 KB), each request with a group key of its own so
that none is a duplicate. Reported: acceptances per second, p50 and p99 acknowledgement
latency, the notifier's CPU per 1,000 acceptances and its peak memory, the fsync rate the
same disk sustains (measured in the same run, for scale: every acknowledged batch of
commits costs one flush of the WAL), and how fast the queue of deliveries it built up then drains. A second run holds the
deliveries back (a rate limit) to measure acceptance alone. A third posts a burst of notifications at once, more than the
in-flight limit, to a webhook channel whose receiver (a local HTTP server) takes 20 ms an answer, and reports the time
from each acceptance to its arrival against the least the in-flight limit allows.

    python3 tests/bench/notifier_bench.py --notifier target/release/mcpwatch-notifier [--seconds 10]
"""

import argparse
import http.server
import json
import statistics
import threading
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from bench import cpu_seconds, free_port, peak_rss_kib, to_ms

LUA = os.path.join(os.path.dirname(os.path.realpath(__file__)), "notifier.lua")


def payload():
    alerts = []
    for i in range(10):
        alerts.append({
            "status": "firing",
            "labels": {"alertname": "McpProviderDown", "severity": "warning", "provider": f"provider-{i}",
                       "instance": "mcp-1:3001", "job": "wsdaemon"},
            "annotations": {
                "summary": f"Provider provider-{i} is down.",
                "description": f'wsdaemon_provider_up{{provider="provider-{i}"}} has been 0 for 2 minutes on mcp-1:3001.',
                "runbook_url": "https://example.com/runbooks#mcpproviderdown",
            },
            "startsAt": "2026-11-22T10:00:00.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=wsdaemon_provider_up+%3D%3D+0&g0.tab=1",
            "fingerprint": f"{i:016x}",
        })
    return {
        "receiver": "mcpwatch", "status": "firing", "alerts": alerts,
        "groupLabels": {"alertname": "McpProviderDown"},
        "commonLabels": {"alertname": "McpProviderDown", "severity": "warning", "instance": "mcp-1:3001",
                         "job": "wsdaemon"},
        "commonAnnotations": {"runbook_url": "https://example.com/runbooks#mcpproviderdown"},
        "externalURL": "http://alertmanager:9093", "version": "4",
        "groupKey": '{}/{severity="warning"}:{alertname="McpProviderDown", cluster="__KEY__"}',
        "truncatedAlerts": 0,
    }


def fsync_rate(directory, seconds=2.0):
    """fsyncs per second of 4 KiB appends, in `directory`."""
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        start, n = time.monotonic(), 0
        while time.monotonic() - start < seconds:
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
            n += 1
        return n / (time.monotonic() - start)
    finally:
        os.close(fd)
        os.unlink(path)


def store_counters(url):
    """The store's writes, commits, flushes and flush seconds, from /metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        text = r.read().decode()
    values = {}
    for name in ("writes", "commits", "flushes", "flush_seconds"):
        m = re.search(rf"^mcpwatch_notifier_store_{name}_total (\S+)$", text, re.M)
        values[name] = float(m.group(1)) if m else 0.0
    return values


def health(url):
    with urllib.request.urlopen(f"{url}/health", timeout=10) as r:
        return json.load(r)


def start_notifier(binary, work):
    """The notifier with `work`/notifier.yml on a free port, once it answers /health: its
    process and URL (its output in `work`/notifier.out)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(f"{work}/notifier.out", "w")
    proc = subprocess.Popen([binary, f"--config.file={work}/notifier.yml",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            health(url)
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                sys.exit(f"the notifier did not start; see {work}/notifier.out")
            time.sleep(0.1)


def notifier_throughput(binary, seconds, connections=64):
    """Both scenarios: deliveries alongside, then acceptance alone."""
    summary = run_scenario(binary, seconds, connections, hold_deliveries=False)
    summary += run_scenario(binary, seconds, connections, hold_deliveries=True)
    summary += burst_latency(binary)
    return summary


def run_scenario(binary, seconds, connections, hold_deliveries):
    work = tempfile.mkdtemp(prefix="mcpwatch-bench-notifier-")
    try:
        with open(f"{work}/payload.json", "w") as f:
            f.write(json.dumps(payload()))
        # Held: a rate limit of one delivery per 1,000 s keeps the dispatcher idle, so the
        # run measures acceptance alone.
        hold = "    rate_limit: {per_second: 0.001, burst: 1}\n" if hold_deliveries else ""
        with open(f"{work}/notifier.yml", "w") as f:
            f.write(f"storage: {{path: {work}/data/notifier.db}}\n"
                    f"channels:\n  log:\n    log: {{path: {work}/deliveries.log}}\n{hold}")
        proc, url = start_notifier(binary, work)
        try:
            fsyncs = fsync_rate(work)
            before = cpu_seconds(proc.pid)
            store_before = store_counters(url)
            out = subprocess.run(
                ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", LUA, url],
                capture_output=True, text=True, check=True, env=dict(os.environ, PAYLOAD=f"{work}/payload.json"),
            ).stdout
            cpu = cpu_seconds(proc.pid) - before
            store_after = store_counters(url)
            store = {k: store_after[k] - store_before[k] for k in store_after}
            requests = int(re.search(r"(\d+) requests in", out).group(1))
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
            errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            state = health(url)
            stored = sum(state["queue"].values())
            # The deliveries the burst queued, drained with no load coming in.
            pending_before = state["queue"]["pending"]
            start = time.monotonic()
            while (not hold_deliveries and state["queue"]["pending"] + state["queue"]["sending"] > 0
                   and time.monotonic() - start < 120):
                time.sleep(0.5)
                state = health(url)
            drain_seconds = time.monotonic() - start
            drained = pending_before - state["queue"]["pending"]
            rss = peak_rss_kib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        scenario = "deliveries held (acceptance alone)" if hold_deliveries else "a log channel delivering alongside"
        print(f"\n== notifier: webhooks durably accepted (SQLite WAL flushed before each answer); {scenario} ==")
        print(f"payload {os.path.getsize(f'{work}/payload.json')} bytes, 10 alerts; wrk 1 thread, "
              f"{connections} connections, {seconds} s, on the same 2 cores as the notifier")
        print(f"accepted {rps:,.0f}/s  p50 {to_ms(latency['50']):.2f} ms  p99 {to_ms(latency['99']):.2f} ms  "
              f"non-2xx {int(errors.group(1)) if errors else 0}  ({requests} requests)")
        per = cpu / max(requests, 1)
        print(f"notifier CPU {per * 1e6:.0f} us per acceptance; at that cost 2 cores with nothing else on them "
              f"would accept {2 / per:,.0f}/s; peak RSS {rss / 1024:.1f} MiB")
        flushes = max(store["flushes"], 1)
        print(f"disk: {fsyncs:,.0f} fsync/s of 4 KiB appends for scale; during the run "
              f"{store['flushes']:,.0f} WAL flushes of {1000 * store['flush_seconds'] / flushes:.2f} ms each "
              f"({requests / flushes:.1f} acceptances per flush), "
              f"{store['writes'] / max(store['commits'], 1):.1f} writes per commit")
        if not hold_deliveries:
            print(f"deliveries queued by the burst ({pending_before}) drained at "
                  f"{drained / max(drain_seconds, 0.001):,.0f}/s")
        return [f"notifier, {scenario}: {rps:,.0f} durable acceptances/s (p50 {to_ms(latency['50']):.1f} ms, "
                f"p99 {to_ms(latency['99']):.1f} ms), {per * 1e6:.0f} us CPU each, {requests / flushes:.1f} per "
                f"flush of {1000 * store['flush_seconds'] / flushes:.2f} ms, disk {fsyncs:,.0f} fsync/s, "
                f"peak RSS {rss / 1024:.1f} MiB"]
    finally:
        shutil.rmtree(work, ignore_errors=True)


class SlowReceiver(http.server.ThreadingHTTPServer):
    """A webhook receiver answering 200 after `delay` seconds, recording each arrival's
    group key and time."""

    daemon_threads = True

    def __init__(self, delay):
        self.delay = delay
        self.arrivals = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                at = time.monotonic()
                key = json.loads(body).get("groupKey", "")
                with receiver.lock:
                    receiver.arrivals.setdefault(key, at)
                time.sleep(receiver.delay)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def burst_latency(binary, burst=64, delay=0.02, in_flight=4):
    """Time from acceptance to arrival for `burst` notifications posted at once to one
    webhook channel with `in_flight` slots and a receiver taking `delay` per answer."""
    work = tempfile.mkdtemp(prefix="mcpwatch-bench-notifier-burst-")
    receiver = SlowReceiver(delay)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        with open(f"{work}/notifier.yml", "w") as f:
            f.write(f"storage: {{path: {work}/data/notifier.db}}\n"
                    f"delivery: {{max_in_flight_per_channel: {in_flight}}}\n"
                    f"route: {{channels: [hook]}}\n"
                    f"channels:\n  hook:\n    webhook: {{url: 'http://127.0.0.1:{receiver.server_address[1]}/'}}\n")
        proc, url = start_notifier(binary, work)
        try:
            accepted = {}

            def post(i):
                body = payload()
                body["groupKey"] = body["groupKey"].replace("__KEY__", f"burst-{i}")
                request = urllib.request.Request(f"{url}/webhook", data=json.dumps(body).encode(),
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=30) as r:
                    r.read()
                accepted[body["groupKey"]] = time.monotonic()

            threads = [threading.Thread(target=post, args=(i,)) for i in range(burst)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            deadline = time.monotonic() + 60
            while len(receiver.arrivals) < burst and time.monotonic() < deadline:
                time.sleep(0.05)
            with receiver.lock:
                waits = sorted(max(receiver.arrivals[k] - accepted[k], 0) for k in accepted if k in receiver.arrivals)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        if len(waits) < burst:
            sys.exit(f"only {len(waits)} of {burst} deliveries arrived; see {work}/notifier.out")
        p50 = statistics.median(waits) * 1000
        p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))] * 1000
        # The least possible: the burst goes out `in_flight` at a time, each taking `delay`.
        floor = [(i // in_flight) * delay for i in range(burst)]
        print(f"\n== notifier: a burst of {burst} notifications at once to a webhook channel, "
              f"{in_flight} in flight, receiver answering in {delay * 1000:.0f} ms ==")
        print(f"acceptance to arrival p50 {p50:.0f} ms, p99 {p99:.0f} ms, last {waits[-1] * 1000:.0f} ms "
              f"(the in-flight limit alone allows p50 {statistics.median(floor) * 1000:.0f} ms, "
              f"last {floor[-1] * 1000:.0f} ms)")
        return [f"notifier, burst of {burst} above the in-flight limit ({in_flight}, receiver {delay * 1000:.0f} ms): "
                f"acceptance to arrival p50 {p50:.0f} ms, p99 {p99:.0f} ms "
                f"(limit alone: p50 {statistics.median(floor) * 1000:.0f} ms)"]
    finally:
        receiver.shutdown()
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notifier", required=True, help="the mcpwatch-notifier binary (release)")
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    for line in notifier_throughput(os.path.realpath(args.notifier), args.seconds):
        print(line)


if __name__ == "__main__":
    main()
