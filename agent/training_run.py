"""Train and evaluate the multi-task model of a workspace (what ``mtrec train/evaluate`` run)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from rich.progress import Progress

from agent.console import err, progress
from agent.feedback import FeedbackStore, feedback_interactions, open_feedback_store
from agent.workspace import Workspace
from mtrec.config import MTRecConfig
from mtrec.data.schema import Dataset
from mtrec.evaluation import PROTOCOLS, evaluate_ranking, split_dataset
from mtrec.evaluation.tasks import evaluate_tasks
from mtrec.model.multitask import MultiTaskModel
from mtrec.training import RESUME_FILE, EpochLog, can_resume, train_multitask


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")


def run_training(
    ws: Workspace,
    protocol: str = "loo",
    epochs: int | None = None,
    device: str = "auto",
    resume: bool = True,
    seed: int | None = None,
    show_progress: bool = True,
    with_feedback: bool = False,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train on the protocol's training split, early-stopping on its validation split.

    With ``with_feedback``, the events stored by chat and ``POST /feedback`` are appended to
    the training rows (never to validation or test, so the figures stay comparable).

    The checkpoint goes to ``WORKSPACE/model`` (atomically, at every improvement), together
    with a resume file so that an interrupted run continues where it stopped.
    """
    _check_protocol(protocol)
    with ws.lock("training"):
        ds = ws.dataset
        text = ws.text_embeddings(ds)
        cfg = _config(protocol, epochs, device, seed, threads, ds.profile.like_threshold)
        split = split_dataset(ds, protocol, seed=cfg.train.seed)
        train_rows = split.train
        feedback_rows = 0
        store = open_feedback_store(ws, create=False) if with_feedback else None
        if store is not None:
            ds, extra = _with_feedback(store, ds)
            train_rows = np.concatenate([split.train, extra])
            feedback_rows = len(extra)
        model = MultiTaskModel.create(ds, cfg, text)
        resume_ok = resume and can_resume(ws.model_dir, model.config)
        if not resume_ok:
            (ws.model_dir / RESUME_FILE).unlink(missing_ok=True)
        t0 = time.perf_counter()
        with progress() as bar:
            on_step, on_epoch = _progress_callbacks(bar, show_progress)
            result = train_multitask(
                model,
                ds,
                train_rows,
                split,
                checkpoint_dir=ws.model_dir,
                resume=resume_ok,
                on_epoch=on_epoch,
                on_step=on_step,
            )
        seconds = time.perf_counter() - t0
        summary = {
            "protocol": protocol,
            "best_epoch": result.best_epoch,
            "valid_ndcg@10": round(result.best_ndcg10, 4),
            "epochs_run": len(result.epochs),
            "resumed_from_epoch": result.resumed_from,
            "train_seconds": round(seconds, 1),
            "epoch_seconds": [round(e.seconds, 1) for e in result.epochs],
            # The count in force at the end; "auto" follows the free cores (mtrec.threads).
            "threads": result.threads[-1][1],
            "thread_mode": "fixed" if cfg.train.threads else "auto",
            "thread_changes": [list(change) for change in result.threads],
            "feedback_rows": feedback_rows,
            "checkpoint": str(ws.model_dir),
        }
        model.save(ws.model_dir, {"valid_ndcg@10": result.best_ndcg10, **summary})
        (ws.model_dir / RESUME_FILE).unlink(missing_ok=True)
    if show_progress:
        err.print(
            f"Best epoch {result.best_epoch}: valid NDCG@10 {result.best_ndcg10:.4f} "
            f"({seconds:.0f}s). Saved to {ws.model_dir}"
        )
    return summary


def _config(
    protocol: str,
    epochs: int | None,
    device: str,
    seed: int | None,
    threads: int | None = None,
    like_threshold: float | None = None,
) -> MTRecConfig:
    """The protocol's and the dataset's defaults with the command line's overrides."""
    cfg = MTRecConfig.for_protocol(protocol, like_threshold)
    cfg.train.device = device  # type: ignore[assignment]
    if epochs is not None:
        if epochs <= 0:
            raise ValueError(f"--epochs must be positive, got {epochs}")
        cfg.train.epochs = epochs
    if seed is not None:
        cfg.train.seed = seed
    if threads is not None:
        if threads < 0:
            raise ValueError(f"--threads must be >= 0, got {threads}")
        cfg.train.threads = threads
    return cfg


