"""The rule-based intent parser: chat works with no LLM at all."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from agent.chat.intent import Intent
from agent.chat.vocabulary import DECADE_WORDS, GENRE_SYNONYMS, ORDINAL_WORDS, STOPWORDS

_THING = r"(?:\s+(?:one|item|film|movie|title|pick|show|entry))?"
#: A reference to an item of the last list: an ordinal, "#3", "number 3", or "that one / it".
_REF = (
    r"(?:the\s+)?(?:(?P<word>first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth"
    r"|last|top)" + _THING + r"|(?P<num>\d{1,2})(?:st|nd|rd|th)" + _THING
    + r"|#\s*(?P<hash>\d{1,2})|(?:number|no\.|nr\.?|item)\s*(?P<numw>\d{1,2})(?!\d)"
    r"|(?P<that>(?:that|this)" + _THING + r"|it)(?![\w']))"
)  # fmt: skip
_BARE_NUM = r"(?P<bare>\d{1,2})(?![\w'’])"


def _ref_pattern(prefix: str, bare: bool = False) -> re.Pattern[str]:
    """``prefix`` followed by one reference, or several joined by commas/"and"."""
    ref = f"(?:{_REF}|{_BARE_NUM})" if bare else _REF
    refs = rf"{ref}(?:\s*(?:,|and|&)\s*{ref})*"
    # Named groups may not repeat: the list is parsed again with ``_REF_ITER`` below.
    refs = re.sub(r"\(\?P<\w+>", "(?:", refs)
    return re.compile(rf"{prefix}\s*(?P<refs>{refs})", re.IGNORECASE)


_REF_ITER = re.compile(rf"{_REF}|{_BARE_NUM}", re.IGNORECASE)

_START_OVER = re.compile(
    r"\b(?:start(?:ing)?\s+(?:over|again|afresh|fresh)|reset|restart|clear\s+(?:all|everything"
    r"|the\s+filters|filters)|forget\s+(?:it|everything|all|that)|new\s+search|from\s+scratch)\b",
    re.IGNORECASE,
)
_SHOW_AGAIN = re.compile(
    r"\b(?:show\s+(?:them|those|it|everything|all)\s+again|show\s+again|again|repeat"
    r"|including\s+(?:the\s+)?(?:ones|those)\s+(?:you\s+)?(?:already\s+)?shown)\b",
    re.IGNORECASE,
)
_CMD = _ref_pattern(r"^\s*/?(?P<cmd>like|dislike|seen|reject|remove)\b", bare=True)
_SEEN = _ref_pattern(
    r"\b(?:i\s*(?:'ve|’ve|\s+have)?\s*(?:already\s+)?(?:seen|watched)|already\s+(?:seen|watched)"
    r"|(?:have|has)\s+(?:already\s+)?(?:seen|watched))"
)
_SEEN_TAIL = re.compile(
    rf"{_REF.replace('(?P<', '(?P<t_')}\s*(?:,\s*)?(?:i\s*(?:'ve|’ve|\s+have)\s*)?"
    r"(?:already\s+)?(?:seen|watched)(?:\s+(?:it|that))?(?:\s+already)?\b",
    re.IGNORECASE,
)
_DISLIKE = _ref_pattern(
    r"\b(?:i\s+(?:really\s+)?(?:don'?t|don’t|do\s+not|didn'?t|didn’t|did\s+not)\s+(?:like|enjoy)"
    r"|i\s+(?:really\s+)?(?:dislike|disliked|hate|hated))"
)
_LIKE = _ref_pattern(r"\bi\s+(?:really\s+)?(?:like|liked|love|loved|enjoyed|adore)")
_REJECT = _ref_pattern(
    r"\b(?:not|no|remove|drop|skip|hide|lose|exclude|without|get\s+rid\s+of)", bare=False
)
_REJECT_BARE = _ref_pattern(r"\b(?:remove|drop|skip|hide)", bare=True)
# "more like X" needs the leading word: a bare "I'd like it" is not a reference.
_MORE = r"(?:more|something|anything|others?|films?|movies?|ones?|stuff|titles?)"
_MORE_LIKE = _ref_pattern(
    rf"\b(?:{_MORE}\s+(?:just\s+|a\s+bit\s+)?like|(?:{_MORE}\s+)?similar\s+to)"
)
_MORE_LIKE_TEXT = re.compile(
    rf"\b(?:{_MORE}\s+(?:just\s+|a\s+bit\s+)?like|(?:{_MORE}\s+)?similar\s+to)"
    r"\s+(?P<rest>.+)$",
    re.IGNORECASE,
)

_YEAR = r"((?:18|19|20)\d\d)"
_RANGE = re.compile(
    rf"\b(?:between\s+|from\s+)?{_YEAR}\s*(?:-|–|—|to|and|until|through|thru|till)\s*{_YEAR}\b",
    re.IGNORECASE,
)
_DECADE = re.compile(
    r"(?:\b(?:the\s+)?(?P<part>early|mid|late)[\s-]+)?(?:\bthe\s+)?(?:['’])?"
    r"\b(?P<dec>(?:18|19|20)?\d0)['’]?s\b",
    re.IGNORECASE,
)
_DECADE_WORD = re.compile(
    r"(?:\b(?P<part>early|mid|late)[\s-]+)?\b(?:the\s+)?(?P<word>"
    + "|".join(DECADE_WORDS)
    + r")\b",
    re.IGNORECASE,
)
_AFTER = re.compile(
    rf"\b(?P<op>after|since|newer\s+than|later\s+than|post|from|starting(?:\s+(?:in|from))?)"
    rf"\s+{_YEAR}(?P<on>\s+(?:on(?:wards?)?|and\s+(?:later|after|newer)|or\s+(?:later|newer)))?\b",
    re.IGNORECASE,
)
_BEFORE = re.compile(
    rf"\b(?P<op>before|older\s+than|earlier\s+than|prior\s+to|pre|until|up\s+to|through|till)"
    rf"\s+{_YEAR}\b",
    re.IGNORECASE,
)
_YEAR_ON = re.compile(
    rf"\b{_YEAR}\s+(?P<op>or\s+(?:later|newer|after)|and\s+(?:later|newer|after)|onwards?|or\s+"
    r"(?:earlier|older|before)|and\s+(?:earlier|older|before))\b",
    re.IGNORECASE,
)
_EXACT_YEAR = re.compile(rf"\b(?:in\s+|from\s+)?{_YEAR}\b", re.IGNORECASE)
_ANY_YEAR = re.compile(
    r"\b(?:any\s+(?:year|time|decade|era|age)|all\s+years|whatever\s+year)\b", re.IGNORECASE
)
_ANY_GENRE = re.compile(r"\b(?:any\s+(?:genre|category|kind|type)|all\s+genres)\b", re.IGNORECASE)

_NEGATION = re.compile(
    r"\b(?:no|not|without|except|excluding|exclude|avoid|nothing|none|never|hate|skip|minus"
    r"|but\s+not|anything\s+but|no\s+more|less)\b|n['’]t\b",
    re.IGNORECASE,
)
_CONNECTOR = re.compile(r"^(?:\s|,|/|&|\bor\b|\band\b|\bnor\b|\beither\b|\bany\b)*$", re.IGNORECASE)


def _ref_value(m: re.Match[str], prefix: str = "") -> int:
    """The position a ``_REF`` match names (0 = that one / it)."""
    g = m.groupdict()
    word = g.get(prefix + "word")
    if word:
        return ORDINAL_WORDS[word.lower()]
    for name in ("num", "hash", "numw", "bare"):
        if g.get(prefix + name):
            return int(g[prefix + name])
    return 0


def _refs(text: str) -> list[int]:
    return [_ref_value(m) for m in _REF_ITER.finditer(text)]


class RuleIntentParser:
    """A deterministic parser for the model-only tier (no LLM needed).

    Args:
        categories: The dataset's category names (matched case-insensitively).
        titles: Catalog titles, for "more like <title>".
    """

    def __init__(self, categories: Sequence[str], titles: Iterable[str] = ()) -> None:
        self.categories = list(categories)
        by_lower = {c.lower(): c for c in self.categories}
        phrases: dict[str, str] = {}
        for canonical, words in GENRE_SYNONYMS.items():
            if canonical.lower() in by_lower:
                for w in words:
                    phrases[w.lower()] = by_lower[canonical.lower()]
        for low, name in by_lower.items():
            if low in ("unknown", "other", "none", "(no genres listed)"):
                continue
            phrases.setdefault(low, name)
            if name not in GENRE_SYNONYMS:  # plurals only where no synonym list decides
                for form in (low + "s", low[:-1] + "ies" if low.endswith("y") else low + "es"):
                    phrases.setdefault(form, name)
        self.phrases = phrases
        alternation = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
        self._genre = re.compile(rf"(?<![\w-])(?:{alternation})(?![\w-])", re.IGNORECASE)
        self.titles: dict[str, str] = {}
        for t in titles:
            for form in title_forms(t):
                self.titles.setdefault(form, t)

    def parse(self, message: str) -> Intent:
        """The intent of one (already cleaned) message."""
        text = " " + message.strip() + " "
        intent = Intent()

        def cut(m: re.Match[str]) -> str:
            nonlocal text
            text = text[: m.start()] + " " * (m.end() - m.start()) + text[m.end() :]
            return m.group(0)

        def cut_all(pattern: re.Pattern[str]) -> list[re.Match[str]]:
            found = list(pattern.finditer(text))
            for m in reversed(found):
                cut(m)
            return found

        if cut_all(_START_OVER):
            intent.start_over = True
        if cut_all(_SHOW_AGAIN):
            intent.show_again = True
        m = _CMD.search(text)
        if m:
            cut(m)
            cmd = m.group("cmd").lower()
            target = {"like": intent.like, "dislike": intent.dislike, "seen": intent.seen}.get(
                cmd, intent.reject
            )
            target.extend(_refs(m.group("refs")))
        for m in cut_all(_SEEN):
            intent.seen.extend(_refs(m.group("refs")))
        for m in cut_all(_SEEN_TAIL):
            intent.seen.append(_ref_value(m, "t_"))
        if re.search(r"\b(?:seen|watched)\s+(?:it|that)\s+already\b|\balready\s+seen\b", text):
            intent.seen.append(0)
            text = re.sub(r"\b(?:seen|watched)\s+(?:it|that)\s+already\b|\balready\s+seen\b",
                          " ", text)  # fmt: skip
        for m in cut_all(_DISLIKE):
            intent.dislike.extend(_refs(m.group("refs")))
        for m in cut_all(_LIKE):
            intent.like.extend(_refs(m.group("refs")))
        for m in cut_all(_MORE_LIKE):
            refs = _refs(m.group("refs"))
            if refs:
                intent.more_like = refs[0]
        for pattern in (_REJECT, _REJECT_BARE):
            for m in cut_all(pattern):
                intent.reject.extend(_refs(m.group("refs")))
        if intent.more_like is None and self.titles:
            m = _MORE_LIKE_TEXT.search(text)
            if m:
                found = self._title_prefix(m.group("rest"))
                if found:
                    title, length = found
                    intent.more_like_title = title
                    start = m.start()
                    end = m.start("rest") + length
                    text = text[:start] + " " * (end - start) + text[end:]
        text = self._years(text, intent)
        if cut_all(_ANY_YEAR):
            intent.clear_years = True
        text = self._genres(text, intent)
        intent.query = _query(text)
        for name in ("reject", "seen", "like", "dislike"):
            setattr(intent, name, list(dict.fromkeys(getattr(intent, name))))
        return intent

    # ---- pieces ---------------------------------------------------------------------------------
    def _years(self, text: str, intent: Intent) -> str:
        """Read year constraints into ``intent``; returns ``text`` without them."""

        def set_range(lo: int | None, hi: int | None) -> None:
            if lo is not None:
                intent.year_min = lo if intent.year_min is None else max(intent.year_min, lo)
            if hi is not None:
                intent.year_max = hi if intent.year_max is None else min(intent.year_max, hi)

        # Each pattern works on what the earlier ones left, so a year is read once.
        def scan(pattern: re.Pattern[str]) -> list[re.Match[str]]:
            nonlocal text
            found = list(pattern.finditer(text))
            for m in reversed(found):
                text = text[: m.start()] + " " * (m.end() - m.start()) + text[m.end() :]
            return found

        for m in scan(_RANGE):
            a, b = sorted((int(m.group(1)), int(m.group(2))))
            set_range(a, b)
        for m in scan(_DECADE):
            dec = int(m.group("dec"))
            if dec < 100:
                dec += 1900 if 2000 + dec > 2030 else 2000
            set_range(*_decade_part(dec, m.group("part")))
        for m in scan(_DECADE_WORD):
            set_range(*_decade_part(DECADE_WORDS[m.group("word").lower()], m.group("part")))
        for m in scan(_YEAR_ON):
            y, op = int(m.group(1)), m.group("op").lower()
            if any(w in op for w in ("earlier", "older", "before")):
                set_range(None, y)
            else:
                set_range(y, None)
        for m in scan(_AFTER):
            y, op = int(m.group(2)), m.group("op").lower()
            if op.startswith(("from", "starting")) and not m.group("on") and op == "from":
                set_range(y, y)  # "from 1995": released in 1995
            elif op.startswith(("since", "from", "starting")):
                set_range(y, None)
            else:
                set_range(y + 1, None)
        for m in scan(_BEFORE):
            y, op = int(m.group(2)), m.group("op").lower()
            if op.startswith(("until", "up", "through", "till")):
                set_range(None, y)
            else:
                set_range(None, y - 1)
        for m in scan(_EXACT_YEAR):
            y = int(m.group(1))
            set_range(y, y)
        if (
            intent.year_min is not None
            and intent.year_max is not None
            and intent.year_min > intent.year_max
        ):
            intent.year_min, intent.year_max = intent.year_max, intent.year_min
        return text

    def _genres(self, text: str, intent: Intent) -> str:
        """Read included and negated categories into ``intent``; returns the rest of ``text``."""
        if _ANY_GENRE.search(text):
            text = _ANY_GENRE.sub(" ", text)
            intent.categories = []
        matches = list(self._genre.finditer(text))
        prev_end = 0
        prev_negated = False
        include: list[str] = []
        exclude: list[str] = []
        for m in matches:
            between = text[prev_end : m.start()]
            window = " ".join(between.split()[-4:])
            negated = bool(_NEGATION.search(window)) or (
                prev_negated and prev_end > 0 and bool(_CONNECTOR.match(between))
            )
            name = self.phrases[m.group(0).lower()]
            (exclude if negated else include).append(name)
            prev_end, prev_negated = m.end(), negated
        out = self._genre.sub(" ", text)
        if exclude:
            out = _NEGATION.sub(" ", out)
        intent.categories = list(dict.fromkeys(c for c in include if c not in exclude))
        intent.exclude_categories = list(dict.fromkeys(exclude))
        return out

    def _title_prefix(self, rest: str) -> tuple[str, int] | None:
        """The longest catalog title that ``rest`` starts with, and its length in ``rest``."""
        words = list(re.finditer(r"[^\s,.!?;]+", rest))
        for n in range(min(len(words), 10), 0, -1):
            end = words[n - 1].end()
            key = norm_title(rest[:end])
            if key in self.titles and (n > 1 or len(key) >= 4):
                return self.titles[key], end
        return None


def _decade_part(dec: int, part: str | None) -> tuple[int, int]:
    part = (part or "").lower()
    if part == "early":
        return dec, dec + 3
    if part == "mid":
        return dec + 3, dec + 6
    if part == "late":
        return dec + 6, dec + 9
    return dec, dec + 9


def norm_title(t: str) -> str:
    t = re.sub(r"\s+", " ", t.lower().strip(" \"'“”‘’"))
    return t


def title_forms(title: str) -> set[str]:
    """``Rock, The`` is also found as ``The Rock`` and ``Rock``."""
    low = norm_title(title)
    forms = {low}
    m = re.match(r"^(.*), (the|a|an)$", low)
    if m:
        forms |= {f"{m.group(2)} {m.group(1)}", m.group(1)}
    return forms


def _query(text: str) -> str | None:
    words = re.findall(r"[\w'’-]+", text.lower())
    content = [w for w in words if w not in STOPWORDS and not w.isdigit() and len(w) > 1]
    if not content:
        return None
    # Keep the words in order, dropping the filler that starts requests ("show me some").
    kept = [w for w in words if w not in STOPWORDS or w in ("with", "about", "and")]
    while kept and kept[0] in ("with", "about", "and"):
        kept.pop(0)
    while kept and kept[-1] in ("with", "about", "and"):
        kept.pop()
    return " ".join(kept) or None
