"""Every model and training default, in one typed object saved beside each checkpoint."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# The recency decays of the item-neighbour channel that selection tries, in order (ties keep
# the earlier; 1 first = plain ItemKNN). On ml-100k loo, seed 2020, validation NDCG@10 with
# the best weight per decay was 0.1192 (1), 0.1220 (0.9), 0.1270 (0.8), 0.1263 (0.6), 0.1224
# (0.3; 0.4 was not probed); on random 1 won (0.2387 vs <= 0.2234).
NEIGHBOUR_DECAYS = (1.0, 0.9, 0.8, 0.6, 0.4)


class ModelConfig(BaseModel):
    """Architecture of the multi-task model.

    Attributes:
        dim: Width of item vectors, the user state and the interest vector.
        max_history: Most recent interactions the user encoder reads.
        encoder: ``attention`` (causal self-attention, SASRec-like) or ``gru``.
        layers: Encoder layers.
        heads: Attention heads.
        dropout: Dropout in the encoder and towers.
        mixture: ``mmoe`` (multi-gate mixture of experts), ``ple`` (progressive layered
            extraction, one level) or ``shared`` (shared-bottom ablation).
        experts: Shared experts (MMoE/PLE); PLE adds ``task_experts`` per task.
        task_experts: Task-specific experts per task under PLE.
        text_dim: Width of the item text embeddings fed to the item tower (0 = no text).
        use_item_id: Whether the item tower has a learned id embedding (off = content only).
        whole_history: Whether the whole-history (set) channel also reads the interactions
            before the last ``max_history`` (off: it reads the sequence window only).
        set_dropout: Share of interactions the whole-history channel drops while training.
        seen_bias: A learned engagement-logit offset for items already in the history.
        neighbours: Co-occurrence neighbours kept per item in the item-neighbour memory
            (``mtrec.model.neighbours``; 0 = no memory). Its weight in the engagement score
            is ``FusionConfig.neighbour``, chosen on validation.
    """

    model_config = ConfigDict(extra="forbid")

    dim: int = 64
    max_history: int = 50
    encoder: Literal["attention", "gru"] = "attention"
    layers: int = 2
    heads: int = 2
    dropout: float = 0.3
    mixture: Literal["mmoe", "ple", "shared"] = "mmoe"
    experts: int = 4
    task_experts: int = 1
    text_dim: int = 384
    use_item_id: bool = True
    whole_history: bool = True
    set_dropout: float = 0.0
    seen_bias: bool = True
    neighbours: int = 100


class TrainConfig(BaseModel):
    """Optimisation and loss settings.

    Attributes:
        epochs: Upper bound on epochs (early stopping usually ends sooner).
        batch_size: Sequences per batch.
        lr: Adam learning rate.
        weight_decay: AdamW weight decay.
        patience: Epochs without a better validation NDCG@10 before stopping.
        future_window: The engagement target at step t is the next ``future_window``
            items (1 = classic next-item). A wider window also teaches which items a user
            will have later, not only next, which is what random held-out splits ask.
        window_stride: Steps between the ends of a user's training windows (0 = half of
            ``max_history``).
        supervise_once: Each interaction is a supervised position in one window only (the
            one where it has the most context), instead of in every window that holds it.
        objective: ``sequence`` trains on causal windows (the next ``future_window`` items
            after each position); ``set`` on set-completion samples (each epoch, a random part
            of each user's history as input, the rest as targets); ``both`` on both.
        set_keep: Share of a user's interactions kept as input in a set-completion sample.
        set_max_targets: Held-out items per set-completion sample (a random subset beyond).
        set_repeats: Set-completion samples per user and epoch (each a fresh random split).
        aux_targets: Which targets train the like and rating heads: ``next`` (the next item
            of each position) or ``all`` (every target item with a label).
        history_order: ``time`` trains on time-ordered histories (next items); ``shuffled``
            re-shuffles each user's training items every epoch, so the targets after each
            position are a random subset of the rest of the history: set completion, which is
            what a random held-out split (RecBole's order RO) asks for.
        task_weights: Loss weights of engagement, like, rating, category.
        uncertainty_weighting: Learn task weights by homoscedastic uncertainty (Kendall et al.).
        like_threshold: A rating at or above this counts as a like.
        full_softmax_max_items: Above this catalog size, the engagement loss uses a sampled
            softmax over the batch's targets plus ``sampled_negatives`` uniform items.
        sampled_negatives: Uniform negatives for the sampled softmax.
        seed: Seed for initialisation, batching and dropout.
        device: ``cpu``, ``cuda`` or ``auto``.
        threads: Torch CPU threads; 0 = follow the cores other processes leave free,
            re-measured every 2 s (``mtrec.threads.AdaptiveThreads``).
        select_fusion: After training, choose the fusion weights (``MTRecConfig.fusion``) on
            the validation rows (needs a split).
        neighbour_decays: The recency decays of the item-neighbour channel that selection
            tries (``FusionConfig.neighbour_decay``; ties keep the earlier). The ``random``
            protocol tries only 1: items are held out at random, so the latest ones are no
            likelier targets than the others.
    """

    model_config = ConfigDict(extra="forbid")

    epochs: int = 20
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 4
    future_window: int = 8
    window_stride: int = 0
    supervise_once: bool = False
    objective: Literal["sequence", "set", "both"] = "sequence"
    set_keep: float = 0.5
    set_max_targets: int = 128
    set_repeats: int = 1
    aux_targets: Literal["next", "all"] = "next"
    history_order: Literal["time", "shuffled"] = "time"
    task_weights: dict[str, float] = Field(
        default_factory=lambda: {"engagement": 1.0, "like": 0.2, "rating": 0.2, "category": 0.2}
    )
    uncertainty_weighting: bool = False
    like_threshold: float = 4.0
    full_softmax_max_items: int = 20_000
    sampled_negatives: int = 2048
    seed: int = 2020
    device: Literal["cpu", "cuda", "auto"] = "auto"
    threads: int = 0
    select_fusion: bool = True
    neighbour_decays: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field(
        default_factory=lambda: list(NEIGHBOUR_DECAYS), min_length=1
    )


class FusionConfig(BaseModel):
    """How the task heads combine into one ranking score, chosen on validation after training.

    ``score = engagement logit + like * logit(p_like) + rating * (predicted rating - 3)``
    (the agent's ``fused_model_score``; the constant 3 shifts every item alike), where the
    engagement logit is the network's plus ``neighbour`` times the item-neighbour score,
    standardised per user to the spread of that user's network logits.

    Attributes:
        neighbour: Weight of the item-neighbour memory in the engagement logit (0 = the
            network alone), chosen on validation NDCG@10 against all targets.
        neighbour_decay: Recency decay of the item-neighbour score: a history item counts
            ``neighbour_decay ** age`` (age 0 = the latest interaction; 1 = every item alike,
            as ItemKNN), chosen with ``neighbour``.
        like: Weight of the like head's logit.
        rating: Weight of the predicted rating.
        utility: What the weights were chosen to maximise.
        selected_on: Where they were chosen (never test); empty = not selected (the defaults).
        valid: The validation figures behind the choice (engagement alone and fused).
    """

    model_config = ConfigDict(extra="forbid")

    neighbour: float = 0.0
    neighbour_decay: float = Field(default=1.0, gt=0.0, le=1.0)
    like: float = 0.0
    rating: float = 0.0
    utility: str = ""
    selected_on: str = ""
    valid: dict[str, float] = Field(default_factory=dict)


class MTRecConfig(BaseModel):
    """The full configuration: model, training, and the evaluation protocol it was trained for."""

    model_config = ConfigDict(extra="forbid")

    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    protocol: Literal["loo", "random"] = "loo"
    fusion: FusionConfig = Field(default_factory=FusionConfig)

    @classmethod
    def for_protocol(
        cls, protocol: str, like_threshold: float | None = None, **overrides: object
    ) -> MTRecConfig:
        """Defaults for a protocol. ``random`` holds out random items: the model reads a longer
        history, in shuffled order, and learns to complete the set rather than the sequence.

        ``like_threshold`` is the dataset's own (``ds.profile.like_threshold``: 4 on a 1-5
        scale, 8 on Book-Crossing's 1-10); None keeps 4.0."""
        cfg = cls(protocol=protocol)  # type: ignore[arg-type]
        if like_threshold is not None:
            cfg.train.like_threshold = float(like_threshold)
        if protocol == "random":
            cfg.train.future_window = 32
            cfg.train.history_order = "shuffled"
            cfg.train.neighbour_decays = [1.0]
            # Held-out items are spread over the whole history, so read more of it.
            cfg.model.max_history = 200
        return cfg.model_copy(update=overrides)