def _with_feedback(store: FeedbackStore, ds: Dataset) -> tuple[Dataset, np.ndarray]:
    """The dataset with the stored feedback events appended, and the appended rows."""
    events = feedback_interactions(store, ds)
    return ds.with_interactions(events)


def _progress_callbacks(
    bar: Progress, show: bool
) -> tuple[Callable[[int, int, dict[str, float]], None], Callable[[EpochLog], None]]:
    """A progress bar over each epoch's steps, and one line per finished epoch."""
    task = bar.add_task("epoch 1", total=None, info="", visible=show)

    def on_step(step: int, steps: int, losses: dict[str, float]) -> None:
        info = " ".join(f"{k[:3]}={v:.3f}" for k, v in losses.items())
        bar.update(task, total=steps, completed=step, info=info)

    def on_epoch(log: EpochLog) -> None:
        ndcg = log.valid.get("ndcg@10", float("nan"))
        if show:
            losses = " ".join(f"{k}={v:.3f}" for k, v in log.losses.items())
            err.print(
                f"epoch {log.epoch:3d}  {losses}  valid ndcg@10={ndcg:.4f}  ({log.seconds:.1f}s)"
            )
        bar.update(task, description=f"epoch {log.epoch + 1}", completed=0)

    return on_step, on_epoch


def run_evaluation(
    ws: Workspace,
    protocol: str | None = None,
    baselines: bool = False,
    show_progress: bool = True,
    mask: str = "history",
) -> dict[str, Any]:
    """Test-split metrics of the workspace's model (and baselines) under one protocol.

    ``mask``: ``history`` ranks only items the user has not met (train and valid items
    excluded, RecBole's general-model convention); ``none`` ranks every item (RecBole's
    sequential convention).
    """
    from mtrec.model.baselines import (
        BPRModel,
        ContentModel,
        ItemKNNModel,
        LastItemKNNModel,
        PopularityModel,
    )

    if mask not in ("history", "none"):
        raise ValueError(f"--mask must be history or none, got {mask!r}")
    model = MultiTaskModel.load(ws.model_dir)
    protocol = protocol or model.config.protocol
    _check_protocol(protocol)
    if protocol != model.config.protocol:
        err.print(
            f"[yellow]note: the model was trained for the {model.config.protocol!r} "
            f"protocol; evaluating on {protocol!r} may include its training rows[/]"
        )
    ds = ws.dataset
    if model.item_ids != ds.item_ids:
        raise ValueError("the model was trained on a different catalog; run `mtrec train`")
    split = split_dataset(ds, protocol, seed=model.config.train.seed)
    models: list[Any] = [model]
    if baselines:
        text = ws.text_embeddings(ds)
        models += [
            PopularityModel(),
            ItemKNNModel(),
            BPRModel(),
            ContentModel(text, recent=20),
            LastItemKNNModel(),
        ]
    results: dict[str, Any] = {"protocol": protocol, "mask": mask, "models": {}}
    with progress(transient=True) as bar:
        for m in models:
            n_users = len(np.unique(ds.user_idx[split.test]))
            task = bar.add_task(m.name, total=n_users, info="", visible=show_progress)
            t0 = time.perf_counter()
            if m is not model:
                m.fit(ds, split.train)
            fit_s = time.perf_counter() - t0
            metrics = evaluate_ranking(
                m, ds, split, "test", mask=mask, on_batch=lambda n, t=task: bar.advance(t, n)
            )
            metrics["fit_seconds"] = round(fit_s, 2)
            results["models"][m.name] = {k: round(v, 4) for k, v in metrics.items()}
            results["users"] = metrics["users"]
    results["tasks"] = {k: round(v, 4) for k, v in evaluate_tasks(model, ds, split).items()}
    return results
