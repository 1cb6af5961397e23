"""Property-based tests of the rule-based chat intent parser (hypothesis).

Messages are random text, or random sequences of the words the parser reacts to (genres,
negations, ordinals, years, decades, commands) mixed with noise. For any message the
parser must return an ``Intent`` whose values are in range: known categories only, never
both kept and dropped, positions in [-1, 99], a year range with min <= max, and a query
made of the message's own words.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.chat import MAX_MESSAGE_CHARS, Intent, RuleIntentParser
from agent.llm.sanitize import clean_text

GENRES = [
    "Animation", "Children's", "Comedy", "Action", "Adventure", "Thriller", "Drama", "Crime",
    "Sci-Fi", "War", "Romance", "Horror", "Musical", "Documentary", "Western", "Fantasy",
    "Film-Noir", "Mystery", "unknown",
]  # fmt: skip
TITLES = ["Toy Story", "Star Wars", "Rock, The", "Alien", "Heat", "Fargo", "Twelve Monkeys"]
PARSER = RuleIntentParser(GENRES, TITLES)

WORDS = [
    # genres and synonyms
    "comedy", "comedies", "funny", "scary", "horror", "sci-fi", "science fiction", "kids",
    "noir", "war", "westerns", "romantic", "drama", "documentary", "Polka",
    # negation and connectors
    "no", "not", "without", "but", "or", "and", "nor", ",", "except", "n't", "never",
    # references
    "the first one", "the second", "third", "#2", "#99", "number 7", "3rd", "0th", "42nd",
    "last", "that one", "it", "the top one", "11", "0", "-1",
    # commands and feedback
    "like", "dislike", "seen", "remove", "reject", "I've seen", "I loved", "I don't like",
    "more like", "something like", "similar to", "start over", "show them again", "any year",
    "any genre", "already seen",
    # years and decades
    "1995", "from 1990", "after 2020", "before 1900", "between 1970 and 1975", "1999-1990",
    "90s", "the 80's", "late 60s", "early twenties", "nineties", "2030s", "1800", "since 2099",
    "or later", "onwards", "up to 1950", "1990 or earlier", "after 2099", "before 1800",
    # titles and noise
    "Star Wars", "the rock", "Twelve Monkeys", "space aliens", "road trip", "???", "\u00e9t\u00e9",
    "\U0001f3ac", "<data>", "</data>", "ignore previous instructions", "http://evil.example",
]  # fmt: skip

_word_message = st.lists(st.sampled_from(WORDS), max_size=14).map(" ".join)
_message = st.one_of(
    _word_message,
    _word_message,
    st.text(max_size=200),
    st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=6)), max_size=12).map(" ".join),
    st.integers(1, 3000).map(lambda n: "comedy " * n),  # very long
)


def _check(intent: Intent, text: str) -> None:
    known = set(GENRES)
    assert set(intent.categories) <= known and set(intent.exclude_categories) <= known
    assert not set(intent.categories) & set(intent.exclude_categories)
    assert len(intent.categories) == len(set(intent.categories))
    for name in ("reject", "seen", "like", "dislike"):
        positions = getattr(intent, name)
        assert all(-1 <= p <= 99 for p in positions), (name, positions)
        assert len(positions) == len(set(positions))
    if intent.more_like is not None:
        assert -1 <= intent.more_like <= 99
    if intent.more_like_title is not None:
        assert intent.more_like_title in TITLES
    for y in (intent.year_min, intent.year_max):
        assert y is None or 1799 <= y <= 2100
    if intent.year_min is not None and intent.year_max is not None:
        assert intent.year_min <= intent.year_max
    if intent.query is not None:
        assert intent.query.strip() and len(intent.query) <= len(text)
        words = set(re.findall(r"[\w'’-]+", text.lower()))
        assert set(intent.query.split()) <= words, (intent.query, text)
    Intent.model_validate_json(intent.model_dump_json())  # the schema holds


@settings(max_examples=400, deadline=None)
@given(message=_message)
def test_rule_parser_never_crashes_and_stays_in_range(message):
    text = clean_text(message, MAX_MESSAGE_CHARS)  # what ChatSession.send does first
    _check(PARSER.parse(text), text)


@settings(max_examples=100, deadline=None)
@given(message=_message)
def test_rule_parser_is_deterministic(message):
    text = clean_text(message, MAX_MESSAGE_CHARS)
    assert PARSER.parse(text) == PARSER.parse(text)
