"""The tier chain: remote -> local -> model only, with circuit breakers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from agent.llm.types import RerankRequest, TierAnswer, TierError
from agent.schema import Fallback, TierChoice
from agent.settings import Settings

ORDER = ("remote", "local")


class Tier(Protocol):
    name: str
    model_name: str
    prompt_id: str

    def rerank(self, req: RerankRequest) -> TierAnswer: ...


@dataclass
class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; lets one try through after ``cooldown_s``."""

    threshold: int = 3
    cooldown_s: float = 30.0
    failures: int = 0
    opened_at: float | None = None

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        return time.monotonic() - self.opened_at >= self.cooldown_s  # half-open: one probe

    def success(self) -> None:
        self.failures, self.opened_at = 0, None

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = time.monotonic()


@dataclass
class ChainResult:
    answer: TierAnswer | None
    tier: str
    prompt_id: str | None
    fallbacks: list[Fallback] = field(default_factory=list)
    seconds: float = 0.0


class TierChain:
    """Tries tiers from the requested one down; model-only (``none``) always answers.

    Tiers are built lazily: a remote client is created only when the remote tier is
    configured, the local model is loaded only when the local tier is first used.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tiers: dict[str, Tier | None] = {}
        self.breakers = {name: CircuitBreaker() for name in ORDER}

    def tier(self, name: str) -> Tier | None:
        if name not in self._tiers:
            self._tiers[name] = self._build(name)
        return self._tiers[name]

    def set_tier(self, name: str, tier: Tier | None) -> None:
        """Install a tier object (tests, or an embedding application with its own client)."""
        self._tiers[name] = tier

    def _build(self, name: str) -> Tier | None:
        if name == "remote":
            if not self.settings.remote_configured:
                return None
            from agent.llm.remote import RemoteTier

            return RemoteTier(self.settings)
        from agent.llm.local import LocalTier, local_available

        return LocalTier(self.settings) if local_available(self.settings) else None

    def run(self, req: RerankRequest, start: TierChoice) -> ChainResult:
        t0 = time.perf_counter()
        fallbacks: list[Fallback] = []
        names = ORDER if start == "auto" else ORDER[ORDER.index(start) :] if start in ORDER else ()
        for name in names:
            tier = self.tier(name)
            if tier is None:
                if name == start:  # asked for by name: say why it was skipped
                    fallbacks.append(Fallback(tier=name, reason="not configured"))  # type: ignore[arg-type]
                continue
            breaker = self.breakers[name]
            if not breaker.allow():
                fallbacks.append(Fallback(tier=name, reason="circuit open after repeated failures"))  # type: ignore[arg-type]
                continue
            try:
                answer = tier.rerank(req)
            except TierError as e:
                breaker.failure()
                fallbacks.append(Fallback(tier=name, reason=str(e)))  # type: ignore[arg-type]
                continue
            breaker.success()
            return ChainResult(answer, name, tier.prompt_id, fallbacks, time.perf_counter() - t0)
        return ChainResult(None, "none", None, fallbacks, time.perf_counter() - t0)
