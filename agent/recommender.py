"""The Python API: ``Recommender.load(workspace).recommend(...)``.

A facade over the request pipeline (``agent.pipeline``): ``run`` reads as the script of its
stages. The user encoder runs once per request; every stage works from that one user state.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.feedback import FeedbackStore, open_feedback_store
from agent.llm.chain import TierChain
from agent.llm.prompting import prompt_version
from agent.llm.sanitize import clean_text
from agent.pipeline.cache import AnswerCache, StageClock, cache_key
from agent.pipeline.candidates import find_candidates
from agent.pipeline.catalog import Catalog, CoLikes
from agent.pipeline.evidence import EVIDENCE_WINDOW
from agent.pipeline.explain import ExplainContext, explain_items, explain_one, item_evidence
from agent.pipeline.history import history_from_entries, join_histories
from agent.pipeline.rerank import (
    PROMPT_HISTORY,
    RerankOutcome,
    build_request,
    query_for_llm,
    rerank,
    shuffle_seed,
)
from agent.pipeline.scoring import (
    FusionWeights,
    ScoredCandidates,
    category_profile,
    score_candidates,
)
from agent.schema import (
    Feedback,
    Filters,
    HistoryEntry,
    RecommendedItem,
    RecommendRequest,
    RecommendResult,
    Tier,
    TierChoice,
    hit_record,
)
from agent.settings import Settings, load_settings
from agent.workspace import Workspace
from mtrec.data.history import History, user_histories
from mtrec.model.multitask import MultiTaskModel

#: Longest query text (characters) after cleaning.
MAX_QUERY_CHARS = 500


class Recommender:
    """Recommendations with LLM reranking and grounded explanations.

    Build with ``Recommender.load(workspace)``. Thread-safe for concurrent ``recommend`` calls
    (the model is read-only at inference; the local LLM serialises its own calls).

    Args:
        workspace: An indexed workspace with a trained model.
        model: The multi-task model.
        settings: Settings (LLM endpoints, weights, candidate count).
        feedback: The feedback store, when one exists (else created on the first event).
    """

    def __init__(
        self,
        workspace: Workspace,
        model: MultiTaskModel,
        settings: Settings,
        feedback: FeedbackStore | None = None,
    ) -> None:
        self.workspace = workspace
        self.model = model
        self.settings = settings
        self.feedback = feedback
        if model.item_ids != workspace.dataset.item_ids:
            raise ValueError(
                "the model was trained on a different catalog than the workspace's dataset; "
                "run `mtrec train` again"
            )
        self.catalog = Catalog.build(workspace.dataset)
        self.co_likes = CoLikes(workspace.dataset)
        self.histories = user_histories(workspace.dataset)
        self.chain = TierChain(settings)
        self.cache = AnswerCache()
        self.weights = FusionWeights.of(model.config.fusion, settings)
        self._index: Any = None
        self._lock = threading.Lock()  # creation of the feedback store (threaded servers)

    @classmethod
    def load(cls, workspace: str | Path | None = None, **settings: Any) -> Recommender:
        """Load the workspace's dataset, model and settings (keyword overrides win)."""
        ws = Workspace(workspace)
        ws.settings = load_settings(ws.root, **settings)
        model = MultiTaskModel.load(ws.model_dir).freeze()  # serving: no text buffer
        return cls(ws, model, ws.settings, open_feedback_store(ws, create=False))

    @property
    def ds(self) -> Any:
        """The workspace's dataset (``mtrec.data.Dataset``)."""
        return self.workspace.dataset

    @property
    def index(self) -> Any:
        """The item index (``retrieval.ItemIndex``), opened on first use."""
        if self._index is None:
            self._index = self.workspace.index()
        return self._index

    @property
    def checkpoint(self) -> str:
        """Which trained model answers (the checkpoint directory)."""
        return str(self.model.metrics.get("checkpoint", ""))

    def feedback_store(self) -> FeedbackStore:
        """The feedback store, created and attached on first use; from then on every request
        includes the stored events of its user."""
        if self.feedback is None:
            with self._lock:
                if self.feedback is None:
                    self.feedback = open_feedback_store(self.workspace, create=True)
        assert self.feedback is not None
        return self.feedback

    # ---- histories ----------------------------------------------------------------------------
    def user_history(self, user_id: str) -> History:
        """A known user's history: the dataset's events plus stored feedback, oldest first.

        Raises:
            KeyError: unknown user id (and no feedback stored for it).
        """
        base = self.histories[self.ds.user_index(user_id)] if self.ds.has_user(user_id) else None
        extra = self.feedback.history(user_id, self.ds) if self.feedback else None
        hist = join_histories(base, extra if extra is not None and len(extra) else None)
        if hist is None:
            raise KeyError(f"unknown user id {user_id!r}; pass a history for a new user")
        return hist

    def history_from(self, entries: Sequence[HistoryEntry | str | int]) -> History:
        """A history from item ids (oldest first), with optional ratings or events.

        Raises:
            KeyError: an item id is not in the catalog (named in the message).
        """
        return history_from_entries(self.ds, entries)

    def request_history(
        self, user_id: str | None, entries: Sequence[HistoryEntry | str | int] | None
    ) -> History:
        """What a request runs on: a known user's history, then the raw ``entries``.

        Raises:
            ValueError: neither is given. KeyError: an unknown user or item id.
        """
        if user_id is None and entries is None:
            raise ValueError("give a user_id or a history")
        base = self.user_history(user_id) if user_id is not None else None
        raw = self.history_from(entries) if entries is not None else None
        hist = join_histories(base, raw)
        assert hist is not None
        return hist

    def record_feedback(
        self, user_id: str, item_id: str, event: Feedback | str, event_id: str | None = None
    ) -> int:
        """Append a durable feedback event; the user's very next request includes it.

        ``event_id`` (a client's id for the event) makes a repeated call store nothing new.

        Returns:
            The event's id in the store.

        Raises:
            KeyError: unknown item id. ValueError: unknown event or empty user id.
        """
        if not str(user_id).strip():
            raise ValueError("user_id must not be empty")
        self.ds.item_index(item_id)
        store = self.feedback_store()
        return store.add(str(user_id), str(item_id), Feedback.parse(event), event_id=event_id)

    # ---- the pipeline ---------------------------------------------------------------------------
    def recommend(
        self,
        user_id: str | None = None,
        history: Sequence[HistoryEntry | str | int] | None = None,
        query: str | None = None,
        k: int = 10,
        filters: Filters | dict[str, Any] | None = None,
        llm: TierChoice | str | None = None,
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
            filters: Categories to keep or drop, and conditions on any filterable attribute
                (numeric ranges such as year or price, exact values such as author or brand).
            llm: ``auto`` (default from settings), ``remote``, ``local`` or ``none``.
            explain: Write explanations.
            language: Language of the explanations (LLM tiers; templates are English).
            exclude: Item ids never to return.

        Returns:
            A ``RecommendResult`` (same schema for every tier; immutable).

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
            llm=llm or self.settings.llm,
            explain=explain,
            language=language,
            exclude=list(exclude),
        )
        return self.run(req)

    def run(self, req: RecommendRequest) -> RecommendResult:
        """``recommend`` for a validated request object (the HTTP service calls this)."""
        clock = StageClock()
        hist = self.request_history(req.user_id, req.history)
        query = clean_text(req.query, MAX_QUERY_CHARS) if req.query else None
        key = cache_key(req, hist, query, **self._answer_context())
        hit = self.cache.get(key, clock.total())
        if hit is not None:
            return hit
        head = {"user_id": req.user_id, "query": query, "history_size": len(hist)}

        state = self.model.user_state([hist])  # the user encoder's one pass
        logits = self.model.engagement_logits(state)
        query_vector = self.index.embed_text(query) if query else None
        n = max(self.settings.candidates, req.k)
        cands = find_candidates(
            self.catalog, logits[0].cpu().numpy(), hist, req.filters, req.exclude, n,
            self.index, query_vector,
        )  # fmt: skip
        clock.lap("candidates")
        if not len(cands):
            latency = {**clock.ms, "total": clock.total()}
            notes = ("no item matches the filters",)
            return RecommendResult(
                items=(), tier=Tier.NONE, notes=notes, latency_ms=latency, **head
            )

        tasks = self.model.task_scores(state, cands.items, logits)
        similarity = None
        if query_vector is not None:
            similarity = self.index.get_embeddings(self._ids(cands.items)) @ query_vector
        scored = score_candidates(cands.items, tasks, self.weights, similarity)
        interest = category_profile(self.model.category_interest(state), self.ds.categories)
        clock.lap("scores")

        ctx = ExplainContext.build(self.catalog, hist, cands.items, query)
        # The leave-one-out costs a user-encoder pass per history item tried: a model-only
        # answer without explanations skips it; an LLM tier measures what its prompt shows.
        window = PROMPT_HISTORY if req.llm != TierChoice.NONE else EVIDENCE_WINDOW * req.explain
        evidence = item_evidence(
            ctx, self.model, cands.items.tolist(), scored, cands.sources, self.weights,
            self.co_likes, window,
        )  # fmt: skip
        clock.lap("evidence")

        notes: list[str] = []
        support = {i: tuple(c.item for c in ev.contributions) for i, ev in evidence.items()}
        outcome = self._rerank(req, hist, scored, interest, query, notes, support)
        clock.lap("llm")

        explained = explain_items(ctx, req.k, cands, scored, outcome, evidence, req.explain)
        clock.lap("explain")
        result = RecommendResult(
            items=explained.items,
            tier=outcome.tier,
            prompt_version=outcome.prompt_id,
            llm_model=outcome.llm_model,
            tokens_in=outcome.tokens_in,
            tokens_out=outcome.tokens_out,
            dropped=outcome.dropped.model_copy(update={"ungrounded": explained.ungrounded}),
            fallbacks=outcome.fallbacks,
            category_interest={c: round(p, 4) for c, p in interest},
            notes=tuple(notes),
            diagnostics=explained.diagnostics,
            model_order=self._ids(scored.order),
            llm_order=self._ids(outcome.llm_order),
            llm_weight=outcome.llm_weight,
            latency_ms={**clock.ms, "total": clock.total()},
            **head,
        )
        self.cache.put(key, result)
        return result

    def _rerank(
        self,
        req: RecommendRequest,
        hist: History,
        scored: ScoredCandidates,
        interest: list[tuple[str, float]],
        query: str | None,
        notes: list[str],
        support: dict[int, tuple[int, ...]],
    ) -> RerankOutcome:
        """The LLM stage, or the model's order when the request asks for no LLM."""
        if req.llm == TierChoice.NONE:
            return RerankOutcome(Tier.NONE, scored.order, scored.score)
        query, note = query_for_llm(query)
        notes.extend(note)
        seed = shuffle_seed(req.user_id, hist)
        request, ids = build_request(
            self.catalog, hist, scored, interest, req.k, query, req.language, seed, support
        )
        weight_for, suspicious = self.settings.weight_for, self.catalog.suspicious
        return rerank(self.chain, request, ids, scored, req.llm, weight_for, suspicious)

    def _answer_context(self) -> dict[str, Any]:
        return {
            "model": self.checkpoint,
            "llm_model": self.settings.llm_model,
            "fusion": self.settings.fusion_context(),
            "prompts": [prompt_version(local=False), prompt_version(local=True)],
        }

    def _ids(self, dense: Sequence[int] | np.ndarray) -> tuple[str, ...]:
        items = self.ds.items
        return tuple(items[int(i)].item_id for i in dense)

    # ---- other API ----------------------------------------------------------------------------
    def similar(self, item_id: str, k: int = 10, filters: Filters | None = None) -> list[dict]:
        """Content-similar items from the Chroma index (title, year, categories, similarity)."""
        self.ds.item_index(item_id)  # a clear KeyError for an unknown id
        hits = self.index.similar(item_id, k, self.catalog.item_filter(filters))
        return [hit_record(h) for h in hits]

    def explain(self, user_id: str, item_id: str) -> RecommendedItem:
        """Scores, evidence and a template explanation of one item for one user (seen or not)."""
        hist = self.user_history(user_id)
        return explain_one(
            self.catalog, self.model, hist, self.ds.item_index(item_id), self.weights
        )
