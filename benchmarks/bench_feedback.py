"""Feedback store latency and throughput under 50 concurrent clients: SQLite vs PostgreSQL.

Each backend gets a fresh store seeded with ``--seed-users`` x 20 events, then two timed
phases of ``--seconds`` each: every client writes (``FeedbackStore.add``: one durable event
per call), then every client reads (``FeedbackStore.events(user)``: one user's events, what a
request does to build a history). The 50 clients are ``--procs`` processes x ``--threads``
threads, each thread its own connection (SQLite) or a pooled one (PostgreSQL, pool size =
threads per process). PostgreSQL is a real server started for the run (Debian's binaries,
``initdb`` in a temp dir, loopback TCP, ``fsync=on``, ``synchronous_commit=on``), unless
``--pg-url`` names one.

Example::

    python benchmarks/bench_feedback.py                  # 5 procs x 10 threads, 10 s phases

Results: ``benchmarks/results/feedback.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import write_results  # noqa: E402

EVENTS = ("like", "dislike", "seen")


def client_proc(target: str, phase: str, threads: int, seconds: float, users: int,
                proc: int, q: Any) -> None:  # fmt: skip
    """One process of clients: ``threads`` threads hammering the store for ``seconds``."""
    from agent.feedback import FeedbackStore

    kwargs = {"pool_size": threads} if target.startswith("postgresql") else {}
    store = FeedbackStore(target, **kwargs)
    store.events("warm-up")  # connect (and migrate) before the clock starts
    lat: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        rng = random.Random(proc * 1000 + t)
        start.wait()
        end = time.perf_counter() + seconds
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                break
            user = f"u{rng.randrange(users)}"
            try:
                if phase == "write":
                    store.add(user, str(rng.randrange(1, 1683)), rng.choice(EVENTS))
                else:
                    store.events(user)
            except Exception:
                errors[t] += 1
                continue
            lat[t].append(time.perf_counter() - t0)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    store.close()
    q.put({"lat": [x for xs in lat for x in xs], "errors": sum(errors)})


def phase(target: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    load_before = os.getloadavg()[0]
    procs = [
        ctx.Process(
            target=client_proc,
            args=(target, name, args.threads, args.seconds, args.seed_users, p, q),
        )
        for p in range(args.procs)
    ]
    for p in procs:
        p.start()
    results = [q.get(timeout=args.seconds + 300) for _ in procs]
    for p in procs:
        p.join(60)
    lat = sorted(x for r in results for x in r["lat"])
    n = len(lat)

    def pct(p: float) -> float:
        return round(lat[min(n - 1, int(p * n))] * 1000, 2) if n else float("nan")

    return {
        "clients": args.procs * args.threads,
        "ops": n,
        "errors": sum(r["errors"] for r in results),
        "ops_per_s": round(n / args.seconds, 1),
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "mean_ms": round(statistics.fmean(lat) * 1000, 2) if n else None,
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def seed(target: str, users: int) -> None:
    from agent.feedback import FeedbackStore

    store = FeedbackStore(target)
    rng = random.Random(0)
    for u in range(users):
        for _ in range(20):
            store.add(f"u{u}", str(rng.randrange(1, 1683)), rng.choice(EVENTS))
    store.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", type=int, default=5)
    p.add_argument("--threads", type=int, default=10)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--seed-users", type=int, default=500)
    p.add_argument("--pg-url", help="An existing PostgreSQL database (default: start one).")
    p.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    p.add_argument("--name", default="feedback")
    args = p.parse_args()

    server = None
    out: dict[str, Any] = {"settings": vars(args), "backends": {}}
    try:
        for backend in args.backends:
            if backend == "sqlite":
                tmp = tempfile.mkdtemp(prefix="mtrec-bench-fb-")
                target = str(Path(tmp) / "feedback.sqlite")
                where = "SQLite file on local disk (WAL, synchronous=FULL)"
            else:
                if args.pg_url:
                    target = args.pg_url
                else:
                    from tests.conftest import start_postgres

                    server = start_postgres()
                    target = server.create_database("bench")
                where = "PostgreSQL 15 on loopback TCP (fsync=on, synchronous_commit=on)"
            t = time.perf_counter()
            seed(target, args.seed_users)
            res = {"store": where, "seed_s": round(time.perf_counter() - t, 1)}
            res["write"] = phase(target, "write", args)
            res["read"] = phase(target, "read", args)
            out["backends"][backend] = res
            print(json.dumps({backend: res}), flush=True)
            write_results(args.name, out)
    finally:
        if server is not None:
            server.destroy()
    print(f"wrote {write_results(args.name, out)}")


if __name__ == "__main__":
    main()
