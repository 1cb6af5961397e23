"""The answer cache, and the clock of a request's stages.

The same request on the same history gets the same answer, fast.

Results are immutable (``RecommendResult`` is frozen and holds tuples), so the cache stores the
object it returned and hands out shallow copies that differ only in ``cached`` and
``latency_ms``: no deep copy on either side of a hit.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np

from agent.schema import RecommendRequest, RecommendResult
from mtrec.data.history import History

#: Answers kept per process.
CACHE_SIZE = 1024


def cache_key(req: RecommendRequest, hist: History, query: str | None, **context: Any) -> str:
    """A digest of everything an answer depends on.

    Args:
        req: The request (its user id and raw history are represented by ``hist``).
        hist: The history the request runs on (dataset events, feedback and raw entries).
        query: The cleaned query.
        context: What else shapes the answer: checkpoint, LLM model and weight, prompt ids.
    """
    payload = {
        "items": hist.items.tolist(),
        "values": np.nan_to_num(hist.values, nan=-1).tolist(),
        "events": hist.events.tolist(),
        "req": req.model_dump(exclude={"user_id", "history"}, mode="json"),
        "query": query,
        **context,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class AnswerCache:
    """A thread-safe LRU of results by ``cache_key``."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[str, RecommendResult] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, latency_ms: float) -> RecommendResult | None:
        """The stored answer marked ``cached``, with this lookup's latency; None on a miss."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            self._entries.move_to_end(key)
        return hit.model_copy(update={"cached": True, "latency_ms": {"total": latency_ms}})

    def put(self, key: str, result: RecommendResult) -> None:
        with self._lock:
            self._entries[key] = result
            self._entries.move_to_end(key)
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class StageClock:
    """Milliseconds per stage of one request (``latency_ms`` of a result)."""

    def __init__(self) -> None:
        self.t0 = self.last = time.perf_counter()
        self.ms: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        """Close the stage that just ran under the name ``stage``."""
        now = time.perf_counter()
        self.ms[stage] = round((now - self.last) * 1000, 2)
        self.last = now

    def total(self) -> float:
        return round((time.perf_counter() - self.t0) * 1000, 2)
