"""The rule-based intent parser: chat works with no LLM at all."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from agent.chat.intent import Intent
from agent.chat.vocabulary import DECADE_WORDS, GENRE_SYNONYMS, ORDINAL_WORDS, STOPWORDS
from agent.schema import Range

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
# "like the second one but newer" (more text after the reference) asks for more like it;
# "like 2" alone rates the item (``_CMD``).
_LIKE_LEAD = _ref_pattern(r"^\s*(?:just\s+)?like")
_SEEN_IT = re.compile(
    r"\b(?:seen|watched|read)\s+(?:it|that)\s+already\b|\balready\s+seen\b", re.IGNORECASE
)
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

    Its vocabulary comes from the catalog: category names (with synonyms where the catalog's
    categories have them), titles ("more like <title>"), the values of exact attributes ("by
    Terry Pratchett", "not from Penguin") and the names and units of numeric ones ("under
    $30", "shorter than 300 pages").

    Args:
        categories: The dataset's category names (matched case-insensitively).
        titles: Catalog titles, for "more like <title>".
        values: Exact attributes and every value each takes in the catalog.
        numbers: Numeric attributes other than the year: ``(name, unit, label)``.
        item_words: The catalog's item nouns ("book", "books"): filler, not a query.
    """

    def __init__(
        self,
        categories: Sequence[str],
        titles: Iterable[str] = (),
        values: Mapping[str, Iterable[str]] | None = None,
        numbers: Sequence[tuple[str, str | None, str | None]] = (),
        item_words: Iterable[str] = (),
    ) -> None:
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
        # A catalog without categories has no pattern (an empty one would match everywhere).
        self._genre = (
            re.compile(rf"(?<![\w-])(?:{alternation})(?![\w-])", re.IGNORECASE) if phrases else None
        )
        self.titles: dict[str, str] = {}
        for t in titles:
            for form in title_forms(t):
                self.titles.setdefault(form, t)
        self.vocabulary = AttributeVocabulary(values or {}, numbers)
        self.stopwords = STOPWORDS | {w.lower() for w in item_words}

    def parse(self, message: str) -> Intent:
        """The intent of one (already cleaned) message."""
        intent = Intent()
        text = self._actions(" " + message.strip() + " ", intent)
        text = self.vocabulary.read(text, intent)
        text = self._years(text, intent)
        if _ANY_YEAR.search(text):
            text = _ANY_YEAR.sub(" ", text)
            intent.clear_years = True
        text = self._genres(text, intent)
        intent.query = _query(text, self.stopwords)
        for name in ("reject", "seen", "like", "dislike"):
            setattr(intent, name, list(dict.fromkeys(getattr(intent, name))))
        return intent

    def _actions(self, text: str, intent: Intent) -> str:
        """Read start over, show again, ratings, removals and "more like" into ``intent``;
        returns ``text`` without them."""

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
        if m and not text[m.end() :].strip(" .!?"):  # a rating command is the whole message
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
        if _SEEN_IT.search(text):
            intent.seen.append(0)
            text = _SEEN_IT.sub(" ", text)
        for m in cut_all(_DISLIKE):
            intent.dislike.extend(_refs(m.group("refs")))
        for m in cut_all(_LIKE):
            intent.like.extend(_refs(m.group("refs")))
        for pattern in (_MORE_LIKE, _LIKE_LEAD):
            for m in cut_all(pattern):
                refs = _refs(m.group("refs"))
                if refs and intent.more_like is None:
                    intent.more_like = refs[0]
        for pattern in (_REJECT, _REJECT_BARE):
            for m in cut_all(pattern):
                intent.reject.extend(_refs(m.group("refs")))
        if intent.more_like is None and self.titles:
            m = _MORE_LIKE_TEXT.search(text)
            found = self._title_prefix(m.group("rest")) if m else None
            if m and found:
                intent.more_like_title, length = found
                end = m.start("rest") + length
                text = text[: m.start()] + " " * (end - m.start()) + text[end:]
        return text

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
        if self._genre is None:
            return text
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


def _query(text: str, stopwords: frozenset[str] | set[str] = STOPWORDS) -> str | None:
    words = re.findall(r"[\w'’-]+", text.lower())
    content = [w for w in words if w not in stopwords and not w.isdigit() and len(w) > 1]
    if not content:
        return None
    # Keep the words in order, dropping the filler that starts requests ("show me some").
    kept = [w for w in words if w not in stopwords or w in ("with", "about", "and")]
    while kept and kept[0] in ("with", "about", "and"):
        kept.pop(0)
    while kept and kept[-1] in ("with", "about", "and"):
        kept.pop()
    return " ".join(kept) or None


# ---- attributes ----------------------------------------------------------------------------------
_OPS_BELOW = ("under", "below", "less than", "cheaper than", "shorter than", "at most", "up to",
              "no more than", "fewer than", "within")  # fmt: skip
_OPS_ABOVE = ("over", "above", "more than", "longer than", "at least", "pricier than",
              "no less than")  # fmt: skip
