"""``mtrec calibrate``: the LLM weight one tier and model deserve, measured on validation users.

For a seeded sample of users of the model's own protocol split, each user's request runs once
through the tier under test with the *validation* view of the data: history = the user's
training rows, target = the user's validation item(s). Test rows are never read. Every result
carries the model's order and the LLM's order over the candidates (``model_order``,
``llm_order``), so the final top 10 at any LLM weight is replayed from that one set of answers
(the same weighted reciprocal-rank fusion as the recommender). Each weight's NDCG@10 is paired
with the model alone (weight 0) over the same users, with a 95 % bootstrap interval.

The weight written is the one with the largest mean gain among those whose interval lies above
zero; 0 when none does (the LLM is then heard only in explanations). It goes to
``WORKSPACE/mtrec.toml`` under ``[calibration."<tier>:<model name>"]``, so it serves only that
tier with that model (``Settings.weight_for``); the file's other settings, comments and
permissions are kept and it is replaced atomically.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import ConfigFileError, TierError
from agent.files import write_text_atomic
from agent.pipeline.fusion import reciprocal_rank_fusion
from agent.recommender import Recommender
from agent.schema import HistoryEntry, RecommendResult, Tier, TierChoice
from agent.settings import CONFIG_FILE, calibration_key, load_settings
from mtrec.data.history import History, user_histories
from mtrec.data.schema import EventType
from mtrec.evaluation.protocols import split_dataset
from mtrec.evaluation.stats import paired_bootstrap

#: Weights tried by default (0, the model alone, is always added).
DEFAULT_WEIGHTS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
#: List length the weights are judged on.
K = 10


@dataclass(frozen=True)
class Case:
    """One validation user: the history the request runs on and the items it should find."""

    user_id: str
    history: History
    targets: frozenset[str]


@dataclass(frozen=True)
class WeightRow:
    """NDCG@10 at one weight, and its paired gain over the model alone."""

    weight: float
    ndcg: float
    gain: float
    low: float
    high: float


@dataclass
class Calibration:
    """What ``calibrate`` measured and chose."""

    tier: str
    model_name: str
    protocol: str
    users: int
    seed: int
    answered: int
    model_only_ndcg: float
    rows: list[WeightRow]
    best_weight: float
    seconds: float
    fallbacks: dict[str, int] = field(default_factory=dict)
    replay_mismatches: int = 0
    written_to: str | None = None

    @property
    def key(self) -> str:
        return calibration_key(self.tier, self.model_name)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "key": self.key}


def parse_weights(text: str) -> tuple[float, ...]:
    """``"0,0.05,0.1"`` -> sorted unique weights, 0 always included.

    Raises:
        ValueError: a value is not a number in [0, 1].
    """
    out = {0.0}
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            w = float(part)
        except ValueError:
            raise ValueError(f"--weights must be numbers in [0, 1], got {part.strip()!r}") from None
        if not 0.0 <= w <= 1.0 or math.isnan(w):
            raise ValueError(f"--weights must be numbers in [0, 1], got {w:g}")
        out.add(w)
    return tuple(sorted(out))


def validation_cases(rec: Recommender, n_users: int, seed: int) -> list[Case]:
    """A seeded sample of users with a validation item under the model's protocol split.

    History = the user's training rows (time order); targets = the user's validation items.
    The split is the one the model was trained and early-stopped with (its protocol and seed),
    so no test row is read.
    """
    ds, config = rec.ds, rec.model.config
    split = split_dataset(ds, config.protocol, seed=config.train.seed)
    histories = user_histories(ds, split.train)
    targets: dict[int, set[int]] = {}
    for r in split.valid:
        targets.setdefault(int(ds.user_idx[r]), set()).add(int(ds.item_idx[r]))
    users = []
    for u in sorted(targets):
        seen = set(histories[u].items.tolist())
        targets[u] -= seen  # an item seen in training can never be recommended again
        if len(histories[u]) and targets[u]:
            users.append(u)
    if not users:
        raise ValueError(f"no user has a validation item under the {config.protocol!r} split")
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(np.array(users), min(n_users, len(users)), replace=False))
    return [
        Case(
            ds.users[int(u)].user_id,
            histories[int(u)],
            frozenset(ds.items[i].item_id for i in targets[int(u)]),
        )
        for u in picked
    ]


def history_entries(rec: Recommender, hist: History) -> list[HistoryEntry]:
    """A ``History`` as request entries (item id, rating, event), oldest first."""
    items = rec.ds.items
    return [
        HistoryEntry(
            item_id=items[int(i)].item_id,
            rating=None if np.isnan(v) else float(v),
            event=EventType.from_code(int(e)),
        )
        for i, v, e in zip(hist.items, hist.values, hist.events, strict=True)
    ]


def replay_fusion(result: RecommendResult, weight: float) -> list[str]:
    """The recommender's final order at another LLM weight, from the model order and the LLM
    order a result carries (the same fusion as the rerank stage)."""
    if not result.llm_order:
        return list(result.model_order)
    rrf = reciprocal_rank_fusion([result.model_order, result.llm_order], [1 - weight, weight])
    return sorted(result.model_order, key=lambda i: -rrf.get(i, 0.0))


def ndcg_at_k(ranked: Sequence[str], targets: frozenset[str] | set[str], k: int = K) -> float:
    """NDCG@k of a ranking against a set of relevant item ids (binary relevance)."""
    dcg = sum(1.0 / math.log2(r + 1) for r, i in enumerate(ranked[:k], 1) if i in targets)
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(len(targets), k) + 1))
    return dcg / ideal if ideal else 0.0


def require_tier(rec: Recommender, tier: Tier | str) -> Tier:
    """The tier to calibrate, checked: ``local`` or ``remote`` and configured.

    Raises:
        ValueError: another tier name. TierError: the tier is not configured.
    """
    tier = Tier(tier)
    if tier not in (Tier.LOCAL, Tier.REMOTE):
        raise ValueError(f"--llm must be local or remote, got {tier.value!r}")
    if rec.chain.tier(tier) is None:
        how = (
            "set MTREC_LLM_BASE_URL (and MTREC_LLM_MODEL) to an OpenAI-compatible endpoint"
            if tier == Tier.REMOTE
            else "install mtrec[local] or set MTREC_LOCAL_MODEL_PATH"
        )
        raise TierError(f"the {tier.value} tier is not configured ({how}); nothing written")
    return tier


@dataclass
class _Answers:
    """NDCG@10 per weight per user, and what answered."""

    ndcg: dict[float, list[float]]
    answered: int = 0
    mismatches: int = 0
    models: dict[str, int] = field(default_factory=dict)
    fallbacks: dict[str, int] = field(default_factory=dict)


def _ask_each(
    rec: Recommender,
    tier: Tier,
    cases: Sequence[Case],
    grid: Sequence[float],
    on_case: Callable[[int, int, RecommendResult], None] | None,
) -> _Answers:
    """One request per case through ``tier`` (fresh: no cached answer, closed breakers),
    replayed at every weight of ``grid``."""
    out = _Answers({w: [] for w in grid})
    for n, case in enumerate(cases):
        rec.cache.clear()  # an answer cached before (another tier object, other settings) is
        rec.chain.reset_breakers()  # not this tier's; and a failure is a data point
        res = rec.recommend(
            history=history_entries(rec, case.history),
            k=K,
            llm=TierChoice(tier.value),
            explain=False,
        )
        if res.tier == tier:
            out.answered += 1
            model = res.llm_model or ""
            out.models[model] = out.models.get(model, 0) + 1
            own = res.llm_weight if res.llm_weight is not None else 0.0
            out.mismatches += replay_fusion(res, own)[:K] != [it.item_id for it in res.items[:K]]
        for f in res.fallbacks:
            out.fallbacks[f.reason] = out.fallbacks.get(f.reason, 0) + 1
        for w in grid:
            out.ndcg[w].append(ndcg_at_k(replay_fusion(res, w), case.targets))
        if on_case is not None:
            on_case(n, len(cases), res)
    return out


def _rows(ndcg: dict[float, list[float]], seed: int) -> list[WeightRow]:
    """Each weight's NDCG@10 and its paired gain over weight 0 (95 % bootstrap interval)."""
    base = np.array(ndcg[0.0])
    rows = []
    for w, values in ndcg.items():
        v = np.array(values)
        if w == 0.0:
            rows.append(WeightRow(w, float(v.mean()), 0.0, 0.0, 0.0))
            continue
        iv = paired_bootstrap(v, base, seed=seed)
        rows.append(WeightRow(w, float(v.mean()), iv.mean_diff, iv.low, iv.high))
    return rows


