"""Batch recommendation (``mtrec batch``): many users, streamed in chunks, to one Parquet file.

The run is resumable. Chunk ``i`` covers users ``[i * chunk_size, (i + 1) * chunk_size)`` of the
user list; each finished chunk is written atomically (temporary file, then ``os.replace``) to
``OUT.parts/part-NNNNNN.parquet`` beside a ``manifest.json`` that records the options, the
user list's hash and the model checkpoint. A rerun with the same options skips the chunks
already there; when all are done they are merged into ``OUT`` (again through a temporary file
and ``os.replace``) and the parts directory is removed. A crash at any moment therefore leaves
either no ``OUT`` or a complete one, and finished chunks are never recomputed.

Model-only runs (``llm="none"`` without explanations) score whole chunks through the model at
once: the same candidates, scores and order as ``Recommender.recommend(..., llm="none")``,
hundreds of times faster than calling it per user. LLM tiers and explanations go through
``Recommender.recommend`` for each user.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from filelock import FileLock, Timeout

from agent.errors import BatchError
from agent.files import atomic_path, read_user_selection, write_text_atomic
from agent.pipeline.candidates import COLD_START_HISTORY
from agent.pipeline.scoring import fused_model_score
from agent.recommender import Recommender
from agent.schema import Tier, TierChoice
from mtrec.data.history import History

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
#: Tiers a batch can ask for (``auto`` would make a batch's tier depend on the moment).
LLM_CHOICES = (TierChoice.NONE, TierChoice.LOCAL, TierChoice.REMOTE)
#: Most (users x items) logits held at once by the vectorised scorer (float32: 128 MiB).
MAX_LOGITS = 1 << 25


@dataclass
class BatchSummary:
    """What a batch run did."""

    out: str
    users: int
    rows: int
    chunks: int
    resumed_chunks: int
    seconds: float
    users_per_s: float
    k: int
    llm: str
    explain: bool
    engine: str = "local"
    #: Ray engine only: actors in the pool, and distinct actor processes that scored.
    workers: int | None = None
    actor_processes: int | None = None


#: The Parquet key-value metadata entry that names the engine that wrote a file.
ENGINE_KEY = b"mtrec.engine"


def schema(explain: bool) -> pa.Schema:
    """The output's columns: one row per (user, rank). The Ray engine writes the same."""
    fields = [
        pa.field("user_id", pa.string()),
        pa.field("rank", pa.int32()),
        pa.field("item_id", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("tier", pa.string()),
    ]
    if explain:
        fields.append(pa.field("explanation", pa.string()))
    return pa.schema(fields)


def parts_dir(out: Path) -> Path:
    """Where the chunk files of a run writing ``out`` live until the merge."""
    return out.with_name(out.name + ".parts")


def check_options(llm: str, k: int, chunk_size: int) -> TierChoice:
    """The batch's tier, once its options are checked.

    Raises:
        BatchError: a tier a batch cannot use, ``k`` < 1 or ``chunk_size`` < 1.
    """
    if llm not in LLM_CHOICES:
        raise BatchError(f"--llm must be one of {', '.join(LLM_CHOICES)}, got {llm!r}")
    if not isinstance(k, int) or k < 1:
        raise BatchError(f"-k must be >= 1, got {k!r}")
    if chunk_size < 1:
        raise BatchError(f"--chunk-size must be >= 1, got {chunk_size}")
    return TierChoice(llm)


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse an unusable ``--out`` before anything is loaded.

    Raises:
        BatchError: ``out`` exists (and ``overwrite`` is off), is a directory, or its
            directory does not exist.
    """
    if out.is_dir():
        raise BatchError(f"--out {str(out)!r} is a directory; give a file path")
    if not out.parent.is_dir():
        raise BatchError(f"the directory of --out {str(out.parent)!r} does not exist")
    if out.exists() and not overwrite:
        raise BatchError(f"{str(out)!r} already exists; pass --overwrite to replace it")


def read_users(rec: Recommender, users: str | Path | Sequence[str]) -> list[str]:
    """The user ids of a run: ``"all"`` (every dataset user), a file (one id a line; blank
    lines and ``#`` comments skipped) or a list. Duplicates are kept once, in order.

    Raises:
        BatchError: unreadable or empty file, or unknown user ids (the first few named).
    """
    try:
        ids, _ = read_user_selection(users, [u.user_id for u in rec.ds.users])
    except ValueError as e:
        raise BatchError(str(e)) from None
    if not ids:
        raise BatchError("no users to recommend for: the list is empty")
    unknown = [u for u in ids if not _known(rec, u)]
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise BatchError(f"{len(unknown)} unknown user id(s): {unknown[:5]}{more}")
    return ids


def _known(rec: Recommender, user_id: str) -> bool:
    if rec.ds.has_user(user_id):
        return True
    try:
        rec.user_history(user_id)  # a user known only from stored feedback
    except KeyError:
        return False
    return True


def run_batch(
    rec: Recommender,
    user_ids: Sequence[str],
    out: str | Path,
    k: int = 10,
    llm: str = "none",
    explain: bool = False,
    chunk_size: int = 1000,
    overwrite: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> BatchSummary:
    """Recommend ``k`` items to each user and write them to the Parquet file ``out``.

    Args:
        rec: The recommender.
        user_ids: Known user ids (see ``read_users``).
        out: The Parquet file to write.
        k: Items per user.
        llm: ``none`` (model only), ``local`` or ``remote``.
        explain: Add an ``explanation`` column (template or LLM text).
        chunk_size: Users per chunk (the unit of progress and of resumption).
        overwrite: Replace an existing ``out`` (and discard a partial run with other options).
        on_progress: Called with (users done, users total) after each chunk.

    Returns:
        A ``BatchSummary``.

    Raises:
        BatchError: bad options, an existing ``out`` without ``overwrite``, or a partial run
            of different options in ``OUT.parts`` without ``overwrite``.
    """
    out, llm = Path(out), check_options(llm, k, chunk_size)
    check_output(out, overwrite)
    t0 = time.perf_counter()
    users = list(user_ids)
    n_chunks = (len(users) + chunk_size - 1) // chunk_size
    manifest = {
        "version": MANIFEST_VERSION,
        "users_sha256": hashlib.sha256("\n".join(users).encode()).hexdigest(),
        "users": len(users),
        "chunk_size": chunk_size,
        "chunks": n_chunks,
        "k": k,
        "llm": llm.value,
        "explain": explain,
        "model": _model_id(rec),
    }
    parts = parts_dir(out)
    parts.mkdir(exist_ok=True)
    lock = FileLock(str(parts / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise BatchError(f"another mtrec batch is writing {str(out)!r}") from None
    try:
        _open_manifest(parts, manifest, overwrite)
        score = scorer(rec, k, llm, explain)
        resumed = _write_chunks(parts, users, chunk_size, schema(explain), score, on_progress)
        rows = _merge(parts, n_chunks, out, with_engine(schema(explain), "local"))
    finally:
        lock.release()
    shutil.rmtree(parts, ignore_errors=True)
    seconds = time.perf_counter() - t0
    return BatchSummary(
        out=str(out),
        users=len(users),
        rows=rows,
        chunks=n_chunks,
        resumed_chunks=resumed,
        seconds=round(seconds, 3),
        users_per_s=round(len(users) / seconds, 1) if seconds > 0 else 0.0,
        k=k,
        llm=llm.value,
        explain=explain,
    )


def with_engine(sch: pa.Schema, engine: str) -> pa.Schema:
    """The schema with the name of the engine that writes the file in its metadata."""
    return sch.with_metadata({ENGINE_KEY: engine.encode()})


def scorer(
    rec: Recommender, k: int, llm: TierChoice, explain: bool
) -> Callable[[Sequence[str]], pa.Table]:
    """Scores one chunk of users: vectorised for model-only lists, else one request each."""
    if llm == TierChoice.NONE and not explain:
        return lambda chunk: score_model_only(rec, chunk, k)
    return lambda chunk: score_with_recommender(rec, chunk, k, llm, explain)


def _write_chunks(
    parts: Path,
    users: Sequence[str],
    chunk_size: int,
    sch: pa.Schema,
    score: Callable[[Sequence[str]], pa.Table],
    on_progress: Callable[[int, int], None] | None,
) -> int:
    """Score and write every chunk not already in ``parts``; returns how many were there."""
    n_chunks = (len(users) + chunk_size - 1) // chunk_size
    done = {i for i in range(n_chunks) if _part(parts, i).is_file()}
    finished = sum(len(_chunk(users, i, chunk_size)) for i in done)
    if on_progress:
        on_progress(finished, len(users))
    for i in range(n_chunks):
        if i in done:
            continue
        chunk = _chunk(users, i, chunk_size)
        _write_part(parts, i, score(chunk).cast(sch))
        finished += len(chunk)
        if on_progress:
            on_progress(finished, len(users))
    return len(done)


def summary_dict(s: BatchSummary) -> dict[str, Any]:
    return asdict(s)


# ---- scoring ------------------------------------------------------------------------------------
def score_with_recommender(
    rec: Recommender, users: Sequence[str], k: int, llm: str, explain: bool
) -> pa.Table:
    """One ``Recommender.recommend`` per user (LLM tiers, explanations, cold-start users)."""
    cols: dict[str, list[Any]] = {c: [] for c in schema(explain).names}
    for u in users:
        res = rec.recommend(user_id=u, k=k, llm=llm, explain=explain)
        for rank, it in enumerate(res.items, start=1):
            cols["user_id"].append(u)
            cols["rank"].append(rank)
            cols["item_id"].append(it.item_id)
            cols["score"].append(float(it.score))
            cols["tier"].append(res.tier)
            if explain:
                cols["explanation"].append(it.explanation)
    return pa.table(cols, schema=schema(explain))


@torch.inference_mode()
def score_model_only(rec: Recommender, users: Sequence[str], k: int) -> pa.Table:
    """``Recommender.recommend(user, k, llm="none", explain=False)`` for many users at once.

    The same steps, vectorised over users: the model's top ``max(candidates, k)`` unseen
    items, their task scores, the fused model score, the fused order, the first ``k``. Users
    with short histories (who get popular items among their candidates) or with fewer unseen
    items than candidates go through ``Recommender.recommend`` one by one.
    """
    hists = [rec.user_history(u) for u in users]
    n_cand = max(rec.settings.candidates, k)
    fast = [
        j
        for j, h in enumerate(hists)
        if len(h) >= COLD_START_HISTORY and rec.ds.n_items - len(np.unique(h.items)) >= n_cand
    ]
    per_user: dict[int, tuple[list[str], list[float]]] = {}
    step = max(1, MAX_LOGITS // max(1, rec.model.n_items))
    for s in range(0, len(fast), step):
        rows = fast[s : s + step]
        items, scores = top_fused(rec, [hists[j] for j in rows], n_cand, k)
        for j, it, sc in zip(rows, items, scores, strict=True):
            per_user[j] = ([rec.ds.items[i].item_id for i in it], sc.tolist())
    for j in (j for j in range(len(users)) if j not in per_user):
        res = rec.recommend(user_id=users[j], k=k, llm=TierChoice.NONE, explain=False)
        per_user[j] = ([it.item_id for it in res.items], [float(it.score) for it in res.items])
    cols: dict[str, list[Any]] = {"user_id": [], "rank": [], "item_id": [], "score": []}
    for j, u in enumerate(users):
        ids, sc = per_user[j]
        cols["user_id"] += [u] * len(ids)
        cols["rank"] += list(range(1, len(ids) + 1))
        cols["item_id"] += ids
        cols["score"] += sc
    cols["tier"] = [Tier.NONE.value] * len(cols["item_id"])
    return pa.table(cols, schema=schema(False))


def top_fused(
    rec: Recommender, hists: list[History], n_cand: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(B, k) items and rounded fused scores, in the order ``Recommender.run`` gives.

    The same stages as one request (model top ``n_cand`` unseen items, their task scores, the
    fused model score), batched over users.
    """
    model = rec.model
    state = model.user_state(hists)
    logits = model.engagement_logits(state)  # (B, n_items)
    lens = [len(h) for h in hists]
    r = torch.as_tensor(np.repeat(np.arange(len(hists)), lens), device=logits.device)
    c = torch.as_tensor(np.concatenate([h.items for h in hists]), device=logits.device)
    unseen = logits.clone()
    unseen[r, c] = -torch.inf
    _, cand = torch.topk(unseen, n_cand, dim=1, sorted=True)  # model order
    tasks = model.task_scores_batch(state, cand.cpu().numpy(), logits)
    fused = fused_model_score(tasks, rec.weights)  # (B, n_cand), the formula of one request
    order = np.argsort(-fused, axis=1, kind="stable")[:, :k]
    items = np.take_along_axis(tasks.items, order, axis=1)
    picked = np.take_along_axis(fused, order, axis=1)
    scores = np.vectorize(lambda x: round(float(x), 6), otypes=[np.float64])(picked)
    return items, scores


# ---- files --------------------------------------------------------------------------------------
def _chunk(users: Sequence[str], i: int, size: int) -> Sequence[str]:
    return users[i * size : (i + 1) * size]


def _part(parts: Path, i: int) -> Path:
    return parts / f"part-{i:06d}.parquet"


def _write_part(parts: Path, i: int, table: pa.Table) -> None:
    """Write chunk ``i`` atomically: a reader (or a rerun) sees the whole file or none."""
    with atomic_path(_part(parts, i)) as tmp:
        pq.write_table(table, tmp)


def _merge(parts: Path, n_chunks: int, out: Path, sch: pa.Schema) -> int:
    """Concatenate the parts into ``out`` atomically; returns the number of rows."""
    rows = 0
    with atomic_path(out, mode=0o644) as tmp, pq.ParquetWriter(tmp, sch) as writer:
        for i in range(n_chunks):
            table = pq.read_table(_part(parts, i)).cast(sch)
            rows += table.num_rows
            writer.write_table(table)
    return rows


def _open_manifest(parts: Path, manifest: dict[str, Any], overwrite: bool) -> None:
    """Start a run in ``parts``, or check that the run already there has the same options."""
    path = parts / MANIFEST
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            saved = None
        if saved == manifest:
            return
        if not overwrite:
            raise BatchError(
                f"{str(parts)!r} holds a partial run with other options, users or model; "
                "rerun with the same options to resume it, or pass --overwrite to start over"
            )
    for leftover in parts.iterdir():  # a different (or unreadable) run: start over
        if leftover.name != ".lock":
            leftover.unlink()
    write_text_atomic(path, json.dumps(manifest, indent=2))


def _model_id(rec: Recommender) -> str:
    """The checkpoint the recommender loaded (``LATEST``'s target), for the manifest."""
    latest = rec.workspace.model_dir / "LATEST"
    name = latest.read_text().strip() if latest.is_file() else ""
    return f"{name}:{rec.checkpoint}"
