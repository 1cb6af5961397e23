"""The Python API: ``Recommender.load(workspace).recommend(...)``.

One request runs: candidates (model top-N, semantic search for a query, popularity backfill)
-> per-task model scores and a fused model score -> optional LLM rerank through the tier
chain (remote -> local -> none) with guards -> rank fusion -> grounded explanations.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import redact
from agent.explain import (
    ItemEvidence,
    TitleIndex,
    check_grounding,
    evidence_model,
    nearest_history,
    template_explanation,
)
from agent.fusion import reciprocal_rank_fusion
from agent.llm.chain import TierChain
from agent.llm.sanitize import clean_text, looks_like_injection
from agent.llm.types import PromptCandidate, PromptHistory, RerankRequest
from agent.schema import (
    Dropped,
    Filters,
    HistoryEntry,
    RecommendedItem,
    RecommendRequest,
    RecommendResult,
    TaskScoresOut,
    hit_record,
)
from agent.settings import Settings
from agent.workspace import Workspace
from mtrec.data.history import History, user_histories
from mtrec.data.schema import EventType
from mtrec.model.multitask import MultiTaskModel

_DISLIKE_CODE = EventType.DISLIKE.code

#: Candidate text shown to the LLM is capped at this many characters.
PROMPT_TEXT_CHARS = 200
#: History items shown to the LLM.
PROMPT_HISTORY = 15
#: A user with fewer interactions than this gets popular items among the candidates.
COLD_START_HISTORY = 5
#: Answers kept in the in-process cache.
CACHE_SIZE = 1024


class Recommender:
    """Recommendations with LLM reranking and grounded explanations.

    Build with ``Recommender.load(workspace)``. Thread-safe for concurrent ``recommend`` calls
    (the model is read-only at inference; the local LLM serialises its own calls).

    Args:
        workspace: An indexed workspace with a trained model.
        model: The multi-task model.
        settings: Settings (LLM endpoints, weights, candidate count).
    """

    def __init__(self, workspace: Workspace, model: MultiTaskModel, settings: Settings) -> None:
        self.workspace = workspace
        self.model = model
        self.settings = settings
        self.ds = workspace.dataset
        if model.item_ids != self.ds.item_ids:
            raise ValueError(
                "the model was trained on a different catalog than the workspace's dataset; "
                "run `mtrec train` again"
            )
        self.histories = user_histories(self.ds)
        self.popularity = np.bincount(self.ds.item_idx, minlength=self.ds.n_items)
        self.categories = self.ds.category_matrix().astype(bool)
        self.years = np.array([it.year or 0 for it in self.ds.items])
        self.titles = TitleIndex(self.ds.items)
        self.chain = TierChain(settings)
        self._index: Any = None
        self._cache: OrderedDict[str, RecommendResult] = OrderedDict()
        self._suspicious = np.array(
            [looks_like_injection(it.title, it.text) for it in self.ds.items], dtype=bool
        )
        self.feedback: Any = None
        # Guards the answer cache and the feedback store's creation (threaded servers).
        self._lock = threading.Lock()

    @classmethod
    def load(cls, workspace: str | Path | None = None, **settings: Any) -> Recommender:
        """Load the workspace's dataset, model and settings (keyword overrides win)."""
        from agent.settings import load_settings

        ws = Workspace(workspace)
        s = load_settings(ws.root, **settings)
        ws.settings = s
        model = MultiTaskModel.load(ws.model_dir).freeze()  # serving: no text buffer
        rec = cls(ws, model, s)
        from agent.feedback import FeedbackStore

        if ws.feedback_path.exists():
            rec.feedback = FeedbackStore(ws.feedback_path)
        return rec

    @property
    def index(self) -> Any:
        if self._index is None:
            self._index = self.workspace.index()
        return self._index

    def feedback_store(self) -> Any:
        """The workspace's feedback store, created and attached on first use.

        Once attached, ``user_history`` merges the stored events into every request.
        """
        if self.feedback is None:
            with self._lock:
                if self.feedback is None:
                    from agent.feedback import FeedbackStore

                    self.feedback = FeedbackStore(self.workspace.feedback_path)
        return self.feedback

    # ---- history ------------------------------------------------------------------------------
    def user_history(self, user_id: str) -> History:
        """A known user's history: the dataset's events plus stored feedback, oldest first.

        Raises:
            KeyError: unknown user id (and no feedback stored for it).
        """
        base = None
        if self.ds.has_user(user_id):
            base = self.histories[self.ds.user_index(user_id)]
        extra = self.feedback.history(user_id, self.ds) if self.feedback else None
        if base is None and (extra is None or len(extra) == 0):
            raise KeyError(f"unknown user id {user_id!r}; pass a history for a new user")
        if base is None:
            return extra
        return base.extend(extra) if extra is not None and len(extra) else base

    def history_from(self, entries: Sequence[HistoryEntry | str | int]) -> History:
        """A history from item ids (oldest first), with optional ratings or events.

        Raises:
            KeyError: an item id is not in the catalog (named in the message).
        """
        items, values, events = [], [], []
        for e in entries:
            entry = e if isinstance(e, HistoryEntry) else HistoryEntry(item_id=str(e))
            items.append(self.ds.item_index(entry.item_id))
            values.append(entry.rating)
            kind = entry.event or ("rating" if entry.rating is not None else "view")
            events.append(EventType(kind))
        return History.from_items(items, values, events)

    # ---- the pipeline ---------------------------------------------------------------------------
    def recommend(
        self,
        user_id: str | None = None,
        history: Sequence[HistoryEntry | str | int] | None = None,
        query: str | None = None,
        k: int = 10,
        filters: Filters | dict[str, Any] | None = None,
        llm: str | None = None,
        explain: bool = True,
        language: str | None = None,
        exclude: Sequence[str] = (),
    ) -> RecommendResult:
        """Recommend ``k`` items for a known user or a raw history.

        Args:
            user_id: A user in the dataset (or with stored feedback).
            history: Item ids (or ``HistoryEntry``) oldest first, for a user the model never saw.
                With ``user_id`` too, they are appended to that user's history.
            query: Free text; adds semantic-search candidates and steers the ranking.
            k: List length (>= 1; more than the eligible items gives all of them).
            filters: Categories to keep/drop and a year range.
            llm: ``auto`` (default from settings), ``remote``, ``local`` or ``none``.
            explain: Write explanations.
            language: Language of the explanations (LLM tiers; templates are English).
            exclude: Item ids never to return.

        Returns:
            A ``RecommendResult`` (same schema for every tier).

        Raises:
            KeyError: unknown user or item id.
            ValueError: bad k or filters.
        """
        req = RecommendRequest(
            user_id=user_id,
            history=list(history) if history is not None else None,  # type: ignore[arg-type]
            query=query,
            k=k,
            filters=Filters.model_validate(filters) if isinstance(filters, dict) else filters,
            llm=llm or self.settings.llm,  # type: ignore[arg-type]
            explain=explain,
            language=language,
            exclude=list(exclude),
        )
        return self.run(req)

    def run(self, req: RecommendRequest) -> RecommendResult:
        """``recommend`` for a validated request object (the HTTP service calls this)."""
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        if req.user_id is None and req.history is None:
            raise ValueError("give a user_id or a history")
        hist = self.user_history(req.user_id) if req.user_id is not None else None
        if req.history is not None:
            raw = self.history_from(req.history)
            hist = raw if hist is None else hist.extend(raw)
        assert hist is not None
        exclude = {self.ds.item_index(i) for i in req.exclude}
        query = clean_text(req.query, 500) if req.query else None
        key = self._cache_key(req, hist, query)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
        if cached is not None:
            hit = copy.deepcopy(cached)
            hit.cached = True
            hit.latency_ms = {"total": (time.perf_counter() - t0) * 1000}
            return hit

        # 1. candidates
        allowed = self._allowed(req.filters)
        allowed[list(exclude)] = False
        seen = np.zeros(self.ds.n_items, dtype=bool)
        seen[hist.items] = True
        eligible = allowed & ~seen
        n_cand = max(self.settings.candidates, req.k)
        cand, sources = self._candidates(hist, query, req.filters, eligible, n_cand)
        timings["candidates"] = (time.perf_counter() - t0) * 1000
        result = RecommendResult(
            items=[], tier="none", user_id=req.user_id, query=query, history_size=len(hist)
        )
        if not cand:
            result.notes.append("no item matches the filters")
            result.latency_ms = {**timings, "total": (time.perf_counter() - t0) * 1000}
            return result

        # 2. model scores
        t1 = time.perf_counter()
        cand_arr = np.array(cand, np.int64)
        ts = self.model.task_scores(hist, cand_arr)
        fused = self._fuse_model(ts)
        model_order = [cand[i] for i in np.argsort(-fused, kind="stable")]
        # The score shown is whatever produced the final order: the model's fused score, or the
        # fusion with the query's order and/or the LLM's order.
        final_score = {item: float(fused[j]) for j, item in enumerate(cand)}
        if query:
            query_order = self._query_order(query, cand)
            rrf = reciprocal_rank_fusion([_ids(model_order), _ids(query_order)], [0.5, 0.5])
            model_order = sorted(cand, key=lambda i: -rrf[str(i)])
            final_score = {i: rrf[str(i)] for i in cand}
        model_rank = {item: r for r, item in enumerate(model_order, start=1)}
        result.model_order = [self.ds.items[i].item_id for i in model_order]
        profile = self.model.category_interest(hist)
        result.category_interest = {
            c: round(float(p), 4)
            for c, p in sorted(zip(self.ds.categories, profile, strict=True), key=lambda x: -x[1])
        }
        timings["scores"] = (time.perf_counter() - t1) * 1000

        # 3. LLM rerank
        t2 = time.perf_counter()
        final_order = model_order
        llm_rank: dict[int, int] = {}
        llm_text: dict[int, Any] = {}
        if req.llm != "none":
            llm_query = query
            if query and looks_like_injection(query):
                # Like hostile catalog text: the query still drives the semantic search, but an
                # instruction aimed at the ranker never reaches the LLM.
                llm_query = None
                result.notes.append("the query reads like an instruction; not shown to the LLM")
            rr, short_to_item, short_hist = self._rerank_request(
                hist, model_order, ts, cand, req, llm_query, profile
            )
            chain = self.chain.run(rr, req.llm)
            result.fallbacks = chain.fallbacks
            if chain.answer is not None:
                result.tier = chain.tier  # type: ignore[assignment]
                result.prompt_version = chain.prompt_id
                result.llm_model = chain.answer.model
                result.tokens_in, result.tokens_out = (
                    chain.answer.tokens_in,
                    chain.answer.tokens_out,
                )
                llm_order, llm_text, dropped = _guard(
                    chain.answer.output, short_to_item, short_hist, model_order
                )
                result.dropped = dropped
                # Items whose catalog text tries to steer the LLM keep their model rank.
                picked = [i for i in llm_order[: len(llm_text)] if not self._suspicious[i]]
                picked_set = set(picked)
                llm_order = picked + [i for i in model_order if i not in picked_set]
                # llm_rank is reported only for items the LLM itself ranked.
                llm_rank = {item: r for r, item in enumerate(picked, start=1)}
                result.llm_order = [self.ds.items[i].item_id for i in llm_order]
                w = self.settings.llm_weight
                rrf = reciprocal_rank_fusion([_ids(model_order), _ids(llm_order)], [1 - w, w])
                final_score = {i: rrf.get(str(i), 0.0) for i in model_order}
                final_order = sorted(model_order, key=lambda i: -final_score[i])
        timings["llm"] = (time.perf_counter() - t2) * 1000

        # 4. explanations and output
        t3 = time.perf_counter()
        top = final_order[: req.k]
        pos = {item: j for j, item in enumerate(cand)}
        vectors = self.model.item_vectors()
        anchors = _explanation_anchors(hist)
        near = nearest_history(vectors[top], vectors[anchors], anchors)
        hist_ids = {self.ds.items[i].item_id for i in hist.items}
        hist_titles = [self.ds.items[i].title for i in hist.items]
        cand_titles = [self.ds.items[i].title for i in cand]
        user_cats = self.categories[hist.items].sum(axis=0) if len(hist) else None
        for rank, item in enumerate(top, start=1):
            j = pos[item]
            it = self.ds.items[item]
            shared = _shared_categories(self.categories[item], user_cats, self.ds.categories)
            ev = ItemEvidence(
                near[rank - 1],
                shared,
                float(ts.engagement[j]),
                float(ts.like[j]),
                float(ts.rating[j]),
            )
            near_items = [self.ds.items[h] for h in ev.nearest_history]
            out = RecommendedItem(
                item_id=it.item_id,
                title=it.title,
                year=it.year,
                categories=list(it.categories),
                score=round(final_score[item], 6),
                model_score=round(float(fused[j]), 4),
                task_scores=TaskScoresOut(
                    engagement=float(ts.engagement[j]),
                    like=float(ts.like[j]),
                    rating=float(ts.rating[j]),
                ),
                model_rank=model_rank[item],
                llm_rank=llm_rank.get(item),
                source=sources[item],
                evidence=evidence_model(it, near_items, ev),
            )
            if req.explain:
                pick = llm_text.get(item)
                if pick is not None and pick["text"]:
                    cited = [c for c in pick["cited"]]
                    ok, reason = check_grounding(
                        pick["text"],
                        cited,
                        pick["categories"],
                        it,
                        hist_ids,
                        hist_titles + cand_titles,
                        self.titles,
                        self.ds.categories,
                    )
                    if ok:
                        out.explanation, out.explanation_source = pick["text"], "llm"
                        if cited:  # the LLM's own citations, with their titles
                            out.evidence.history_items = cited
                            out.evidence.history_titles = [self.ds.item(c).title for c in cited]
                    else:
                        result.dropped.ungrounded += 1
                        out.grounded = False
                        out.explanation = template_explanation(it, near_items, ev)
                        out.explanation_source = "template"
                        result.notes.append(f"explanation of {it.item_id} replaced: {reason}")
                else:
                    out.explanation = template_explanation(it, near_items, ev)
                    out.explanation_source = "template"
            result.items.append(out)
        timings["explain"] = (time.perf_counter() - t3) * 1000
        timings["total"] = (time.perf_counter() - t0) * 1000
        result.latency_ms = {k: round(v, 2) for k, v in timings.items()}
        stored = copy.deepcopy(result)
        with self._lock:
            self._cache[key] = stored
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return result

    # ---- other API ----------------------------------------------------------------------------
    def similar(self, item_id: str, k: int = 10, filters: Filters | None = None) -> list[dict]:
        """Content-similar items from the Chroma index (title, year, categories, similarity)."""
        self.ds.item_index(item_id)  # a clear KeyError for an unknown id
        hits = self.index.similar(item_id, k, _item_filter(filters))
        return [hit_record(h) for h in hits]

    def explain(self, user_id: str, item_id: str, llm: str = "none") -> RecommendedItem:
        """Scores, evidence and an explanation of one item for one user (seen or not)."""
        hist = self.user_history(user_id)
        item = self.ds.item_index(item_id)
        ts = self.model.task_scores(hist, np.array([item]))
        vectors = self.model.item_vectors()
        anchors = _explanation_anchors(hist)
        near = nearest_history(vectors[[item]], vectors[anchors], anchors)[0]
        it = self.ds.items[item]
        user_cats = self.categories[hist.items].sum(axis=0) if len(hist) else None
        ev = ItemEvidence(
            near,
            _shared_categories(self.categories[item], user_cats, self.ds.categories),
            float(ts.engagement[0]),
            float(ts.like[0]),
            float(ts.rating[0]),
        )
        near_items = [self.ds.items[h] for h in near]
        fused = self._fuse_model(ts)
        return RecommendedItem(
            item_id=it.item_id,
            title=it.title,
            year=it.year,
            categories=list(it.categories),
            score=float(fused[0]),
            model_score=float(fused[0]),
            task_scores=TaskScoresOut(
                engagement=float(ts.engagement[0]),
                like=float(ts.like[0]),
                rating=float(ts.rating[0]),
            ),
            model_rank=1,
            explanation=template_explanation(it, near_items, ev),
            explanation_source="template",
            evidence=evidence_model(it, near_items, ev),
        )

    # ---- helpers --------------------------------------------------------------------------------
    def _allowed(self, f: Filters | None) -> np.ndarray:
        ok = np.ones(self.ds.n_items, dtype=bool)
        if f is None or f.is_empty():
            return ok
        cat_index = {c.lower(): j for j, c in enumerate(self.ds.categories)}

        def cols(names: list[str]) -> list[int]:
            unknown = [n for n in names if n.lower() not in cat_index]
            if unknown:
                raise ValueError(f"unknown categories {unknown}; known: {self.ds.categories}")
            return [cat_index[n.lower()] for n in names]

        if f.categories:
            ok &= self.categories[:, cols(f.categories)].any(axis=1)
        if f.exclude_categories:
            ok &= ~self.categories[:, cols(f.exclude_categories)].any(axis=1)
        if f.year_min is not None:
            ok &= self.years >= f.year_min
        if f.year_max is not None:
            ok &= (self.years <= f.year_max) & (self.years > 0)
        return ok

    def _candidates(
        self,
        hist: History,
        query: str | None,
        filters: Filters | None,
        eligible: np.ndarray,
        n: int,
    ) -> tuple[list[int], dict[int, list[str]]]:
        sources: dict[int, list[str]] = {}
        if eligible.any():
            items, _ = self.model.recommend(
                hist, min(n, int(eligible.sum())), exclude_seen=True, allowed=eligible
            )
            for i in items:
                sources.setdefault(int(i), []).append("model")
        if query:
            seen_ids = [self.ds.items[i].item_id for i in np.flatnonzero(~eligible)]
            hits = self.index.search_text(
                query,
                n,
                _item_filter(filters),
                exclude_ids=seen_ids if len(seen_ids) < 5000 else (),
            )
            for h in hits:
                i = self.ds.item_index(h.item_id)
                if eligible[i]:
                    sources.setdefault(i, []).append("query")
        if len(hist) < COLD_START_HISTORY:
            pop = np.where(eligible, self.popularity, -1)
            for i in np.argsort(-pop, kind="stable")[: n // 2]:
                if pop[i] >= 0:
                    sources.setdefault(int(i), []).append("popular")
        return list(sources), sources

    def _fuse_model(self, ts: Any) -> np.ndarray:
        """The model's fused score: engagement logit plus small like and rating terms."""
        like = np.clip(ts.like, 1e-4, 1 - 1e-4)
        return (
            ts.engagement_logit
            + self.settings.fuse_like * np.log(like / (1 - like))
            + self.settings.fuse_rating * (ts.rating - 3.0)
        )

    def _query_order(self, query: str, cand: list[int]) -> list[int]:
        q = self.index._embedder.encode_one(query)
        vecs = self.index.get_embeddings([self.ds.items[i].item_id for i in cand])
        sims = vecs @ q
        return [cand[i] for i in np.argsort(-sims, kind="stable")]

    def _rerank_request(self, hist, model_order, ts, cand, req, query, profile):
        rng = np.random.default_rng(_seed(req, hist))
        shown = list(model_order)
        rng.shuffle(shown)  # seeded shuffle: position must not pass for preference
        pos = {item: j for j, item in enumerate(cand)}
        short_to_item = {f"C{j + 1}": item for j, item in enumerate(shown)}
        candidates = tuple(
            PromptCandidate(
                short_id=s,
                item_id=self.ds.items[i].item_id,
                title=clean_text(self.ds.items[i].title, 120),
                year=self.ds.items[i].year,
                categories=self.ds.items[i].categories,
                text=clean_text(self.ds.items[i].text, PROMPT_TEXT_CHARS),
                engagement=float(ts.engagement[pos[i]]),
                like=float(ts.like[pos[i]]),
                rating=float(ts.rating[pos[i]]),
            )
            for s, i in short_to_item.items()
        )
        recent = hist.items[-PROMPT_HISTORY:]
        values = hist.values[-PROMPT_HISTORY:]
        short_hist = {f"H{j + 1}": self.ds.items[i].item_id for j, i in enumerate(recent)}
        history = tuple(
            PromptHistory(
                f"H{j + 1}",
                self.ds.items[i].item_id,
                clean_text(self.ds.items[i].title, 120),
                self.ds.items[i].categories,
                None if np.isnan(v) else float(v),
            )
            for j, (i, v) in enumerate(zip(recent, values, strict=True))
        )
        top_profile = sorted(
            zip(self.ds.categories, profile.tolist(), strict=True), key=lambda x: -x[1]
        )[:5]
        rr = RerankRequest(history, candidates, tuple(top_profile), req.k, query, req.language)
        return rr, short_to_item, short_hist

    def _cache_key(self, req: RecommendRequest, hist: History, query: str | None) -> str:
        payload = {
            "items": hist.items.tolist(),
            "values": np.nan_to_num(hist.values, nan=-1).tolist(),
            "req": req.model_dump(exclude={"user_id", "history"}),
            "query": query,
            "model": str(self.model.metrics.get("checkpoint", "")),
            "llm_model": self.settings.llm_model,
            "weight": self.settings.llm_weight,
            "prompts": _prompt_ids(),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    def report(self, user_id: str | None = None, format: str = "html", **options: Any) -> str:
        """An explanation report as text (``users=[...]`` or ``"all"`` for a cohort).

        Options (``users``, ``history``, ``k``, ``llm`` default ``none``, ``sample``, ``seed``,
        ``out``) are those of ``agent.report.report``.
        """
        from agent.report import report

        return report(self, user_id=user_id, format=format, **options)


def _prompt_ids() -> list[str]:
    from agent.llm.prompting import prompt_version

    return [prompt_version(False), prompt_version(True)]


def _seed(req: RecommendRequest, hist: History) -> int:
    digest = hashlib.sha256(f"{req.user_id}|{hist.items[-20:].tolist()}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _ids(order: Sequence[int]) -> list[str]:
    return [str(i) for i in order]


def _item_filter(f: Filters | None) -> Any:
    if f is None or f.is_empty():
        return None
    from retrieval import ItemFilter

    return ItemFilter(tuple(f.categories), tuple(f.exclude_categories), f.year_min, f.year_max)


def _shared_categories(
    item_cats: np.ndarray, user_cats: np.ndarray | None, names: list[str]
) -> list[str]:
    if user_cats is None:
        return []
    # The item's categories that are among the user's three most frequent ones.
    top = set(
        np.argsort(-user_cats, kind="stable")[:3][
            user_cats[np.argsort(-user_cats, kind="stable")[:3]] > 0
        ]
    )
    return [names[j] for j in np.flatnonzero(item_cats) if j in top]


def read_user_selection(
    users: str | Path | Sequence[str], all_ids: Sequence[str]
) -> tuple[list[str], str]:
    """The user ids a batch or cohort names, once each in order, and how they were named.

    Args:
        users: ``"all"``, a file (one id a line; blank lines and ``#`` comments skipped) or a
            list of ids.
        all_ids: Every dataset user, for ``"all"``.

    Returns:
        ``(ids, selection)`` with selection ``"all"``, ``"file"`` or ``"list"``.

    Raises:
        ValueError: the file cannot be read or is not UTF-8 text.
    """
    if isinstance(users, str) and users == "all":
        ids, selection = list(all_ids), "all"
    elif isinstance(users, (str, Path)):
        path = Path(users)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise ValueError(f"cannot read the users file {str(path)!r}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise ValueError(f"the users file {str(path)!r} is not UTF-8 text") from None
        ids = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        selection = "file"
    else:
        ids, selection = [str(u) for u in users], "list"
    return list(dict.fromkeys(ids)), selection


def _explanation_anchors(hist: History, last: int = 50) -> np.ndarray:
    """History items an explanation may point to ("because you watched X"): the latest ones
    the user did not dislike (rated below 3, or a dislike event); all latest ones if none."""
    disliked = (hist.events == _DISLIKE_CODE) | (hist.values < 3)  # NaN < 3 is False
    kept = hist.items[~disliked]
    return (kept if len(kept) else hist.items)[-last:]


def _guard(
    output: Any, short_to_item: dict[str, int], short_hist: dict[str, str], model_order: list[int]
) -> tuple[list[int], dict[int, dict[str, Any]], Dropped]:
    """Keep only candidate ids, once each; append missing candidates in model order."""
    dropped = Dropped()
    order: list[int] = []
    texts: dict[int, dict[str, Any]] = {}
    for pick in output.ranking:
        sid = pick.id.strip().upper()
        if sid not in short_to_item:
            dropped.unknown += 1
            continue
        item = short_to_item[sid]
        if item in texts:
            dropped.duplicate += 1
            continue
        order.append(item)
        cited = [short_hist.get(h.strip().upper(), f"?{h}") for h in pick.cited_history]
        texts[item] = {
            "text": redact(clean_text(pick.explanation, 600)),  # a model may echo a key
            "cited": cited,
            "categories": list(pick.categories),
        }
    missing = [i for i in model_order if i not in texts]
    dropped.missing = len(missing)
    return order + missing, texts, dropped
