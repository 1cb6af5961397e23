"""What one chat message asks for, whichever parser read it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agent.schema import Range


class Intent(BaseModel):
    """What one chat message asks for. Positions are 1-based in the last list shown;
    0 means "that one / it" (the item referred to last), -1 the last item of the list."""

    model_config = ConfigDict(extra="forbid")

    query: str | None = Field(
        default=None, description="Free-text description of what is wanted (topic, mood, plot)."
    )
    categories: list[str] = Field(
        default_factory=list, description="Categories to keep; replaces earlier ones."
    )
    exclude_categories: list[str] = Field(default_factory=list, description="Categories to drop.")
    values: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Attribute values to keep, by attribute: {'author': ['Terry Pratchett']}.",
    )
    exclude_values: dict[str, list[str]] = Field(
        default_factory=dict, description="Attribute values to drop: {'publisher': ['Penguin']}."
    )
    ranges: dict[str, Range] = Field(
        default_factory=dict,
        description="Bounds of numeric attributes other than the year: {'price': {'max': 30}}.",
    )
    same_as: dict[str, int] = Field(
        default_factory=dict,
        description="Keep the attribute value of a shown item: {'author': 2} = by the author "
        "of #2 (0 = that one).",
    )
    not_same_as: dict[str, int] = Field(
        default_factory=dict,
        description="Drop the attribute value of a shown item: 'not from that publisher' = "
        "{'publisher': 0}.",
    )
    year_min: int | None = Field(default=None, description="Earliest release year.")
    year_max: int | None = Field(default=None, description="Latest release year.")
    clear_years: bool = Field(default=False, description="Drop the year range ('any year').")
    more_like: int | None = Field(
        default=None, description="Position of a shown item to find more like ('like #3')."
    )
    more_like_title: str | None = Field(
        default=None, description="Title of a catalog item to find more like."
    )
    reject: list[int] = Field(
        default_factory=list, description="Positions to remove from the list ('not that one')."
    )
    seen: list[int] = Field(default_factory=list, description="Positions the user has seen.")
    like: list[int] = Field(default_factory=list, description="Positions the user likes.")
    dislike: list[int] = Field(default_factory=list, description="Positions the user dislikes.")
    show_again: bool = Field(default=False, description="Allow items that were already shown.")
    start_over: bool = Field(default=False, description="Forget all constraints of the chat.")

    def changes_constraints(self) -> bool:
        return bool(
            self.query
            or self.categories
            or self.exclude_categories
            or self.values
            or self.exclude_values
            or self.ranges
            or self.same_as
            or self.not_same_as
            or self.year_min is not None
            or self.year_max is not None
            or self.clear_years
            or self.more_like is not None
            or self.more_like_title
            or self.start_over
            or self.show_again
        )

    def has_item_actions(self) -> bool:
        return bool(self.reject or self.seen or self.like or self.dislike)