_NUMBER = re.compile(
    r"\b(?P<op>"
    + "|".join(re.escape(o).replace(r"\ ", r"\s+") for o in _OPS_BELOW + _OPS_ABOVE)
    + r")\s+(?P<cur>[$€£])?\s*(?P<num>\d+(?:[.,]\d+)?)\s*(?P<unit>[a-z]+)?",
    re.IGNORECASE,
)
_CURRENCY_OPS = ("cheaper than", "pricier than")
_PRICE_WORDS = ("price", "cost", "amount")
#: Values shorter than this are too likely to be ordinary words to look for in a message.
_MIN_VALUE_CHARS = 4


class AttributeVocabulary:
    """Reads attribute filters out of a message, from the catalog's own values and names.

    Args:
        values: Exact attributes and every value each takes in the catalog.
        numbers: Numeric attributes other than the year: ``(name, unit, label)``.
    """

    def __init__(
        self,
        values: Mapping[str, Iterable[str]],
        numbers: Sequence[tuple[str, str | None, str | None]] = (),
    ) -> None:
        self.index: dict[str, tuple[str, str]] = {}  # lower-case value -> (attribute, value)
        for name, vals in values.items():
            for v in vals:
                key = " ".join(str(v).lower().split())
                if len(key) >= _MIN_VALUE_CHARS and key not in STOPWORDS:
                    self.index.setdefault(key, (name, str(v)))
        self.longest = max((len(k.split()) for k in self.index), default=0)
        self.numbers = list(numbers)
        names = "|".join(re.escape(n) for n in sorted(values, key=len, reverse=True))
        self._same = (
            re.compile(
                r"(?P<neg>\b(?:not|no|nothing|except|without|avoid|but\s+not|anything\s+but)"
                r"(?:\s+(?:more|anything|else|other))?\s+)?"
                r"\b(?:by|from|of)\s+(?:that|this|the\s+same|its|their)\s+(?P<attr>"
                + names
                + r")s?\b",
                re.IGNORECASE,
            )
            if names
            else None
        )

    def read(self, text: str, intent: Intent) -> str:
        """Read "by the same author", numeric bounds and attribute values into ``intent``;
        returns ``text`` without them."""
        if self._same is not None:
            for m in reversed(list(self._same.finditer(text))):
                attr = m.group("attr").lower()
                (intent.not_same_as if m.group("neg") else intent.same_as)[attr] = 0
                text = text[: m.start()] + " " * (m.end() - m.start()) + text[m.end() :]
        text = self._numbers(text, intent)
        return self._values(text, intent)

    def _numbers(self, text: str, intent: Intent) -> str:
        for m in reversed(list(_NUMBER.finditer(text))):
            attr = self._number_attribute(m)
            if attr is None:
                continue
            value = float(m.group("num").replace(",", "."))
            op = " ".join(m.group("op").lower().split())
            bound = intent.ranges.get(attr, Range())
            if op in _OPS_BELOW:
                bound = Range(min=bound.min, max=value)
            else:
                bound = Range(min=value, max=bound.max)
            intent.ranges[attr] = bound
            text = text[: m.start()] + " " * (m.end() - m.start()) + text[m.end() :]
        return text

    def _number_attribute(self, m: re.Match[str]) -> str | None:
        """The numeric attribute a bound is about: by unit word, else a price by currency."""
        unit = (m.group("unit") or "").lower().rstrip("s")
        for name, u, label in self.numbers:
            words = {name.lower().rstrip("s"), (u or "").lower().rstrip("s")}
            words |= {w.rstrip("s") for w in (label or "").lower().split()}
            if unit and unit in words:
                return name
        op = " ".join(m.group("op").lower().split())
        if m.group("cur") or op in _CURRENCY_OPS:
            for name, u, _ in self.numbers:
                if name.lower() in _PRICE_WORDS or u in ("$", "€", "£"):
                    return name
        return None

    def _values(self, text: str, intent: Intent) -> str:
        """Catalog values named in the text (longest first); a negation just before one
        ("not", "no", "except") drops it instead."""
        if not self.index:
            return text
        words = list(re.finditer(r"[^\s,.!?;:]+", text))
        taken = [False] * len(words)
        for n in range(min(self.longest, len(words)), 0, -1):
            for i in range(len(words) - n + 1):
                if any(taken[i : i + n]):
                    continue
                key = " ".join(w.group(0).lower() for w in words[i : i + n])
                hit = self.index.get(key)
                if hit is None:
                    continue
                attr, value = hit
                before = " ".join(w.group(0) for w in words[max(0, i - 4) : i])
                target = intent.exclude_values if _NEGATION.search(before) else intent.values
                target.setdefault(attr, [])
                if value not in target[attr]:
                    target[attr].append(value)
                taken[i : i + n] = [True] * n
        chars = list(text)
        for i, w in enumerate(words):
            if taken[i]:
                chars[w.start() : w.end()] = " " * (w.end() - w.start())
        out = "".join(chars)
        if intent.exclude_values:
            out = _NEGATION.sub(" ", out)
        return out