def calibrate(
    rec: Recommender,
    tier: Tier | str,
    n_users: int = 200,
    seed: int = 2021,
    weights: Sequence[float] = DEFAULT_WEIGHTS,
    on_case: Callable[[int, int, RecommendResult], None] | None = None,
) -> Calibration:
    """Measure NDCG@10 at each weight on validation users and pick the best weight.

    The best weight has the largest mean gain among those whose interval lies above zero
    (the smaller weight on a tie); 0 when none does.

    Args:
        rec: The recommender (its chain's tier ``tier`` is the one measured; when measuring
            ``remote``, the local tier is switched off so a failed call counts as model-only
            instead of being answered by another tier). Its answer cache is cleared.
        tier: ``local`` or ``remote``.
        n_users: Users in the sample.
        seed: Sample seed.
        weights: LLM weights to replay (0 is added).
        on_case: Called after each request with its index, the sample size and its result.

    Raises:
        ValueError: bad tier, user count or weights. TierError: the tier is not configured,
            or it never answered.
    """
    tier = require_tier(rec, tier)
    if n_users < 1:
        raise ValueError(f"--users must be >= 1, got {n_users}")
    grid = tuple(sorted({0.0, *(float(w) for w in weights)}))
    if tier == Tier.REMOTE:
        rec.chain.set_tier(Tier.LOCAL, None)
    t0 = time.perf_counter()
    cases = validation_cases(rec, n_users, seed)
    got = _ask_each(rec, tier, cases, grid, on_case)
    if not got.answered:
        reason = next(iter(got.fallbacks), "no answer")
        raise TierError(
            f"the {tier.value} tier answered none of the {len(cases)} requests "
            f"(first reason: {reason}); nothing written"
        )
    rows = _rows(got.ndcg, seed)
    winners = [r for r in rows if r.weight > 0 and r.low > 0]
    best = max(winners, key=lambda r: r.gain).weight if winners else 0.0
    return Calibration(
        tier=tier.value,
        model_name=max(got.models, key=lambda m: got.models[m]),
        protocol=rec.model.config.protocol,
        users=len(cases),
        seed=seed,
        answered=got.answered,
        model_only_ndcg=rows[0].ndcg,
        rows=rows,
        best_weight=best,
        seconds=round(time.perf_counter() - t0, 1),
        fallbacks=got.fallbacks,
        replay_mismatches=got.mismatches,
    )


