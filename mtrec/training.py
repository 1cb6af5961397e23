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

from mtrec.config import FusionConfig, MTRecConfig
from mtrec.data.history import History, user_histories
from mtrec.data.schema import Dataset
from mtrec.evaluation.evaluator import evaluate_ranking
from mtrec.evaluation.protocols import Split
from mtrec.model.batching import SetSamples, TrainingWindows, make_set_samples, make_windows
from mtrec.model.multitask import MultiTaskModel
from mtrec.model.network import TASKS, rating_bucket
from mtrec.threads import AdaptiveThreads

RESUME_FILE = "resume.pt"


def can_resume(checkpoint_dir: Path, cfg: MTRecConfig) -> bool:
    """Whether ``checkpoint_dir`` holds the resume file of an interrupted run of ``cfg``.

    The saved configuration is parsed before comparing, so a setting added since it was
    written takes its default rather than making every older run look different. The thread
    count is left out: it changes the speed, not the run.
    """
    latest = checkpoint_dir / "LATEST"
    if not (checkpoint_dir / RESUME_FILE).is_file() or not latest.is_file():
        return False
    saved = checkpoint_dir / latest.read_text().strip() / "config.json"
    if not saved.is_file():
        return False
    try:
        before = MTRecConfig.model_validate_json(saved.read_text())
    except ValueError:  # written by an incompatible version: start afresh
        return False
    ignore = {"train": {"threads"}}
    return before.model_dump(exclude=ignore) == cfg.model_dump(exclude=ignore)


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
    fusion_seconds: float = 0.0
    # (seconds since the start, threads) at the start and at each change of the thread count.
    threads: list[tuple[float, int]] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but no CUDA device is available")
    return torch.device(name)


Batch = TrainingWindows | SetSamples


