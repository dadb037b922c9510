"""Snapshot ingestion benchmark against a real uvicorn with a SQLite file.

Four senders (threads, each its own HTTP connection, like four workers) each stream one
K=5 run's snapshots in batches of 100 to ``POST /runs/{id}/snapshots`` (25,000 steps
each), while an SSE client watches run 0 and a heartbeat keeps the leases. Reported:

* ingest rate: snapshots stored per second, all senders together (target >= 10,000/s),
  with the server's and this client's CPU time and the machine's load average (other
  work on the machine moves the figures);
* SSE latency: from just before a batch's POST to the arrival of its last snapshot on
  ``GET /runs/{id}/events`` (p50/p95/max; target p95 < 250 ms);
* history query: run 0 is then topped up to 100,000 steps (the four senders sharing it)
  and ``GET /runs/{id}/snapshots?max_points=1000`` is timed (bucketed; target < 150 ms),
  as is an incremental poll (``after_step``);
* full history of run 0: the streamed NDJSON export, one series of it as CSV
  (``snapshots.csv?series=``; target < 1 s for 100,000 steps) and ``max_points=100000``,
  with the server's resident memory after each (target: flat).

Snapshots look like the variance-regularized scheduler's: five levels, each with its
twelve score components, plus eight training metrics (about 2.4 kB of JSON each).

    .venv/bin/python benchmarks/bench_ingest.py [--steps 25000] [--history-steps 100000]
        [--senders 4] [--batch 100] [--database-url URL] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
COMPONENTS = [
    f"{name}_{kind}" for name in ("deficit", "variance", "exploration", "groupdro", "vrex") for kind in ("raw", "norm")
] + ["score", "pi"]
METRICS = ["loss", "reward", "reward_std", "kl", "grad_norm", "learning_rate", "completion_length", "epoch"]


def batch_template(k: int, batch: int) -> list[bytes]:
    """A batch's JSON split around its step numbers: join with the steps to get a body.

    Building bodies this way costs microseconds, so the senders measure the server, not
    the client's JSON encoder.
    """
    p = 1.0 / k
    levels = [
        {
            "level": i,
            "probability": p,
            "count": 1234 * (i + 1),
            "reward_mean": 0.41 + 0.1 * i,
            "reward_var": 0.0625,
            "components": {c: 0.123456789 + 0.01 * j for j, c in enumerate(COMPONENTS)},
        }
        for i in range(k)
    ]
    marker = -987654321
    one = {
        "step": marker,
        "time": 1_700_000_000.25,
        "scheduler": "variance_regularized",
        "levels": levels,
        "metrics": {m: 0.5 + 0.01 * j for j, m in enumerate(METRICS)},
    }
    text = "[" + ",".join(json.dumps(one, separators=(",", ":")) for _ in range(batch)) + "]"
    return [part.encode() for part in text.split(str(marker))]


def body_for(parts: list[bytes], first_step: int) -> bytes:
    out = [parts[0]]
    for i, part in enumerate(parts[1:]):
        out.append(str(first_step + i).encode())
        out.append(part)
    return b"".join(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(database_url: str, data_dir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "E2H_DATABASE_URL": database_url, "E2H_WORKER_TOKEN": TOKEN, "E2H_DATA_DIR": data_dir}
    env.pop("E2H_API_TOKEN", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "server.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=REPO,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("server did not become ready in 60 s")
        time.sleep(0.05)


class SSEWatcher(threading.Thread):
    """Records when each snapshot step of one run arrives on its event stream."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.arrivals: dict[int, float] = {}
        self.connected = threading.Event()
        self.stop = threading.Event()
        self.start()

    def run(self) -> None:
        with httpx.stream("GET", self.url, timeout=httpx.Timeout(10, read=None)) as r:
            event = None
            for line in r.iter_lines():
                if line.startswith("event:"):
                    event = line[7:]
                elif line.startswith("data:"):
                    if event == "snapshot":
                        # Data starts with {"step":N, (the server stores validated JSON, step first).
                        self.arrivals[int(line[14 : line.index(",", 14)])] = time.perf_counter()
                    else:
                        self.connected.set()
                if self.stop.is_set():
                    return


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (Linux); 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * len(values)) - 1))]


