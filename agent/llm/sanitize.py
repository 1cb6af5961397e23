"""Catalog and chat text is untrusted: clean it before it enters a prompt."""

from __future__ import annotations

import re
import unicodedata

#: Phrases that try to steer the model. An item whose text matches keeps its model rank.
INJECTION_PATTERNS = re.compile(
    r"ignore (all |any )?(previous|prior|above) (instructions|prompts?)"
    r"|disregard .{0,20}instructions"
    r"|system prompt|rank (me|this|it) (first|#?1|higher|top)|you are now|new instructions"
    r"|reveal .{0,30}(prompt|instructions)|https?://|<\s*/?\s*data\s*>",
    re.IGNORECASE,
)


def clean_text(text: str | None, limit: int) -> str:
    """Strip control characters and markup delimiters, fold whitespace, cap length."""
    if not text:
        return ""
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in str(text))
    text = re.sub(r"<\s*/?\s*data\s*>", " ", text, flags=re.IGNORECASE)
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def looks_like_injection(*texts: str | None) -> bool:
    return any(t and INJECTION_PATTERNS.search(t) for t in texts)
