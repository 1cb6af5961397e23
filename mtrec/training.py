"""Training of the multi-task model: joint losses, early stopping, resumable checkpoints."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mtrec.data.history import History, user_histories
from mtrec.data.schema import Dataset
from mtrec.evaluation.evaluator import evaluate_ranking
from mtrec.evaluation.protocols import Split
from mtrec.model.batching import TrainingWindows, make_windows
from mtrec.model.multitask import MultiTaskModel
from mtrec.model.network import TASKS, rating_bucket

RESUME_FILE = "resume.pt"


@dataclass
class EpochLog:
    """One epoch's mean task losses, validation metrics and wall time."""

    epoch: int
    losses: dict[str, float]
    valid: dict[str, float]
    seconds: float


@dataclass
class TrainResult:
    """What a training run did."""

    epochs: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    best_ndcg10: float = 0.0
    seconds: float = 0.0
    resumed_from: int = 0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(name)


class _Losses:
    """Computes the four task losses for one batch of windows."""

    def __init__(self, model: MultiTaskModel, category_matrix: torch.Tensor) -> None:
        self.model = model
        self.net = model.net
        self.cfg = model.config.train
        self.cats = category_matrix  # (n_items + 1, C), pad row zero

    def __call__(self, batch: TrainingWindows, gen: torch.Generator) -> dict[str, torch.Tensor]:
        net, cfg = self.net, self.cfg
        x = batch.inputs
        state, valid = net.encode(x.items, x.events, rating_bucket(x.values))
        has_target = (batch.targets[..., 0] >= 0) & valid
        tgt = batch.targets[has_target]  # (P, W)
        tmask = tgt >= 0
        interest = state.interest[has_target]  # (P, d)
        vectors = net.items.all_vectors()
        biases = net.items.all_biases()
        n_items = net.n_items
        if n_items <= cfg.full_softmax_max_items:
            logp = torch.log_softmax(interest @ vectors.T + biases, dim=-1)
            picked = logp.gather(1, tgt.clamp(min=0))
        else:
            # Sampled softmax over this batch's targets plus shared uniform negatives.
            negs = torch.randint(0, n_items, (cfg.sampled_negatives,), generator=gen)
            cand = torch.unique(torch.cat([tgt[tmask], negs.to(tgt.device)]))
            logp = torch.log_softmax(interest @ vectors[cand].T + biases[cand], dim=-1)
            pos = torch.searchsorted(cand, tgt.clamp(min=0))
            picked = logp.gather(1, pos.clamp(max=len(cand) - 1))
        losses = {"engagement": -(picked * tmask).sum() / tmask.sum().clamp(min=1)}

        nxt = tgt[:, 0]
        like = batch.next_like[has_target]
        value = batch.next_value[has_target]
        v_next = vectors[nxt]
        known_like = ~torch.isnan(like)
        if known_like.any():
            logit = net.like_logit(state.like[has_target][known_like], v_next[known_like])
            losses["like"] = F.binary_cross_entropy_with_logits(logit, like[known_like])
        rated = ~torch.isnan(value)
        if rated.any():
            pred = net.rating(state.rating[has_target][rated], v_next[rated])
            losses["rating"] = F.mse_loss(pred, value[rated])
        if self.cats.shape[1] > 0:
            mix = (self.cats[tgt.clamp(min=0)] * tmask[..., None]).sum(1)  # (P, C)
            total = mix.sum(-1, keepdim=True)
            ok = total.squeeze(-1) > 0
            if ok.any():
                mix = mix[ok] / total[ok]
                logq = torch.log_softmax(state.category_logits[has_target][ok], dim=-1)
                losses["category"] = -(mix * logq).sum(-1).mean()
        return losses