class Heartbeats(threading.Thread):
    """Keeps the runs' leases alive, as a worker does (the default lease is 60 s)."""

    def __init__(self, url: str, runs: list[tuple[int, dict]], every: float = 5.0):
        super().__init__(daemon=True)
        self.url, self.runs, self.every = url, runs, every
        self.stop = threading.Event()
        self.start()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60, headers=AUTH) as http:
            while not self.stop.wait(self.every):
                for run_id, fence in self.runs:
                    http.post(f"/runs/{run_id}/heartbeat", json=fence).raise_for_status()


def ingest(
    url: str,
    jobs: list[tuple[int, dict, range]],
    parts: list[bytes],
    batch: int,
    sent_at: dict[int, float] | None = None,
) -> float:
    """One thread per job posts its steps in batches; -> seconds until the last one finished.

    ``sent_at`` (job 0 only) records, per batch, its last step and when its POST started.
    """
    errors: list[str] = []

    def send(index: int) -> None:
        run_id, fence, steps = jobs[index]
        with httpx.Client(base_url=url, timeout=60, headers=AUTH) as http:
            for first in steps:
                body = body_for(parts, first)
                if index == 0 and sent_at is not None:
                    sent_at[first + batch - 1] = time.perf_counter()
                r = http.post(f"/runs/{run_id}/snapshots", params=fence, content=body)
                if r.status_code != 202 or r.json()["accepted"] != batch:
                    errors.append(f"{r.status_code} {r.text[:300]}")
                    return

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(jobs))]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"ingest failed: {errors[0]}")
    return time.perf_counter() - t0


def rss_mb(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).memory_info().rss / 1e6, 1)


