"""``mtrec batch --engine ray``: the batch on Ray Data, on one machine or a cluster.

The users become a Ray dataset cut into batches of ``chunk_size``; a pool of ``workers`` actors
(each loads the workspace's model once, and the local LLM once when a batch asks for that
tier) scores them with the very functions of the local engine (``agent.batch.scorer``), so the
rows are the same; the driver streams the scored batches back in order into one Parquet file
with the local engine's schema, written atomically (a temporary file, then ``os.replace``).

Where it runs: a local Ray cluster started for the run (default), or an existing one
(``--address HOST:PORT``, as ``ray start --head`` prints). Every node of a cluster needs mtrec
installed and the workspace at the same path (a copy is enough: the actors only read it).

Failures: an actor that dies is restarted and its batches retried by Ray
(``max_restarts``/``max_task_retries``), not by this module. Unlike the local engine, a run
that fails as a whole is not resumed: it starts over (the output file is never half-written).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from agent.batch import BatchSummary, check_options, check_output, schema, scorer, with_engine
from agent.errors import BatchError
from agent.files import atomic_path

#: Environment variables that reach the actors (settings, offline flags; never API keys).
FORWARDED_ENV = ("MTREC_", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "OMP_NUM_THREADS")
SECRET_ENV = ("MTREC_LLM_API_KEY", "MTREC_FEEDBACK_URL", "MTREC_API_KEYS")
#: Column the actors add so the driver can tell which processes scored (dropped before writing).
PID_COLUMN = "__mtrec_actor_pid"
#: Ray's retries of a failed actor and of its calls.
MAX_RESTARTS = 3
MAX_TASK_RETRIES = 3


class ScoreActor:
    """One Ray actor: loads the recommender once, then scores batches of users."""

    def __init__(self, workspace: str, k: int, llm: str, explain: bool, threads: int) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        from agent.recommender import Recommender
        from agent.schema import TierChoice

        rec = Recommender.load(workspace, llm=llm)
        self.score = scorer(rec, k, TierChoice(llm), explain)
        self.schema = schema(explain)

    def __call__(self, batch: pa.Table) -> pa.Table:
        users = batch.column("user_id").to_pylist()
        table = self.score(users).cast(self.schema)
        pid = pa.array([os.getpid()] * table.num_rows, pa.int64())
        return table.append_column(PID_COLUMN, pid)


def run_batch_ray(
    workspace: str | Path,
    user_ids: Sequence[str],
    out: str | Path,
    k: int = 10,
    llm: str = "none",
    explain: bool = False,
    chunk_size: int = 1000,
    overwrite: bool = False,
    workers: int = 2,
    address: str | None = None,
    threads: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
    show_ray_progress: bool = True,
) -> BatchSummary:
    """Recommend ``k`` items to each user on Ray Data; the file equals the local engine's.

    Args:
        workspace: The workspace (the same path on every node of the cluster).
        user_ids: Known user ids (see ``agent.batch.read_users``).
        out: The Parquet file to write.
        workers: Actors in the pool (each loads the model; one CPU each).
        address: An existing cluster (``HOST:PORT``); None starts a local one for the run.
        threads: Torch threads per actor (0 = torch's default).
        on_progress: Called with (users done, users total) as scored batches arrive.
        show_ray_progress: Ray Data's own progress bars (stderr).

    Raises:
        BatchError: bad options or output, Ray not installed, or a cluster that cannot be
            reached.
    """
    out, tier = Path(out), check_options(llm, k, chunk_size)
    check_output(out, overwrite)
    if workers < 1 or threads < 0:
        raise BatchError(f"--workers must be >= 1 and --threads >= 0, got {workers}, {threads}")
    try:
        import ray
        import ray.data
    except ImportError:
        raise BatchError("--engine ray needs Ray: pip install 'mtrec[scale]'") from None
    users = list(user_ids)
    if not users:
        raise BatchError("no users to recommend for: the list is empty")
    t0 = time.perf_counter()
    started = _connect(ray, address, workers)
    try:
        args = (str(Path(workspace).resolve()), k, tier.value, explain, threads)
        scored = _pipeline(ray, users, args, chunk_size, workers, show_ray_progress)
        rows, pids = _write(scored, out, explain, len(users), on_progress)
    except ray.exceptions.RayError as e:
        raise BatchError(f"the Ray batch failed: {_first_line(e)}") from None
    finally:
        if started:
            ray.shutdown()
    seconds = time.perf_counter() - t0
    summary = BatchSummary(
        out=str(out),
        users=len(users),
        rows=rows,
        chunks=(len(users) + chunk_size - 1) // chunk_size,
        resumed_chunks=0,
        seconds=round(seconds, 3),
        users_per_s=round(len(users) / seconds, 1) if seconds > 0 else 0.0,
        k=k,
        llm=tier.value,
        explain=explain,
        engine="ray",
        workers=workers,
        actor_processes=len(pids - {os.getpid()}),
    )
    return summary


def _pipeline(
    ray: Any, users: list[str], actor_args: tuple, chunk_size: int, workers: int, bars: bool
) -> Any:
    """The Ray Data plan: one block per chunk of users, scored by a pool of actors."""
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # the rows in the users' order
    ctx.enable_progress_bars = bars
    # One block per chunk, so that every actor of the pool gets work from the start.
    blocks = [
        pa.table({"user_id": pa.array(users[i : i + chunk_size], pa.string())})
        for i in range(0, len(users), chunk_size)
    ]
    ds = ray.data.from_arrow(blocks)
    scored = ds.map_batches(
        ScoreActor,
        fn_constructor_args=actor_args,
        batch_size=chunk_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1,
        max_restarts=MAX_RESTARTS,  # Ray's own retries of a dead actor and its calls
        max_task_retries=MAX_TASK_RETRIES,
    )
    return scored


def _write(
    scored: Any,
    out: Path,
    explain: bool,
    n_users: int,
    on_progress: Callable[[int, int], None] | None,
) -> tuple[int, set[int]]:
    """Stream the scored batches, in order, into ``out`` (atomically); returns the rows
    written and the process ids of the actors that scored them."""
    sch = with_engine(schema(explain), "ray")
    rows, done, pids = 0, 0, set()
    with atomic_path(out, mode=0o644) as tmp, pq.ParquetWriter(tmp, sch) as writer:
        for batch in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
            pids.update(batch.column(PID_COLUMN).to_pylist())
            table = batch.drop_columns([PID_COLUMN]).cast(sch)
            writer.write_table(table)
            rows += table.num_rows
            done += len(set(table.column("user_id").to_pylist()))
            if on_progress:
                on_progress(min(done, n_users), n_users)
    return rows, pids


def _connect(ray: Any, address: str | None, workers: int) -> bool:
    """Join ``address`` or start a local cluster; returns whether this call started Ray."""
    if ray.is_initialized():
        return False
    env = {
        k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV) and k not in SECRET_ENV
    }
    try:
        if address:
            ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False)
        else:
            ray.init(
                address="local",  # a new cluster, never one `ray start` left on this machine
                num_cpus=workers,
                _node_ip_address="127.0.0.1",  # a cluster of this machine alone: loopback only
                include_dashboard=False,
                log_to_driver=False,
                object_store_memory=256 * 2**20,
                runtime_env={"env_vars": env},
            )
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise BatchError(f"cannot start or join {where}: {_first_line(e)}") from None
    return True


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
