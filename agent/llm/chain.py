"""The tier chain: remote -> local -> model only, with circuit breakers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from agent.errors import TierError
from agent.llm.types import RerankRequest, RerankTier, TierAnswer
from agent.schema import LLM_TIERS, Fallback, Tier, TierChoice
from agent.settings import Settings


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
    """The first tier's answer (None: every tier failed or none was asked for)."""

    answer: TierAnswer | None
    tier: Tier
    prompt_id: str | None
    fallbacks: list[Fallback] = field(default_factory=list)
    seconds: float = 0.0


class TierChain:
    """Tries tiers from the requested one down; model-only (``none``) always answers.

    Tiers are built lazily: a remote client is created only when the remote tier is
    configured, the local model is loaded only when the local tier is first used. With
    ``settings.llm_shuffles`` > 1 the remote tier is asked with that many candidate orders per
    request (``agent.llm.shuffle``); the local tier is order-independent and asked once.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tiers: dict[Tier, RerankTier | None] = {}
        self.breakers = {name: CircuitBreaker() for name in LLM_TIERS}

    def tier(self, name: Tier) -> RerankTier | None:
        if name not in self._tiers:
            self._tiers[name] = self._build(name)
        return self._tiers[name]

    def set_tier(self, name: Tier | str, tier: RerankTier | None) -> None:
        """Install a tier object (tests register a stand-in model this way, or an embedding
        application its own client); None switches the tier off."""
        self._tiers[Tier(name)] = tier

    def reset_breakers(self) -> None:
        """Close every circuit breaker (a benchmark or test starting from a clean slate)."""
        for breaker in self.breakers.values():
            breaker.success()

    def _build(self, name: Tier) -> RerankTier | None:
        if name == Tier.REMOTE:
            if not self.settings.remote_configured:
                return None
            from agent.llm.remote import RemoteTier

            remote = RemoteTier(self.settings)
            if self.settings.llm_shuffles > 1:
                from agent.llm.shuffle import ShuffledTier

                return ShuffledTier(remote, self.settings.llm_shuffles)
            return remote
        from agent.llm.local import LocalTier, local_available

        return LocalTier(self.settings) if local_available(self.settings) else None

    def run(self, req: RerankRequest, start: TierChoice) -> ChainResult:
        """Ask the tiers from ``start`` down (``auto``: from the top) until one answers."""
        t0 = time.perf_counter()
        fallbacks: list[Fallback] = []
        if start == TierChoice.AUTO:
            names = LLM_TIERS
        elif start == TierChoice.NONE:
            names = ()
        else:
            names = LLM_TIERS[LLM_TIERS.index(Tier(start)) :]
        for name in names:
            tier = self.tier(name)
            if tier is None:
                if name == start:  # asked for by name: say why it was skipped
                    fallbacks.append(Fallback(tier=name, reason="not configured"))
                continue
            breaker = self.breakers[name]
            if not breaker.allow():
                fallbacks.append(Fallback(tier=name, reason="circuit open after repeated failures"))
                continue
            try:
                answer = tier.rerank(req)
            except TierError as e:
                breaker.failure()
                fallbacks.append(Fallback(tier=name, reason=str(e)))
                continue
            breaker.success()
            return ChainResult(answer, name, tier.prompt_id, fallbacks, time.perf_counter() - t0)
        return ChainResult(None, Tier.NONE, None, fallbacks, time.perf_counter() - t0)