def full_history(api: httpx.Client, pid: int, run_id: int, steps: int) -> dict:
    """Time the streamed export, one series of it as CSV and the unbucketed JSON history of the
    same run, with the server's RSS after each."""
    start = rss_mb(pid)
    t = time.perf_counter()
    lines, size = 0, 0
    with api.stream("GET", f"/runs/{run_id}/snapshots.ndjson") as r:
        r.raise_for_status()
        for chunk in r.iter_bytes():
            size += len(chunk)
            lines += chunk.count(b"\n")
    export_s = time.perf_counter() - t
    assert lines == steps, (lines, steps)
    after_export = rss_mb(pid)
    one_series = {}
    for name in ("probability", "metrics.loss"):  # one series, as CSV: picked out by the database
        t = time.perf_counter()
        text = api.get(f"/runs/{run_id}/snapshots.csv", params={"series": name}).raise_for_status().text
        one_series[name] = round(time.perf_counter() - t, 2)
        assert text.count("\n") == steps + 1
    after_series = rss_mb(pid)
    t = time.perf_counter()
    series = api.get(f"/runs/{run_id}/snapshots", params={"max_points": steps}).raise_for_status().json()
    bucketed_s = time.perf_counter() - t
    assert len(series["steps"]) == steps
    return {"export_s": round(export_s, 2), "export_mb": round(size / 1e6, 1), "bucketed_s": round(bucketed_s, 2),
            "speedup": round(bucketed_s / export_s, 1), "series_s": one_series,
            "rss_mb": {"start": start, "after_export": after_export, "after_series": after_series,
                       "after_bucketed": rss_mb(pid)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=25_000, help="snapshots each sender streams to its own run")
    ap.add_argument("--history-steps", type=int, default=100_000, help="run 0 is topped up to this many steps")
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--levels", type=int, default=5, help="K (the default config's arithmetic task has 5)")
    ap.add_argument("--database-url", default=None, help="default: a SQLite file in a temporary directory")
    ap.add_argument("--queries", type=int, default=30, help="repetitions of the history query")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    if args.steps % args.batch or args.history_steps % args.batch or args.history_steps < args.steps:
        raise SystemExit("--steps and --history-steps must be multiples of --batch, history >= steps")

    load_at_start = round(os.getloadavg()[0], 2)  # others' work on the machine skews the figures
    tmp = tempfile.TemporaryDirectory(prefix="e2h-bench-")
    db_url = args.database_url or f"sqlite:///{tmp.name}/e2h.db"
    proc, url = start_server(db_url, tmp.name)
    api = httpx.Client(base_url=url, timeout=60)
    beats = None
    try:
        config = {
            "task": {"name": "arithmetic", "train_levels": list(range(args.levels))},
            "algorithm": {"max_steps": max(args.history_steps, 1000)},
        }
        runs = []
        for i in range(args.senders):
            run_id = api.post("/runs", json={"name": f"bench-{i}", "config": config}).raise_for_status().json()["id"]
            claimed = api.post("/workers/claim", json={"worker_id": f"bench-{i}"}, headers=AUTH).json()
            runs.append((run_id, {"worker_id": f"bench-{i}", "attempt": claimed["run"]["attempt"]}))
        beats = Heartbeats(url, runs)
        parts = batch_template(args.levels, args.batch)

        # Phase 1: each sender streams its own run (four workers); the SSE client watches run 0.
        watcher = SSEWatcher(f"{url}/runs/{runs[0][0]}/events")
        if not watcher.connected.wait(10):
            raise SystemExit("the event stream did not start")
        sent_at: dict[int, float] = {}
        jobs = [(run_id, fence, range(0, args.steps, args.batch)) for run_id, fence in runs]
        cpu0 = cpu_seconds(proc.pid), time.process_time()
        elapsed = ingest(url, jobs, parts, args.batch, sent_at)
        server_cpu = cpu_seconds(proc.pid) - cpu0[0]
        client_cpu = time.process_time() - cpu0[1]
        total = args.steps * args.senders
        rate = total / elapsed

        last = args.steps - 1
        deadline = time.monotonic() + 30
        while last not in watcher.arrivals and time.monotonic() < deadline:
            time.sleep(0.01)
        watcher.stop.set()
        latencies = [(watcher.arrivals[s] - t) * 1000 for s, t in sent_at.items() if s in watcher.arrivals]
        missing = len(sent_at) - len(latencies)

        # Phase 2: top run 0 up to --history-steps (the senders share its remaining steps).
        run0, fence0 = runs[0]
        rest = range(args.steps, args.history_steps, args.batch)
        top_up = [(run0, fence0, rest[i :: args.senders]) for i in range(args.senders)]
        top_up_seconds = ingest(url, top_up, parts, args.batch) if len(rest) else 0.0

        last = args.history_steps - 1
        stored = api.get(f"/runs/{run0}").json()
        assert (stored["step"], stored["snapshot_count"]) == (last, args.history_steps), stored
        timings = []
        for _ in range(args.queries):
            t = time.perf_counter()
            r = api.get(f"/runs/{run0}/snapshots", params={"max_points": 1000})
            timings.append((time.perf_counter() - t) * 1000)
            series = r.raise_for_status().json()
        assert series["total"] == args.history_steps and len(series["steps"]) <= 1000
        assert series["steps"][0] == 0 and series["steps"][-1] == last
        incremental = []
        for _ in range(args.queries):
            t = time.perf_counter()
            api.get(f"/runs/{run0}/snapshots", params={"after_step": last - args.batch}).raise_for_status()
            incremental.append((time.perf_counter() - t) * 1000)

        # Phase 3: the full history, side by side: max_points=100000 (one JSON body, the whole
        # series in memory) against the streamed NDJSON export (one batch at a time); the server's
        # resident memory after each (the same process, so the export runs first).
        export = full_history(api, proc.pid, run0, args.history_steps)

        db_bytes = sum(f.stat().st_size for f in Path(tmp.name).glob("e2h.db*"))
        results = {
            "machine_cpus": os.cpu_count(),
            "load_average": load_at_start,
            "database": db_url.split(":")[0],
            "levels": args.levels,
            "senders": args.senders,
            "batch": args.batch,
            "snapshots": total,
            "ingest_seconds": round(elapsed, 2),
            "ingest_snapshots_per_s": round(rate),
            "ingest_cpu_s": {"server": round(server_cpu, 2), "benchmark_client": round(client_cpu, 2)},
            "sse_latency_ms": {
                "batches": len(latencies),
                "missing": missing,
                "p50": round(statistics.median(latencies), 1),
                "p95": round(percentile(latencies, 95), 1),
                "max": round(max(latencies), 1),
            },
            "same_run_top_up_snapshots_per_s": round(len(rest) * args.batch / top_up_seconds) if len(rest) else None,
            "history_query_ms": {
                "run_steps": args.history_steps,
                "points": len(series["steps"]),
                "first": round(timings[0], 1),
                "median": round(statistics.median(timings), 1),
                "p95": round(percentile(timings, 95), 1),
            },
            "incremental_poll_ms": {"median": round(statistics.median(incremental), 1)},
            "db_mb": round(db_bytes / 1e6, 1) if db_url.startswith("sqlite") else None,
            "full_history": export,
        }
    finally:
        if beats is not None:
            beats.stop.set()
        api.close()
        proc.terminate()
        proc.wait(timeout=30)
        tmp.cleanup()

    lat, hist = results["sse_latency_ms"], results["history_query_ms"]
    print(
        f"ingest     {results['snapshots']:,} snapshots (K={args.levels}, batches of {args.batch}, "
        f"{args.senders} senders, one run each) in {results['ingest_seconds']} s: "
        f"{results['ingest_snapshots_per_s']:,} snapshots/s   (target >= 10,000/s)"
    )
    print(
        f"           CPU during ingest: server {results['ingest_cpu_s']['server']} s, benchmark client "
        f"{results['ingest_cpu_s']['benchmark_client']} s; {os.cpu_count()} cores, load average "
        f"{results['load_average']} at the start"
    )
    print(
        f"SSE        POST -> event latency over {lat['batches']} batches: p50 {lat['p50']} ms, "
        f"p95 {lat['p95']} ms, max {lat['max']} ms   (target p95 < 250 ms)"
    )
    if results["same_run_top_up_snapshots_per_s"]:
        print(
            f"top-up     run 0 to {args.history_steps:,} steps, {args.senders} senders on the one run: "
            f"{results['same_run_top_up_snapshots_per_s']:,} snapshots/s"
        )
    print(
        f"history    {hist['run_steps']:,}-step run, max_points=1000 -> {hist['points']} points: "
        f"median {hist['median']} ms, p95 {hist['p95']} ms, first {hist['first']} ms   (target < 150 ms)"
    )
    print(
        f"incremental poll (after_step, {args.batch} new steps): median "
        f"{results['incremental_poll_ms']['median']} ms"
        + (f"; SQLite file {results['db_mb']} MB" if results["db_mb"] is not None else "")
    )
    ex = results["full_history"]
    print(
        f"full history of the {args.history_steps:,}-step run: NDJSON export {ex['export_s']} s "
        f"({ex['export_mb']} MB, server RSS {ex['rss_mb']['start']} -> {ex['rss_mb']['after_export']} MB) vs "
        f"max_points={args.history_steps} {ex['bucketed_s']} s (server RSS -> {ex['rss_mb']['after_bucketed']} MB): "
        f"{ex['speedup']}x\n"
        f"one series of it as CSV: " + ", ".join(f"{k} {v} s" for k, v in ex["series_s"].items())
        + f" (server RSS -> {ex['rss_mb']['after_series']} MB)   (target: < 1 s, flat memory)"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
