"""`mtrec batch` users/s: the local engine against Ray Data with 1 and 2 workers.

For each dataset (ml-100k; the 100k-item synthetic set of ``bench_scale.py``:
``synthetic:100000:50000:1000000``) a workspace is built with a model of the default
architecture whose weights are not trained (random text vectors of the MiniLM width stand in
for the index): batch throughput depends on the model's shape, not its weights, and training
the 100k model takes minutes of the cores this measures. Then, each in a fresh process with
one torch thread per scoring process, model-only, k = 10, chunks of 1,000 users:

* ``mtrec batch --engine local``;
* ``mtrec batch --engine ray --workers 1`` and ``--workers 2`` (a local Ray cluster started
  by the command, one actor per worker, each loading the model once).

Reported per run: the batch's own figure (``users_per_s`` from the command's JSON: for the
local engine the scoring after the model is loaded; for Ray everything after the users are
read, which includes starting Ray and loading the model in every actor) and the whole
command's wall time.

Example::

    python benchmarks/bench_batch_ray.py                       # both datasets
    python benchmarks/bench_batch_ray.py --datasets ml-100k

Results: ``benchmarks/results/batch_ray.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import write_results  # noqa: E402

DATASETS = {"ml-100k": "ml-100k", "synthetic-100k": "synthetic:100000:50000:1000000"}


def build_workspace(root: Path, source: str) -> dict[str, Any]:
    """A workspace with the dataset and an untrained model of the default architecture."""
    from agent.workspace import DatasetSpec, Workspace
    from mtrec.config import MTRecConfig
    from mtrec.model.multitask import MultiTaskModel

    t = time.perf_counter()
    ws = Workspace(root)
    ws.set_dataset(DatasetSpec(source))
    ds = ws.dataset
    rng = np.random.default_rng(0)
    text = rng.standard_normal((ds.n_items, 384)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    cfg = MTRecConfig.for_protocol("loo")
    model = MultiTaskModel.create(ds, cfg, text)
    model.save(ws.model_dir, {"bench": "batch_ray", "trained": False})
    return {"items": ds.n_items, "users": ds.n_users, "build_s": round(time.perf_counter() - t, 1)}


def run(ws: Path, out: Path, extra: list[str], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "agent", "batch", "-w", str(ws), "--users", "all"]
    cmd += ["--out", str(out), "--overwrite", "--threads", "1", "--chunk-size", "1000", "--json"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    load_before = os.getloadavg()[0]
    t = time.perf_counter()
    proc = subprocess.run(
        [*cmd, *extra], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-1500:]}
    s = json.loads(proc.stdout)
    return {
        "users": s["users"],
        "rows": s["rows"],
        "batch_s": s["seconds"],
        "users_per_s": s["users_per_s"],
        "command_wall_s": round(wall, 1),
        "users_per_s_end_to_end": round(s["users"] / wall, 1),
        "engine": s.get("engine"),
        "workers": s.get("workers"),
        "actor_processes": s.get("actor_processes"),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument(
        "--workers", nargs="*", type=int, default=[1, 2], help="Ray pool sizes (none: local only)."
    )
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--no-local", action="store_true", help="Only the Ray runs.")
    p.add_argument("--name", default="batch_ray")
    args = p.parse_args()
    out: dict[str, Any] = {"settings": vars(args), "datasets": {}}
    with tempfile.TemporaryDirectory(prefix="mtrec-bench-ray-") as tmp:
        for name in args.datasets:
            ws = Path(tmp) / name
            res: dict[str, Any] = {"workspace": build_workspace(ws, DATASETS[name])}
            parquet = Path(tmp) / f"{name}.parquet"
            if not args.no_local:
                res["local"] = run(ws, parquet, ["--engine", "local"], args.timeout)
                print(json.dumps({name: {"local": res["local"]}}), flush=True)
            for w in args.workers:
                key = f"ray_{w}_workers"
                res[key] = run(ws, parquet, ["--engine", "ray", "--workers", str(w)], args.timeout)
                print(json.dumps({name: {key: res[key]}}), flush=True)
            out["datasets"][name] = res
            write_results(args.name, out)
    print(f"wrote {write_results(args.name, out)}")


if __name__ == "__main__":
    main()