def write_calibration(workspace: Path, cal: Calibration, checkpoint: str = "") -> Path:
    """Write ``[calibration."<tier>:<model>"]`` into ``WORKSPACE/mtrec.toml`` atomically.

    Every other setting and comment of the file is kept, and so is its mode (a new file is
    created 0600, as a file that may later hold an API key must be). A concurrent writer waits
    on a lock beside the file.

    Raises:
        ConfigFileError: the existing file is not valid TOML.
    """
    import tomlkit
    from filelock import FileLock

    path = Path(workspace) / CONFIG_FILE
    with FileLock(str(path) + ".lock"):
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        try:
            doc = tomlkit.parse(text)
        except tomlkit.exceptions.ParseError as e:
            raise ConfigFileError(f"{path} is not valid TOML ({e}); fix it and run again") from None
        section = doc.get("calibration")
        if section is None:
            section = tomlkit.table(is_super_table=True)
            doc["calibration"] = section
        best = next(r for r in cal.rows if r.weight == cal.best_weight)
        entry = tomlkit.table()
        entry.add("weight", cal.best_weight)
        entry.add("ndcg_gain", round(best.gain, 5))
        entry.add("ndcg_gain_low", round(best.low, 5))
        entry.add("ndcg_gain_high", round(best.high, 5))
        entry.add("model_only_ndcg", round(cal.model_only_ndcg, 5))
        entry.add("users", cal.users)
        entry.add("answered", cal.answered)
        entry.add("seed", cal.seed)
        entry.add("protocol", cal.protocol)
        entry.add("split", "validation")
        entry.add("weights_tried", [r.weight for r in cal.rows])
        entry.add("checkpoint", checkpoint)
        entry.add("date", dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        section[cal.key] = entry
        mode = path.stat().st_mode & 0o777 if path.is_file() else 0o600
        write_text_atomic(path, tomlkit.dumps(doc), mode)
    load_settings(Path(workspace))  # the file still loads (and keeps its key rule)
    return path