@dataclass
class _Supervised:
    """The supervised positions of one batch: P states and their (P, W) targets.

    ``rows`` and ``cols`` locate each state in the batch's (B, L) grid; a position sees the
    row's window up to ``cols`` and the row's earlier bag.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    targets: torch.Tensor
    values: torch.Tensor
    likes: torch.Tensor


def _supervised(batch: Batch, valid: torch.Tensor) -> _Supervised:
    if isinstance(batch, SetSamples):
        rows = torch.nonzero(batch.targets[:, 0] >= 0).squeeze(1)
        cols = torch.full_like(rows, valid.shape[1] - 1)
        return _Supervised(
            rows,
            cols,
            batch.targets[rows],
            batch.target_values[rows],
            batch.target_likes[rows],
        )
    rows, cols = torch.nonzero((batch.targets[..., 0] >= 0) & valid, as_tuple=True)
    return _Supervised(
        rows,
        cols,
        batch.targets[rows, cols],
        batch.target_values[rows, cols],
        batch.target_likes[rows, cols],
    )


class _Losses:
    """Computes the four task losses for one batch of windows or set-completion samples."""

    def __init__(self, model: MultiTaskModel, category_matrix: torch.Tensor) -> None:
        self.model = model
        self.net = model.net
        self.cfg = model.config.train
        self.cats = category_matrix  # (n_items + 1, C), pad row zero

    def _seen(self, batch: Batch, sup: _Supervised, col_of, n_cols: int) -> torch.Tensor:
        """(P, n_cols) 1 where a column's item is in what position p has read, else 0."""
        x = batch.inputs
        length = x.items.shape[1]
        window = x.items[sup.rows]  # (P, L)
        read = torch.arange(length, device=window.device)[None, :] <= sup.cols[:, None]
        cols = torch.where(read, col_of(window), n_cols)
        hit = torch.zeros(len(sup.rows), n_cols + 1, device=window.device)
        hit.scatter_(1, cols.clamp(max=n_cols), 1.0)
        if x.earlier is not None and len(x.earlier.items):
            per_row = torch.zeros(x.items.shape[0], n_cols + 1, device=window.device)
            bag_cols = col_of(x.earlier.items).clamp(max=n_cols)
            per_row[x.earlier.sample_ids(), bag_cols] = 1.0
            hit = torch.maximum(hit, per_row[sup.rows])
        return hit[:, :n_cols]

    def __call__(self, batch: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        net, cfg = self.net, self.cfg
        x = batch.inputs
        state, valid = net.encode(x.items, x.events, rating_bucket(x.values), x.earlier)
        sup = _supervised(batch, valid)
        tgt = sup.targets  # (P, W)
        tmask = tgt >= 0
        interest = state.interest[sup.rows, sup.cols]  # (P, d)
        n_items = net.n_items
        if n_items <= cfg.full_softmax_max_items:
            vectors = net.items.all_vectors()
            logits = interest @ vectors.T + net.items.all_biases()
            if net.seen_bias is not None:
                logits = logits + net.seen_bias * self._seen(batch, sup, lambda i: i, n_items)
            logp = torch.log_softmax(logits, dim=-1)
            picked = logp.gather(1, tgt.clamp(min=0))

            def vectors_of(items: torch.Tensor) -> torch.Tensor:
                return vectors[items]
        else:
            # Sampled softmax over this batch's targets plus shared uniform negatives. Only
            # these items' vectors are computed: the item tower over the whole catalog at every
            # step made an epoch grow with (catalog x interactions).
            negs = torch.randint(0, n_items, (cfg.sampled_negatives,), generator=gen)
            cand = torch.unique(torch.cat([tgt[tmask], negs.to(tgt.device)]))
            cand_vectors = net.items(cand)
            logits = interest @ cand_vectors.T + net.items.bias.weight[cand, 0]
            if net.seen_bias is not None:

                def col_of(items: torch.Tensor) -> torch.Tensor:
                    at = torch.searchsorted(cand, items).clamp(max=len(cand) - 1)
                    return torch.where(cand[at] == items, at, len(cand))

                logits = logits + net.seen_bias * self._seen(batch, sup, col_of, len(cand))
            logp = torch.log_softmax(logits, dim=-1)
            # Every target is among the candidates.
            pos = torch.searchsorted(cand, tgt.clamp(min=0)).clamp(max=len(cand) - 1)
            picked = logp.gather(1, pos)

            def vectors_of(items: torch.Tensor) -> torch.Tensor:
                return cand_vectors[torch.searchsorted(cand, items)]

        losses = {"engagement": -(picked * tmask).sum() / tmask.sum().clamp(min=1)}

        # The like and rating heads: on the next item of each position, or on every target.
        values, likes, aux_tgt = sup.values, sup.likes, tgt
        if cfg.aux_targets == "next" and isinstance(batch, TrainingWindows):
            values, likes, aux_tgt = values[:, :1], likes[:, :1], tgt[:, :1]
        known_like = (likes >= 0) & (aux_tgt >= 0)
        if known_like.any():
            p_idx, w_idx = torch.nonzero(known_like, as_tuple=True)
            logit = net.like_logit(
                state.like[sup.rows[p_idx], sup.cols[p_idx]], vectors_of(aux_tgt[p_idx, w_idx])
            )
            losses["like"] = F.binary_cross_entropy_with_logits(logit, likes[p_idx, w_idx].float())
        rated = ~torch.isnan(values) & (aux_tgt >= 0)
        if rated.any():
            p_idx, w_idx = torch.nonzero(rated, as_tuple=True)
            pred = net.rating(
                state.rating[sup.rows[p_idx], sup.cols[p_idx]], vectors_of(aux_tgt[p_idx, w_idx])
            )
            losses["rating"] = F.mse_loss(pred, values[p_idx, w_idx])
        if self.cats.shape[1] > 0:
            mix = (self.cats[tgt.clamp(min=0)] * tmask[..., None]).sum(1)  # (P, C)
            total = mix.sum(-1, keepdim=True)
            ok = total.squeeze(-1) > 0
            if ok.any():
                mix = mix[ok] / total[ok]
                logq = torch.log_softmax(state.category_logits[sup.rows, sup.cols][ok], dim=-1)
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

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        losses = self.losses(batch, self.gen)
        total = torch.zeros((), device=batch.targets.device)
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
    before = torch.get_num_threads()
    adaptive = None
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    else:
        adaptive = AdaptiveThreads()
    try:
        result = _train(
            model,
            ds,
            train_rows,
            split,
            checkpoint_dir,
            resume,
            on_epoch,
            on_step,
            valid_users,
            adaptive,
        )
        # A policy that could not read the machine changed nothing: log torch's own count.
        result.threads = (adaptive and adaptive.changes) or [(0.0, torch.get_num_threads())]
        return result
    finally:
        torch.set_num_threads(before)


def _train(
    model: MultiTaskModel,
    ds: Dataset,
    train_rows: np.ndarray,
    split: Split | None,
    checkpoint_dir: str | Path | None,
    resume: bool,
    on_epoch: Callable[[EpochLog], None] | None,
    on_step: Callable[[int, int, dict[str, float]], None] | None,
    valid_users: np.ndarray | None,
    adaptive: AdaptiveThreads | None,
) -> TrainResult:
    cfg = model.config.train
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

    mcfg = model.config.model
    use_windows = cfg.objective in ("sequence", "both")
    use_sets = cfg.objective in ("set", "both")

    def epoch_windows() -> TrainingWindows:
        h = hist
        if cfg.history_order == "shuffled":
            h = [_permuted(x, rng) for x in hist]
        return make_windows(
            h,
            mcfg.max_history,
            cfg.future_window,
            ds.n_items,
            cfg.like_threshold,
            stride=cfg.window_stride or None,
            earlier=mcfg.whole_history,
            once=cfg.supervise_once,
        )

    def epoch_sets() -> SetSamples:
        return make_set_samples(
            list(hist) * cfg.set_repeats,
            mcfg.max_history,
            ds.n_items,
            cfg.like_threshold,
            rng,
            keep=cfg.set_keep,
            max_targets=cfg.set_max_targets,
        )

    windows = epoch_windows() if use_windows else None
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
        if windows is not None and cfg.history_order == "shuffled" and epoch > start_epoch:
            windows = epoch_windows()
        sets = epoch_sets() if use_sets else None
        net.train()
        model.invalidate_cache()
        sums: dict[str, float] = dict.fromkeys(TASKS, 0.0)
        counts: dict[str, int] = dict.fromkeys(TASKS, 0)
        plan = _epoch_plan(
            [s for s in (windows, sets) if s is not None],
            cfg.batch_size,
            rng,
            distributed,
            rank,
            world,
            cfg.seed,
            epoch,
        )
        steps = len(plan)
        for step, (samples, idx) in enumerate(plan, start=1):
            batch = samples.take(idx).to(device)
            total, losses = step_fn(batch)
            for t, loss in losses.items():
                sums[t] += float(loss)
                counts[t] += 1
            opt.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            if adaptive is not None:
                adaptive.update()
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
            valid = from_rank0(valid, distributed)
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
    # From the training rows only, on every rank (each saves the same memory).
    model.fit_neighbours(ds, np.asarray(train_rows, np.int64))
    if split is not None and cfg.select_fusion and len(split.valid):
        chosen = None
        if main:
            from mtrec.selection import select_fusion

            t_fusion = time.perf_counter()
            chosen = select_fusion(model, ds, split)
            result.fusion_seconds = time.perf_counter() - t_fusion
        model.config.fusion = FusionConfig(**from_rank0(chosen, distributed))
    result.seconds = time.perf_counter() - t0
    return result


def _epoch_plan(
    sample_sets: list[Batch],
    batch_size: int,
    rng: np.random.Generator,
    distributed: bool,
    rank: int,
    world: int,
    seed: int,
    epoch: int,
) -> list[tuple[Batch, torch.Tensor]]:
    """This process's batches for one epoch: each sample set cut into batches of its own
    kind, the batches of all sets interleaved in an order every rank shares.

    One process: each set in a permutation from ``rng``. Distributed: each set's
    ``DistributedSampler`` shard (all shards have the same length, so every rank runs the
    same number of steps).
    """
    from torch.utils.data import DistributedSampler

    plan = []
    for k, samples in enumerate(sample_sets):
        if distributed:
            sampler = DistributedSampler(
                range(len(samples)), world, rank, shuffle=True, seed=seed + k, drop_last=False
            )
            sampler.set_epoch(epoch)
            order = torch.as_tensor(list(sampler), dtype=torch.int64)
        else:
            order = torch.as_tensor(rng.permutation(len(samples)))
        plan += [(samples, order[i : i + batch_size]) for i in range(0, len(order), batch_size)]
    if len(sample_sets) > 1:
        shared = np.random.default_rng([seed, epoch])  # the same on every rank
        plan = [plan[i] for i in shared.permutation(len(plan))]
    return plan


def from_rank0(value: object, distributed: bool) -> object:
    """Rank 0's ``value`` on every rank (the value itself outside distributed runs)."""
    if not distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


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
