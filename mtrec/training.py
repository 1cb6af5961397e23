"""Training of the multi-task model: joint losses, early stopping, resumable checkpoints.

``train_multitask`` runs in one process, or in each process of a PyTorch distributed job
(``torchrun``; see ``mtrec.train``): when ``torch.distributed`` is initialised, the network is
wrapped in ``DistributedDataParallel``, every process trains on its own shard of the windows
(``DistributedSampler``), rank 0 alone evaluates validation (the result is broadcast, so every
rank takes the same early-stopping decision) and rank 0 alone writes checkpoints.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

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
        n_items = net.n_items
        nxt = tgt[:, 0]
        if n_items <= cfg.full_softmax_max_items:
            vectors = net.items.all_vectors()
            biases = net.items.all_biases()
            logp = torch.log_softmax(interest @ vectors.T + biases, dim=-1)
            picked = logp.gather(1, tgt.clamp(min=0))
            v_next = vectors[nxt]
        else:
            # Sampled softmax over this batch's targets plus shared uniform negatives. Only
            # these items' vectors are computed: the item tower over the whole catalog at every
            # step made an epoch grow with (catalog x interactions).
            negs = torch.randint(0, n_items, (cfg.sampled_negatives,), generator=gen)
            cand = torch.unique(torch.cat([tgt[tmask], negs.to(tgt.device)]))
            cand_vectors = net.items(cand)
            cand_biases = net.items.bias.weight[cand, 0]
            logp = torch.log_softmax(interest @ cand_vectors.T + cand_biases, dim=-1)
            pos = torch.searchsorted(cand, tgt.clamp(min=0))
            picked = logp.gather(1, pos.clamp(max=len(cand) - 1))
            # Every next item is a target, so it is among the candidates.
            v_next = cand_vectors[torch.searchsorted(cand, nxt.contiguous())]
        losses = {"engagement": -(picked * tmask).sum() / tmask.sum().clamp(min=1)}

        like = batch.next_like[has_target]
        value = batch.next_value[has_target]
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


class _LossModule(nn.Module):
    """The network plus its losses as one module, so that DDP sees a ``forward`` per step.

    ``forward`` returns the weighted total loss and the detached per-task losses.
    """

    def __init__(
        self, model: MultiTaskModel, losses: _Losses, log_vars: torch.Tensor, gen: torch.Generator
    ) -> None:
        super().__init__()
        self.net = model.net
        self.losses = losses
        self.cfg = model.config.train
        self.gen = gen
        if self.cfg.uncertainty_weighting:
            self.log_vars = nn.Parameter(log_vars)
        else:
            self.register_buffer("log_vars", log_vars)

    def forward(
        self,
        items: torch.Tensor,
        events: torch.Tensor,
        values: torch.Tensor,
        targets: torch.Tensor,
        next_value: torch.Tensor,
        next_like: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from mtrec.model.batching import PaddedHistories

        batch = TrainingWindows(
            PaddedHistories(items, events, values), targets, next_value, next_like
        )
        losses = self.losses(batch, self.gen)
        total = torch.zeros((), device=targets.device)
        for t, loss in losses.items():
            if self.cfg.uncertainty_weighting:
                k = TASKS.index(t)
                total = total + torch.exp(-self.log_vars[k]) * loss + self.log_vars[k]
            else:
                total = total + self.cfg.task_weights.get(t, 1.0) * loss
        return total, {t: loss.detach() for t, loss in losses.items()}


def distributed_context() -> tuple[bool, int, int]:
    """``(active, rank, world_size)`` of the current ``torch.distributed`` process group."""
    if dist.is_available() and dist.is_initialized():
        return True, dist.get_rank(), dist.get_world_size()
    return False, 0, 1


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
    distributed, rank, world = distributed_context()
    main = rank == 0
    device = resolve_device(cfg.device)
    if distributed and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    # Dropout differs per rank (different data anyway); DDP broadcasts rank 0's weights.
    torch.manual_seed(cfg.seed + rank)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = model.net.to(device)
    # The rating head's offset is a statistic of the training rows only: a mean over all
    # rows would carry validation and test ratings into the model.
    train_ratings = ds.value[np.asarray(train_rows, np.int64)]
    train_ratings = train_ratings[~np.isnan(train_ratings)]
    if len(train_ratings):
        net.rating_mean.fill_(float(train_ratings.mean()))
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
    log_vars = torch.zeros(len(TASKS), device=device)
    module = _LossModule(model, _Losses(model, cats), log_vars, gen)
    log_vars = module.log_vars
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
    step_fn: nn.Module = module
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        # Some heads get no loss in a batch without ratings/likes: unused parameters happen.
        step_fn = DistributedDataParallel(
            module,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,
        )
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
        order = _epoch_order(len(windows), rng, distributed, rank, world, cfg.seed, epoch)
        steps = (len(order) + cfg.batch_size - 1) // cfg.batch_size
        for step, start in enumerate(range(0, len(order), cfg.batch_size), start=1):
            idx = order[start : start + cfg.batch_size]
            batch = _take(windows, idx, device)
            x = batch.inputs
            total, losses = step_fn(
                x.items, x.events, x.values, batch.targets, batch.next_value, batch.next_like
            )
            for t, loss in losses.items():
                sums[t] += float(loss)
                counts[t] += 1
            opt.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            if on_step and main:
                on_step(step, steps, {t: sums[t] / max(counts[t], 1) for t in losses})
        if distributed:
            sums, counts = _all_reduce_sums(sums, counts, device)
        net.eval()
        model.invalidate_cache()
        valid: dict[str, float] = {}
        if split is not None:
            if main:
                valid = evaluate_ranking(
                    model, ds, split, "valid", ks=(10,), users=valid_users, beyond_accuracy=False
                )
            if distributed:
                box = [valid]
                dist.broadcast_object_list(box, src=0)
                valid = box[0]
            if valid["ndcg@10"] > result.best_ndcg10:
                result.best_ndcg10, result.best_epoch, stale = valid["ndcg@10"], epoch, 0
                best_state = copy.deepcopy(net.state_dict())
                if ckpt and main:
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
        if ckpt and main:
            _save_resume(ckpt, net, opt, log_vars, best_state, stale, result, epoch, gen, rng)
        if on_epoch and main:
            on_epoch(log)
    if split is not None:
        net.load_state_dict(best_state)
    elif result.epochs:
        result.best_epoch = result.epochs[-1].epoch
    net.eval()
    model.invalidate_cache()
    result.seconds = time.perf_counter() - t0
    return result


def _epoch_order(
    n: int,
    rng: np.random.Generator,
    distributed: bool,
    rank: int,
    world: int,
    seed: int,
    epoch: int,
) -> torch.Tensor:
    """This process's window indices for one epoch, in training order.

    One process: a permutation from ``rng``. Distributed: ``DistributedSampler``'s shard (all
    shards have the same length, so every rank runs the same number of steps).
    """
    if not distributed:
        return torch.as_tensor(rng.permutation(n))
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(
        range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False
    )
    sampler.set_epoch(epoch)
    return torch.as_tensor(list(sampler), dtype=torch.int64)


def _all_reduce_sums(
    sums: dict[str, float], counts: dict[str, int], device: torch.device
) -> tuple[dict[str, float], dict[str, int]]:
    """Sum the per-task loss sums and batch counts over all ranks (for the epoch log)."""
    t = torch.tensor(
        [sums[k] for k in TASKS] + [float(counts[k]) for k in TASKS],
        dtype=torch.float64,
        device=device,
    )
    dist.all_reduce(t)
    vals = t.cpu().tolist()
    n = len(TASKS)
    return dict(zip(TASKS, vals[:n], strict=True)), {
        k: round(v) for k, v in zip(TASKS, vals[n:], strict=True)
    }


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
