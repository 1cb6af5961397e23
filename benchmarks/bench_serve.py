"""Load test of ``mtrec serve``: concurrent clients POST /recommend on loopback.

Starts ``mtrec serve`` on a workspace (or uses ``--url``), waits for ``/health``, runs a short
warm-up, then ``--clients`` concurrent clients (an ``httpx.AsyncClient`` each) send requests for
random known users (model-only tier, k=10) for ``--duration`` seconds, twice: closed loop
(every client sends again as soon as it is answered: the saturation throughput) and paced
(the clients together offer ``--rate`` requests/s; the target is judged on this run, since
with 50 closed-loop clients p95 <= 100 ms would need > 500 requests/s by Little's law).
Writes requests/s, p50/p95/p99 latency (all, and uncached only: the service caches identical
answers), errors, machine info, date and the exact command to a JSON file.

    python benchmarks/bench_serve.py --workspace WS [--clients 50] [--duration 20]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import git_commit  # noqa: E402

TARGET = {"requests_per_s": 100, "p95_ms": 100, "errors": 0}


def start_server(workspace: Path, port: int, workers: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "agent",
        "serve",
        "-w",
        str(workspace),
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--llm",
        "none",
    ]
    with log.open("wb") as fh:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)


def wait_healthy(url: str, proc: subprocess.Popen | None, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode} before it was healthy")
        try:
            r = httpx.get(url + "/health", timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the server was not healthy within {timeout:.0f} s")


async def run_load(
    url: str,
    users: list[str],
    clients: int,
    duration: float,
    k: int,
    seed: int,
    rate: float = 0.0,
    items: list[str] | None = None,
) -> dict[str, Any]:
    """``clients`` concurrent clients for ``duration`` seconds.

    ``rate`` 0: closed loop, each client sends its next request as soon as the last one is
    answered (the saturation throughput; latency is then ``clients / throughput`` by Little's
    law). ``rate`` > 0: the clients together offer that many requests/s on a fixed schedule,
    and latency is measured from the scheduled send time, so a server that falls behind
    is charged for the queueing too (no coordinated omission).

    With ``items``, every request also excludes one random item, which makes its answer-cache
    key unique (the cache would otherwise answer repeated users for almost nothing).
    """
    latencies: list[float] = []
    cached: list[bool] = []
    errors: dict[str, int] = {}
    # One client (one keep-alive connection) per simulated user: a single pool shared by 50
    # connections cost the client ~4x more CPU per request, on the cores the server needs.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    # Clients are made before the clock starts: each builds an SSL context (~10 ms of CPU),
    # which would otherwise delay the first scheduled requests and count as their latency.
    pool = [httpx.AsyncClient(base_url=url, timeout=30, limits=limits) for _ in range(clients)]
    start = time.perf_counter()
    stop = start + duration
    interval = clients / rate if rate > 0 else 0.0

    async def one_client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        due = start + interval * i / clients  # staggered schedule
        async with pool[i] as client:
            while True:
                now = time.perf_counter()
                if rate > 0:
                    if due >= stop:
                        return
                    if due > now:
                        await asyncio.sleep(due - now)
                    t0, due = due, due + interval
                else:
                    if now >= stop:
                        return
                    t0 = now
                body: dict[str, Any] = {"user_id": rng.choice(users), "k": k, "llm": "none"}
                if items:
                    body["exclude"] = [rng.choice(items)]
                try:
                    r = await client.post("/recommend", json=body)
                    ok = r.status_code == 200
                    key = str(r.status_code)
                    hit = ok and b'"cached":true' in r.content
                except httpx.HTTPError as e:
                    ok, key, hit = False, type(e).__name__, False
                if ok:
                    latencies.append((time.perf_counter() - t0) * 1000)
                    cached.append(hit)
                else:
                    errors[key] = errors.get(key, 0) + 1

    await asyncio.gather(*(one_client(i) for i in range(clients)))
    elapsed = time.perf_counter() - start
    lat = np.array(latencies)
    hit = np.array(cached, dtype=bool)
    return {
        "mode": f"paced: {rate:g} requests/s offered" if rate > 0 else "closed loop",
        "seconds": round(elapsed, 2),
        "requests": len(latencies) + sum(errors.values()),
        "ok": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "requests_per_s": round(len(latencies) / elapsed, 1) if elapsed else 0.0,
        "latency_ms": _percentiles(lat),
        "cache_hits": int(hit.sum()),
        "latency_ms_uncached": _percentiles(lat[~hit]) if len(lat) else {},
    }


def _percentiles(lat: np.ndarray) -> dict[str, float]:
    if not len(lat):
        return {}
    return {
        "p50": round(float(np.percentile(lat, 50)), 1),
        "p95": round(float(np.percentile(lat, 95)), 1),
        "p99": round(float(np.percentile(lat, 99)), 1),
        "mean": round(float(lat.mean()), 1),
        "max": round(float(lat.max()), 1),
    }


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu,
        "cpus_usable": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "git_commit": git_commit(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workspace", "-w", type=Path, help="A workspace with a trained model.")
    p.add_argument("--url", help="Benchmark a running server instead of starting one.")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--duration", type=float, default=20.0, help="Seconds of each measured run.")
    p.add_argument("--warmup", type=float, default=3.0, help="Seconds of unmeasured load first.")
    p.add_argument(
        "--rate",
        type=float,
        default=110.0,
        help="Requests/s the clients offer in the paced run (0: skip it). 10%% above the\n"
        "target, so that a server that keeps up also shows >= 100 completed/s over the run.",
    )
    p.add_argument("--no-closed", action="store_true", help="Skip the closed-loop run.")
    p.add_argument(
        "--allow-cache",
        action="store_true",
        help="Plain requests (repeated users hit the answer cache). Default: each request\n"
        "excludes one random item, so no two requests share a cache key.",
    )
    p.add_argument("--k", type=int, default=10)
    p.add_argument(
        "--workers",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="Server worker processes (default: one per usable core; one process is\n"
        "held to about one core by the GIL).",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve.json")
    args = p.parse_args(argv)
    if args.url is None and args.workspace is None:
        p.error("give --workspace (to start a server) or --url")

    load_before = os.getloadavg()
    proc = None
    url = args.url.rstrip("/") if args.url else None
    if url is None:
        sys.path.insert(0, str(ROOT))
        from agent.distributed import free_port

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_serve_{port}.log"
        proc = start_server(args.workspace.resolve(), port, args.workers, log)
        print(f"server: {url} (log {log})", file=sys.stderr)
    runs: list[dict[str, Any]] = []
    try:
        health = wait_healthy(url, proc, timeout=300)
        if args.workspace is not None:
            sys.path.insert(0, str(ROOT))
            from agent.workspace import Workspace

            ds = Workspace(args.workspace).dataset
            users = [u.user_id for u in ds.users]
            items = ds.item_ids
        else:
            users = [str(i) for i in range(1, int(health["users"]) + 1)]
            items = [str(i) for i in range(1, int(health["items"]) + 1)]
        vary = None if args.allow_cache else items
        print(f"{len(users)} users; warm-up {args.warmup:.0f} s ...", file=sys.stderr)
        if args.warmup > 0:
            asyncio.run(
                run_load(url, users, args.clients, args.warmup, args.k, args.seed + 1, 0.0, vary)
            )
        plan = ([] if args.no_closed else [0.0]) + ([args.rate] if args.rate > 0 else [])
        for i, rate in enumerate(plan):
            print(
                f"{args.clients} clients for {args.duration:.0f} s, "
                + (f"{rate:g} requests/s offered" if rate else "closed loop")
                + " ...",
                file=sys.stderr,
            )
            r = asyncio.run(
                run_load(
                    url, users, args.clients, args.duration, args.k, args.seed + 7 * i, rate, vary
                )
            )
            runs.append(r)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    load_after = os.getloadavg()
    paced = next((r for r in runs if r["mode"].startswith("paced")), None)
    judged = paced or runs[-1]
    met = (
        judged["requests_per_s"] >= TARGET["requests_per_s"]
        and judged["latency_ms"].get("p95", float("inf")) <= TARGET["p95_ms"]
        and sum(r["errors"] for r in runs) == 0
    )
    report = {
        "benchmark": "serve /recommend (model-only tier)",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "setup": {
            "clients": args.clients,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "k": args.k,
            "llm": "none",
            "server_workers": args.workers,
            "server_torch_threads": os.environ.get("MTREC_TORCH_THREADS", "1"),
            "users": len(users),
            "user_choice": "uniform random known user per request (seeded per client)",
            "cache": "answer cache allowed (repeated users hit it)"
            if args.allow_cache
            else "each request excludes one random item: unique cache keys, no cache hits",
            "url": url if args.url else "loopback, started by the benchmark (mtrec serve)",
            "client": "an httpx.AsyncClient per client, same machine (its CPU counts too)",
        },
        "runs": runs,
        "target": TARGET,
        "target_judged_on": judged["mode"],
        "target_met": met,
        "machine": {
            **machine(),
            "load_avg_before": [round(x, 2) for x in load_before],
            "load_avg_after": [round(x, 2) for x in load_after],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for r in runs:
        lat = r["latency_ms"]
        print(
            f"{r['mode']}: {r['requests_per_s']} req/s, p50 {lat.get('p50')} ms, "
            f"p95 {lat.get('p95')} ms, p99 {lat.get('p99')} ms, {r['errors']} errors, "
            f"{r['cache_hits']} cache hits",
            file=sys.stderr,
        )
    print(f"target {'met' if met else 'NOT met'}; wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
