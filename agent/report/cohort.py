"""Cohort aggregates: coverage, diversity, grounding, tiers and latency over many users."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.report.schema import CohortReport, Distribution, TierStats, UserReport
from agent.schema import LLM_TIERS

#: Offline evaluation of the LLM tiers (NDCG@10 and latency per tier), written by
#: ``benchmarks/bench_agent.py`` in a source checkout; shown in cohort reports when present.
TIER_EVALUATION = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "agent.json"


def cohort_report(
    reports: Sequence[UserReport],
    selection: str,
    selected: int,
    seed: int | None,
    catalog_size: int,
    model_metrics: Mapping[str, Any],
) -> CohortReport:
    """Aggregates over user reports: coverage, diversity, grounding, tiers, latency.

    Args:
        reports: The users' reports.
        selection: How the users were named (``list``, ``file`` or ``all``).
        selected: Users in the selection before sampling.
        seed: The sampling seed when the cohort was sampled, else None.
        catalog_size: Items in the catalog (coverage).
        model_metrics: The checkpoint's metrics (shown flattened).
    """
    notes = []
    if seed is not None:
        notes.append(
            f"Sampled {len(reports)} of {selected} users with seed {seed}; "
            "raise --sample to report more."
        )
    explanations = [i.explanation for r in reports for i in r.items]
    checked = [e for e in explanations if e.grounding_checked]
    tiers: dict[str, TierStats] = {}
    for name in sorted({r.tier for r in reports}):
        mine = [r for r in reports if r.tier == name]
        ex = [i.explanation for r in mine for i in r.items]
        tiers[name] = TierStats(
            lists=len(mine),
            explanations=len(ex),
            llm_written=sum(e.source == "llm" for e in ex),
            failed_grounding=sum(not e.grounded for e in ex),
            latency_ms=distribution([r.latency_ms.get("total", math.nan) for r in mine]),
        )
    if not any(t in tiers for t in LLM_TIERS):
        notes.append(
            "No LLM tier answered for these lists (the report's default is the model-only "
            "tier); pass --llm auto, remote or local to see them at work."
        )
    evaluation, source = _tier_evaluation(TIER_EVALUATION)
    if source is None:
        notes.append(
            "No offline evaluation of the LLM tiers is stored; "
            "python benchmarks/bench_agent.py writes one."
        )
    fallbacks = Counter(f"{f.tier}: {f.reason}" for r in reports for f in r.fallbacks)
    distinct = {i.item_id for r in reports for i in r.items}
    return CohortReport(
        selection=selection,
        users_selected=selected,
        users_reported=len(reports),
        sampled=seed is not None,
        seed=seed,
        model_metrics=_flatten(model_metrics),
        tier_evaluation=evaluation,
        tier_evaluation_source=source,
        tiers=tiers,
        tier_mix={name: t.lists for name, t in tiers.items()},
        fallbacks=dict(fallbacks.most_common(10)),
        catalog_size=catalog_size,
        distinct_items=len(distinct),
        catalog_coverage=round(len(distinct) / max(catalog_size, 1), 4),
        intra_list_diversity=distribution(
            [r.intra_list_diversity for r in reports if r.intra_list_diversity is not None]
        ),
        grounding_pass_rate=(
            round(sum(e.grounded for e in explanations) / len(explanations), 4)
            if explanations
            else None
        ),
        llm_grounding_pass_rate=(
            round(sum(e.grounded for e in checked) / len(checked), 4) if checked else None
        ),
        latency_ms=distribution([r.latency_ms.get("total", math.nan) for r in reports]),
        cold_start_users=sum(r.cold_start for r in reports),
        notes=notes,
    )


def intra_list_diversity(category_vectors: np.ndarray) -> float | None:
    """Mean pairwise cosine distance of a list's category vectors (None below two items).

    An item without categories has cosine 0 to everything (distance 1): nothing says it is alike.
    """
    n = len(category_vectors)
    if n < 2:
        return None
    v = np.asarray(category_vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    u = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
    sims = u @ u.T
    upper = sims[np.triu_indices(n, 1)]
    return round(float(np.mean(1.0 - upper)), 4)


def distribution(values: Sequence[float]) -> Distribution | None:
    """Summary statistics of finite values (None when there are none)."""
    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if a.size == 0:
        return None
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return Distribution(
        n=int(a.size),
        mean=round(float(a.mean()), 4),
        min=round(float(a.min()), 4),
        p50=round(float(p50), 4),
        p90=round(float(p90), 4),
        p99=round(float(p99), 4),
        max=round(float(a.max()), 4),
    )


def _tier_evaluation(path: Path) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Per-tier metrics of the latest agent benchmark, or ({}, None) when there is none."""
    if not path.is_file():
        return {}, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        out: dict[str, dict[str, Any]] = {}
        for section in ("accuracy", "latency"):
            for tier, values in (data.get(section) or {}).items():
                if isinstance(values, Mapping):
                    out.setdefault(str(tier), {}).update(_flatten(values, f"{section}."))
    except (OSError, ValueError, AttributeError) as e:
        # A broken results file must not break the report; the source line says why.
        return {}, f"{path.name} could not be read ({type(e).__name__})"
    return out, f"{path.name} of {data.get('date', 'unknown date')}"


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        elif isinstance(value, bool) or value is None or isinstance(value, (int, str)):
            out[name] = value
        elif isinstance(value, (float, np.floating)):
            out[name] = round(float(value), 4) if math.isfinite(value) else None
        elif isinstance(value, np.integer):
            out[name] = int(value)
        else:
            out[name] = str(value)
    return out
