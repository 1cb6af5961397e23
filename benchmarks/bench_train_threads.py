"""`mtrec train` wall time alone and beside another CPU-bound process, per thread setting.

Each scenario is one whole `mtrec train -w WS --epochs N --no-resume --json` command (what a
user runs), on a workspace indexed once from ml-100k. A scenario is ``THREADS[+n]``:
``auto`` (the default: ``mtrec.threads.AdaptiveThreads``) or a fixed count, alone or while a
"neighbour" process multiplies matrices with torch's default threads for the whole command.
``2+n`` is what every run did before the adaptive default (torch's one thread per core).

On a 2-core machine the neighbour holds one core or more, so a run that uses both cores alone
can at best take about twice as long beside it; this measures how far above that it lands.

Example::

    python benchmarks/bench_train_threads.py --epochs 4 --scenarios auto auto+n 2+n 1+n

Writes ``benchmarks/results/train_threads.json``; with ``--update``, the scenarios run replace
those of the same name in that file and the others are kept (each row has its date and commit).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS, git_commit, write_results  # noqa: E402

# A CPU-bound torch job with torch's default settings (one thread per core, OpenMP defaults).
NEIGHBOUR = (
    "import torch\na = torch.randn(1500, 1500)\nwhile True:\n    a = torch.tanh(a @ a / 1500)\n"
)


def mtrec(*args: str) -> list[str]:
    """The command line of ``mtrec ARGS`` in this interpreter."""
    return [sys.executable, "-m", "agent", *args]


def run(threads: str, neighbour: bool, ws: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One whole ``mtrec train`` command in a scenario; its row of the results."""
    other = None
    if neighbour:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
        other = subprocess.Popen([sys.executable, "-c", NEIGHBOUR], env=env)
        time.sleep(3)  # let it start multiplying
    load = [round(x, 2) for x in os.getloadavg()]
    shutil.rmtree(ws / "model", ignore_errors=True)
    cmd = mtrec("train", "-w", str(ws), "--protocol", args.protocol, "--epochs", str(args.epochs))
    cmd += ["--no-resume", "--json"] + ([] if threads == "auto" else ["--threads", threads])
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if other is not None:
        other.kill()
        other.wait()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    return {
        "scenario": threads + ("+n" if neighbour else ""),
        "threads": threads,
        "neighbour": neighbour,
        "command_wall_seconds": round(wall, 1),
        "train_seconds": summary["train_seconds"],
        "epoch_seconds": summary["epoch_seconds"],
        "thread_changes": summary["thread_changes"],
        "valid_ndcg@10": summary["valid_ndcg@10"],
        "loadavg_at_start": load,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--protocol", default="loo")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument(
        "--scenarios",
        nargs="+",
        default=["auto", "auto+n", "2+n", "1+n"],
        help="THREADS[+n]: auto or a count; +n = beside the neighbour process",
    )
    ap.add_argument("--update", action="store_true", help="keep the results file's other scenarios")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        subprocess.run(
            mtrec("index", "--dataset", args.dataset, "-w", str(ws), "--json"),
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        rows = []
        for scenario in args.scenarios:
            threads, _, n = scenario.partition("+")
            row = run(threads, bool(n), ws, args)
            rows.append(row)
            print(json.dumps(row), flush=True)
    results = RESULTS / "train_threads.json"
    if args.update and results.is_file():
        ran = {r["scenario"] for r in rows}
        kept = [r for r in json.loads(results.read_text())["runs"] if r["scenario"] not in ran]
        rows = kept + rows
    alone = next((r for r in rows if r["scenario"] == "auto"), None)
    if alone:
        for r in rows:
            r["slowdown_vs_auto_alone"] = round(r["train_seconds"] / alone["train_seconds"], 2)
    path = write_results(
        "train_threads",
        {"dataset": args.dataset, "protocol": args.protocol, "epochs": args.epochs, "runs": rows},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
