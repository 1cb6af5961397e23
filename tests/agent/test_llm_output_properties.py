"""Property-based tests of what the LLM tiers hand back (hypothesis).

Whatever a model writes, the recommender must end up with only candidate ids, each once,
and every candidate present. Two layers are tested:

* ``guard`` (every tier's answer goes through it) on arbitrary ``RerankOutput`` objects:
  unknown ids, duplicates, odd case and whitespace, invented history citations;
* the remote tier's parsing, end to end through the real OpenAI SDK and LangChain parser,
  against a loopback server that answers with arbitrary tool-call arguments or text (a
  stand-in: real servers do not produce these answers on demand). It either raises
  ``TierError`` (the chain then falls to a lower tier) or returns a ``RerankOutput``, which
  the guard then cleans.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.errors import TierError
from agent.llm.types import (
    PromptCandidate,
    PromptHistory,
    RankedPick,
    RerankOutput,
    RerankRequest,
)
from agent.pipeline.rerank import PromptIds, guard

N_CAND = 12
N_HIST = 5
SHORT_TO_ITEM = {f"C{j + 1}": 100 + j for j in range(N_CAND)}
SHORT_HIST = {f"H{j + 1}": str(500 + j) for j in range(N_HIST)}

_id = st.one_of(
    st.sampled_from(list(SHORT_TO_ITEM)),
    st.sampled_from(list(SHORT_TO_ITEM)).map(lambda s: f"  {s.lower()} "),
    st.sampled_from(["C0", "C13", "C999", "H1", "c", "", "C1.", "C-1", "1", "None", "C１"]),
    st.text(max_size=8),
)
_hist = st.one_of(st.sampled_from(list(SHORT_HIST)), st.text(max_size=5))
_pick = st.builds(
    RankedPick,
    id=_id,
    explanation=st.text(max_size=80),
    cited_history=st.lists(_hist, max_size=3),
    categories=st.lists(st.text(max_size=8), max_size=3),
)


def _check_guarded(output: RerankOutput, model_order: list[int]) -> None:
    guarded = guard(output, PromptIds(SHORT_TO_ITEM, SHORT_HIST), model_order)
    order, texts, dropped = guarded.order, guarded.texts, guarded.dropped
    candidates = set(SHORT_TO_ITEM.values())
    assert sorted(order) == sorted(model_order), "not a permutation of the candidates"
    assert set(texts) <= candidates
    assert order[: len(texts)] == list(texts), "LLM picks first, in the LLM's order"
    assert order[len(texts) :] == [i for i in model_order if i not in texts], "rest in model order"
    assert dropped.unknown + dropped.duplicate + len(texts) == len(output.ranking)
    assert dropped.missing == len(model_order) - len(texts)
    for t in texts.values():
        assert all(c in SHORT_HIST.values() or c.startswith("?") for c in t.cited)
        assert len(t.text) <= 600
    n = len(output.ranking)
    event("no picks" if n == 0 else "all picks kept" if len(texts) == n else "picks dropped")


@settings(max_examples=300, deadline=None)
@given(
    picks=st.lists(_pick, max_size=25),
    order=st.permutations(list(SHORT_TO_ITEM.values())),
)
def test_guard_keeps_only_candidates_once_each(picks, order):
    _check_guarded(RerankOutput(ranking=picks), list(order))


# ---- the remote tier's parsing, end to end ------------------------------------------------------
class _Answers:
    """A loopback OpenAI-compatible endpoint that replies with whatever ``body`` holds."""

    def __init__(self) -> None:
        self.body: bytes = b"{}"
        self.status = 200
        self.hits = 0
        answers = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answers.hits += 1
                try:
                    self.send_response(answers.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answers.body)))
                    self.end_headers()
                    self.wfile.write(answers.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture(scope="module")
def answers() -> Iterator[_Answers]:
    a = _Answers()
    yield a
    a.server.shutdown()
    a.server.server_close()


@pytest.fixture(scope="module")
def remote(answers):
    from agent.llm.remote import RemoteTier
    from agent.settings import Settings

    return RemoteTier(
        Settings(llm_base_url=answers.url, llm_api_key="sk-test-x", llm_model="m", llm_timeout_s=5)
    )


REQUEST = RerankRequest(
    history=tuple(
        PromptHistory(h, item, f"Seen {item}", ("Drama",), 4.0) for h, item in SHORT_HIST.items()
    ),
    candidates=tuple(
        PromptCandidate(s, str(i), f"Film {i}", 1990, ("Comedy",), "", 0.01, 0.5, 3.5)
        for s, i in SHORT_TO_ITEM.items()
    ),
    profile=(("Comedy", 0.6), ("Drama", 0.4)),
    k=5,
)

_json = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
_pick_json = st.fixed_dictionaries(
    {"id": _id},
    optional={
        "explanation": st.text(max_size=40),
        "cited_history": st.lists(_hist, max_size=3),
        "categories": st.lists(st.text(max_size=6), max_size=2),
    },
)
_bad_pick_json = st.fixed_dictionaries(
    {"id": st.one_of(_id, _json)},
    optional={"explanation": _json, "cited_history": _json, "categories": _json, "extra": _json},
)
_ranking = st.builds(lambda r: json.dumps({"ranking": r}), st.lists(_pick_json, max_size=15))
_arguments = st.one_of(
    _ranking,  # well-formed: any ids, any text
    _ranking,
    st.builds(lambda r: json.dumps({"ranking": r}), st.lists(_bad_pick_json, max_size=6)),
    st.builds(json.dumps, _json),  # valid JSON, wrong shape
    st.text(max_size=60),  # not JSON at all
    _ranking.map(lambda a: a[: len(a) // 2]),  # truncated
)


def _completion(arguments: str | None, content: str | None, name: str) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if arguments is not None:
        message["tool_calls"] = [
            {"id": "c1", "type": "function", "function": {"name": name, "arguments": arguments}}
        ]
    return json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    ).encode()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    arguments=st.one_of(st.none(), _arguments),
    content=st.one_of(st.none(), st.text(max_size=60)),
    name=st.sampled_from(["RerankOutput", "RerankOutput", "other_tool"]),
    raw=st.one_of(st.none(), st.binary(max_size=40)),
)
def test_remote_output_parses_or_fails_cleanly(answers, remote, arguments, content, name, raw):
    answers.status = 200
    answers.body = raw if raw is not None else _completion(arguments, content, name)
    try:
        answer = remote.rerank(REQUEST)
    except TierError as e:
        event("TierError")
        assert str(e) and "sk-test-x" not in str(e)
        return
    event("parsed")
    assert isinstance(answer.output, RerankOutput) and answer.output.ranking
    _check_guarded(answer.output, list(SHORT_TO_ITEM.values()))
