"""One typed settings object, read from the workspace config file and the environment.

Precedence (highest first): explicit arguments, environment (``MTREC_*``; the remote LLM
also follows the OpenAI SDK's ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``), the workspace's
``mtrec.toml``, then the defaults stated here.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from agent.errors import ConfigFileError, remember_secret
from agent.schema import Tier, TierChoice

CONFIG_FILE = "mtrec.toml"
DEFAULT_WORKSPACE = "mtrec-workspace"


def default_workspace() -> Path:
    return Path(os.environ.get("MTREC_WORKSPACE", DEFAULT_WORKSPACE))


class CalibratedWeight(BaseModel):
    """One ``[calibration."<tier>:<model>"]`` table: the weight, and how it was measured
    (``mtrec calibrate`` also writes the sample, the gain and its interval)."""

    model_config = ConfigDict(extra="allow")

    weight: float = Field(ge=0.0, le=1.0)


def calibration_key(tier: Tier | str, model_name: str) -> str:
    """The key of a tier and model's calibrated weight, e.g. ``"local:gemma.gguf"``."""
    return f"{Tier(tier).value}:{model_name}"


class Settings(BaseSettings):
    """Runtime settings of the agent.

    Attributes:
        embedding_model: sentence-transformers name or path; None = bundled all-MiniLM-L6-v2.
        chroma_url: A Chroma server URL; None = embedded Chroma inside the workspace.
        llm_base_url: OpenAI-compatible endpoint of the remote tier (None = OpenAI's default
            when an API key is set, else the remote tier is not configured).
        llm_api_key: Its API key (never logged or printed).
        llm_model: Model name at that endpoint.
        llm_timeout_s: Per-request timeout of the remote tier.
        llm_max_tokens: Generation cap of each LLM call.
        local_model_path: GGUF file of the local tier; None = Gemma 3 270M from its package.
        local_explain_top: Items of the local tier's ranking that get a generated reason (the
            rest get template explanations; each reason costs ~0.4 s on 2 CPU cores).
        local_reason_tokens: Generation cap of one local reason.
        llm_weight: Weight of the LLM's order in the final rank fusion (0 = model only), for a
            tier with neither its own weight nor a calibration (see ``weight_for``).
        llm_weight_remote: The remote tier's weight (overrides any calibration).
        llm_weight_local: The local tier's weight (overrides any calibration).
        calibration: Weights measured by ``mtrec calibrate``, keyed ``"<tier>:<model name>"``
            (``[calibration."remote:gpt-4o-mini"]`` in ``mtrec.toml``, with ``weight = 0.3``
            and how it was measured), so a weight measured for one model never serves another.
        llm_shuffles: Candidate orders per request for chat-model tiers (the remote tier): the
            request is asked ``m`` times with the candidates shuffled differently and the ``m``
            rankings are fused by reciprocal rank, so no candidate gains from its position.
            The local tier scores each title independently of the order and is asked once.
        fuse_like: Weight of the like head's logit in the model's fused score; None = the
            weight chosen on validation at training time (``MTRecConfig.fusion``).
        fuse_rating: Weight of the predicted rating (minus 3) in the model's fused score;
            None = the weight chosen on validation.
        candidates: Candidates shown to the reranker.
        llm: Default tier choice.
        profile: Domain profile fields (``[profile]`` in ``mtrec.toml``) that override the
            profile stored at ``mtrec index`` time (see ``mtrec.data.profile``).
    """

    model_config = SettingsConfigDict(env_prefix="MTREC_", extra="ignore")

    embedding_model: str | None = None
    chroma_url: str | None = None
    llm_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MTREC_LLM_BASE_URL", "OPENAI_BASE_URL", "llm_base_url"),
    )
    llm_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("MTREC_LLM_API_KEY", "OPENAI_API_KEY", "llm_api_key"),
    )
    llm_model: str = "gpt-4o-mini"
    llm_timeout_s: float = 20.0
    llm_max_tokens: int = 600
    local_model_path: str | None = None
    local_explain_top: int = Field(default=3, ge=0)
    local_reason_tokens: int = Field(default=16, ge=1)
    # 0.1: the largest weight at which the local tier did not lower NDCG@10 (BENCHMARKS.md).
    llm_weight: float = Field(default=0.1, ge=0.0, le=1.0)
    llm_weight_remote: float | None = Field(default=None, ge=0.0, le=1.0)
    llm_weight_local: float | None = Field(default=None, ge=0.0, le=1.0)
    calibration: dict[str, CalibratedWeight] = Field(default_factory=dict)
    llm_shuffles: int = Field(default=1, ge=1, le=10)
    fuse_like: float | None = None
    fuse_rating: float | None = None
    candidates: int = 30
    llm: TierChoice = TierChoice.AUTO
    profile: dict[str, Any] = Field(default_factory=dict)

    @field_validator("llm_api_key")
    @classmethod
    def _remember_secret(cls, v: SecretStr | None) -> SecretStr | None:
        """Every key ever loaded is known to ``agent.errors.redact`` (env or config file)."""
        if v is not None:
            remember_secret(v.get_secret_value())
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = _CURRENT_CONFIG.get("path")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path is not None and Path(toml_path).is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    @property
    def remote_configured(self) -> bool:
        return self.llm_base_url is not None or self.llm_api_key is not None

    def weight_for(self, tier: Tier | str, model_name: str | None) -> float:
        """The LLM weight of a tier's answer: ``llm_weight_<tier>`` when set, else the weight
        ``mtrec calibrate`` measured for this tier and model name, else ``llm_weight``."""
        tier = Tier(tier)
        own = {Tier.REMOTE: self.llm_weight_remote, Tier.LOCAL: self.llm_weight_local}.get(tier)
        if own is not None:
            return own
        calibrated = self.calibration.get(calibration_key(tier, model_name or ""))
        return calibrated.weight if calibrated is not None else self.llm_weight

    def fusion_context(self) -> dict[str, object]:
        """Every setting that changes how an LLM answer is fused (part of the cache key)."""
        return {
            "weight": self.llm_weight,
            "remote": self.llm_weight_remote,
            "local": self.llm_weight_local,
            "calibration": {k: v.weight for k, v in sorted(self.calibration.items())},
            "shuffles": self.llm_shuffles,
        }


_CURRENT_CONFIG: dict[str, Path | None] = {"path": None}


def load_settings(workspace: Path | None = None, **overrides: object) -> Settings:
    """Settings for a workspace: ``WORKSPACE/mtrec.toml``, then the environment, then overrides.

    A config file that holds an API key must be readable by its owner only (like ~/.ssh).

    Raises:
        ConfigFileError: the file holds a key but is group/world readable.
    """
    path = (workspace / CONFIG_FILE) if workspace else None
    if path is not None and path.is_file():
        mode = path.stat().st_mode
        if "api_key" in path.read_text(errors="replace") and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigFileError(
                f"{path} holds an API key but is readable by others; run `chmod 600 {path}`"
            )
    _CURRENT_CONFIG["path"] = path
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    finally:
        _CURRENT_CONFIG["path"] = None
