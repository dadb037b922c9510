"""Sweep summary benchmark (issue 20: the summary of a 100-run sweep answers in under 200 ms).

A real uvicorn on a SQLite file; ``POST /sweeps`` queues 10 schedulers' worth of grid points x
10 seeds (100 runs), a worker claims each, posts its final test evaluation (6 levels + overall,
like e2h.train's) and a few hundred snapshots, and finishes it. Then ``GET /sweeps/{id}`` (runs +
summary) is timed from this client, and ``GET /sweeps`` for comparison. The machine's load average
is printed too: other work on the machine moves the figures.

    .venv/bin/python benchmarks/bench_sweep_summary.py [--groups 10] [--seeds 10] [--repeat 50]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
WORKER = {"Authorization": f"Bearer {TOKEN}"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _results(rng: random.Random) -> dict:
    results = {}
    for level in range(6):
        acc = rng.random()
        results[f"level_{level}"] = {"accuracy": acc, "reward_mean": 0.1 + 0.9 * acc, "support": 50}
    results["overall"] = {"accuracy": 0.5, "reward_mean": 0.55, "support": 300}
    return results


def _snapshot(step: int) -> dict:
    levels = [{"level": i, "probability": 0.2, "count": step, "reward_mean": 0.5, "reward_var": 0.1}
              for i in range(5)]
    return {"step": step, "scheduler": "gaussian", "levels": levels, "metrics": {"loss": 0.1, "reward": 0.5}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=10, help="grid points (learning rates)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--snapshots", type=int, default=200, help="snapshots per run (history the summary ignores)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    port = _port()
    env = {**os.environ, "E2H_DATABASE_URL": f"sqlite:///{tmp / 'e2h.db'}", "E2H_DATA_DIR": str(tmp),
           "E2H_WORKER_TOKEN": TOKEN}
    env.pop("E2H_API_TOKEN", None)
    log = (tmp / "server.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "server.main:app", "--host", "127.0.0.1",
                               "--port", str(port), "--log-level", "warning"], cwd=REPO, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        deadline = time.monotonic() + 60
        while True:
            try:
                if api.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"server not ready:\n{(tmp / 'server.log').read_text()}")
            time.sleep(0.1)

        rates = [round(1e-5 * (i + 1), 6) for i in range(args.groups)]
        started = time.perf_counter()
        r = api.post("/sweeps", json={"config": {"scheduler": {"name": "gaussian"},
                                                 "algorithm": {"max_steps": args.snapshots}},
                                      "grid": {"algorithm.learning_rate": rates},
                                      "seeds": list(range(args.seeds))})
        r.raise_for_status()
        sweep = r.json()
        created = time.perf_counter() - started
        rng = random.Random(0)
        for _ in sweep["run_ids"]:
            run = api.post("/workers/claim", json={"worker_id": "bench"}, headers=WORKER).json()["run"]
            fence = {"worker_id": "bench", "attempt": run["attempt"]}
            api.post(f"/runs/{run['id']}/snapshots", params=fence, headers=WORKER,
                     json=[_snapshot(s) for s in range(1, args.snapshots + 1)]).raise_for_status()
            api.post(f"/runs/{run['id']}/evals", params=fence, headers=WORKER,
                     json=[{"step": args.snapshots, "name": "test", "results": _results(rng)}]).raise_for_status()
            api.post(f"/runs/{run['id']}/finish", json={**fence, "status": "succeeded"},
                     headers=WORKER).raise_for_status()

        def timed(path: str) -> list[float]:
            api.get(path).raise_for_status()  # warm
            out = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                response = api.get(path)
                response.raise_for_status()
                out.append((time.perf_counter() - t0) * 1000)
            return out

        detail = timed(f"/sweeps/{sweep['id']}")
        listing = timed("/sweeps")
        body = api.get(f"/sweeps/{sweep['id']}").json()
        assert body["status"] == "finished" and len(body["runs"]) == args.groups * args.seeds
        assert all(g["finished"] == args.seeds for g in body["summary"]["groups"])
        load = os.getloadavg()
        n = len(sweep["run_ids"])
        print(f"sweep of {n} runs ({args.groups} groups x {args.seeds} seeds), {len(body['summary']['cells'])} "
              f"summary cells, {len(body['summary']['differences'])} differences")
        print(f"POST /sweeps (validate and queue {n} runs): {created * 1000:.0f} ms")
        for name, times, target in (("GET /sweeps/{id} (runs + summary)", detail, " (target: < 200 ms)"),
                                    ("GET /sweeps", listing, "")):
            times.sort()
            p95 = times[int(0.95 * (len(times) - 1))]
            print(f"{name}: median {statistics.median(times):.1f} ms, p95 {p95:.1f} ms, max {times[-1]:.1f} ms "
                  f"over {len(times)} requests{target}")
        print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    finally:
        server.terminate()
        server.wait(15)
        log.close()


if __name__ == "__main__":
    main()