def train_multitask(
    model: MultiTaskModel,
    ds: Dataset,
    train_rows: np.ndarray,
    split: Split | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    on_epoch: Callable[[EpochLog], None] | None = None,
    on_step: Callable[[int, int, dict[str, float]], None] | None = None,
    valid_users: np.ndarray | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``train_rows``, early-stopping on validation NDCG@10.

    Args:
        model: A model from ``MultiTaskModel.create``.
        ds: The dataset.
        train_rows: Interaction rows to learn from (never validation or test rows).
        split: When given, validation NDCG@10 on ``split.valid`` drives early stopping and
            the best epoch's weights are kept; without it all epochs run.
        checkpoint_dir: Where the best model is saved atomically after each improvement,
            and ``resume.pt`` (optimizer state) after each epoch.
        resume: Continue from ``checkpoint_dir/resume.pt`` when it exists.
        on_epoch: Called after every epoch (progress display).
        on_step: Called after every batch with (step, steps_per_epoch, losses).
        valid_users: Evaluate validation on these users only (faster on big data).

    Returns:
        A ``TrainResult``; ``model`` holds the best weights.
    """
    cfg = model.config.train
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = model.net.to(device)
    hist = user_histories(ds, train_rows)

    def epoch_windows() -> TrainingWindows:
        h = hist
        if cfg.history_order == "shuffled":
            h = [_permuted(x, rng) for x in hist]
        return make_windows(
            h, model.config.model.max_history, cfg.future_window, ds.n_items, cfg.like_threshold
        )

    windows = epoch_windows()
    cats = torch.cat(
        [torch.as_tensor(ds.category_matrix()), torch.zeros(1, len(ds.categories))]
    ).to(device)
    loss_fn = _Losses(model, cats)
    log_vars = torch.nn.Parameter(torch.zeros(len(TASKS), device=device))
    params = list(net.parameters()) + ([log_vars] if cfg.uncertainty_weighting else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    result = TrainResult()
    best_state = copy.deepcopy(net.state_dict())
    start_epoch, stale = 1, 0
    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    if resume and ckpt and (ckpt / RESUME_FILE).is_file():
        saved = torch.load(ckpt / RESUME_FILE, map_location=device, weights_only=False)
        net.load_state_dict(saved["net"])
        opt.load_state_dict(saved["opt"])
        log_vars.data.copy_(saved["log_vars"])
        best_state, stale = saved["best_state"], saved["stale"]
        result.best_epoch, result.best_ndcg10 = saved["best_epoch"], saved["best_ndcg10"]
        start_epoch = result.resumed_from = saved["epoch"] + 1
        gen.set_state(saved["gen"])
        rng = saved["rng"]
        result.epochs = saved["epochs"]
    t0 = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs + 1):
        if split is not None and stale >= cfg.patience:
            break
        t_epoch = time.perf_counter()
        if cfg.history_order == "shuffled" and epoch > start_epoch:
            windows = epoch_windows()
        net.train()
        model.invalidate_cache()
        sums: dict[str, float] = dict.fromkeys(TASKS, 0.0)
        counts: dict[str, int] = dict.fromkeys(TASKS, 0)
        order = torch.as_tensor(rng.permutation(len(windows)))
        steps = (len(windows) + cfg.batch_size - 1) // cfg.batch_size
        for step, start in enumerate(range(0, len(windows), cfg.batch_size), start=1):
            idx = order[start : start + cfg.batch_size]
            batch = _take(windows, idx, device)
            losses = loss_fn(batch, gen)
            total = torch.zeros((), device=device)
            for t, loss in losses.items():
                if cfg.uncertainty_weighting:
                    k = TASKS.index(t)
                    total = total + torch.exp(-log_vars[k]) * loss + log_vars[k]
                else:
                    total = total + cfg.task_weights.get(t, 1.0) * loss
                sums[t] += float(loss.detach())
                counts[t] += 1
            opt.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            if on_step:
                on_step(step, steps, {t: sums[t] / max(counts[t], 1) for t in losses})
        net.eval()
        model.invalidate_cache()
        valid: dict[str, float] = {}
        if split is not None:
            valid = evaluate_ranking(
                model, ds, split, "valid", ks=(10,), users=valid_users, beyond_accuracy=False
            )
            if valid["ndcg@10"] > result.best_ndcg10:
                result.best_ndcg10, result.best_epoch, stale = valid["ndcg@10"], epoch, 0
                best_state = copy.deepcopy(net.state_dict())
                if ckpt:
                    model.save(ckpt, {"valid": valid, "epoch": epoch})
            else:
                stale += 1
        log = EpochLog(
            epoch,
            {t: sums[t] / counts[t] for t in TASKS if counts[t]},
            valid,
            time.perf_counter() - t_epoch,
        )
        result.epochs.append(log)
        if ckpt:
            _save_resume(ckpt, net, opt, log_vars, best_state, stale, result, epoch, gen, rng)
        if on_epoch:
            on_epoch(log)
    if split is not None:
        net.load_state_dict(best_state)
    elif result.epochs:
        result.best_epoch = result.epochs[-1].epoch
    net.eval()
    model.invalidate_cache()
    result.seconds = time.perf_counter() - t0
    return result


def _permuted(h: History, rng: np.random.Generator) -> History:
    p = rng.permutation(len(h))
    return History(h.items[p], h.events[p], h.values[p])


def _take(w: TrainingWindows, idx: torch.Tensor, device: torch.device) -> TrainingWindows:
    from mtrec.model.batching import PaddedHistories

    x = w.inputs
    return TrainingWindows(
        PaddedHistories(x.items[idx], x.events[idx], x.values[idx]).to(device),
        w.targets[idx].to(device),
        w.next_value[idx].to(device),
        w.next_like[idx].to(device),
    )


def _save_resume(ckpt: Path, net, opt, log_vars, best_state, stale, result, epoch, gen, rng):
    ckpt.mkdir(parents=True, exist_ok=True)
    tmp = ckpt / f".{RESUME_FILE}.tmp"
    torch.save(
        {
            "net": net.state_dict(),
            "opt": opt.state_dict(),
            "log_vars": log_vars.detach(),
            "best_state": best_state,
            "stale": stale,
            "best_epoch": result.best_epoch,
            "best_ndcg10": result.best_ndcg10,
            "epoch": epoch,
            "gen": gen.get_state(),
            "rng": rng,
            "epochs": result.epochs,
        },
        tmp,
    )
    os.replace(tmp, ckpt / RESUME_FILE)
