"""Chat: rule-based intents, multi-turn memory and the feedback loop, on real ml-100k."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from agent.chat import (
    ChatEngine,
    Intent,
    LLMIntentParser,
    RuleIntentParser,
    SessionState,
    run_terminal_chat,
)
from agent.feedback import FeedbackStore
from tests.conftest import run_cli

ML100K_GENRES = [
    "Animation", "Children's", "Comedy", "Action", "Adventure", "Thriller", "Drama", "Crime",
    "Sci-Fi", "War", "Romance", "Horror", "Musical", "Documentary", "Western", "Fantasy",
    "Film-Noir", "Mystery", "unknown",
]  # fmt: skip


@pytest.fixture(scope="module")
def parser() -> RuleIntentParser:
    return RuleIntentParser(ML100K_GENRES, ["Toy Story", "Star Wars", "Rock, The", "Alien"])


@pytest.fixture(scope="module")
def rec(trained_workspace):
    from agent.recommender import Recommender

    # Ratings these tests store go to a private store (``private_store``), never to the
    # shared workspace; other ratings stay in their chat sessions.
    return Recommender.load(trained_workspace, llm="none")


@pytest.fixture
def private_store(rec, tmp_path):
    """The module's recommender with a feedback store of its own for one test."""
    before = rec.feedback
    rec.feedback = FeedbackStore(tmp_path / "feedback.sqlite")
    yield rec.feedback
    rec.feedback = before


def ids(reply) -> list[str]:
    return [it.item_id for it in reply.items]


# ---- intents ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("comedies from the 90s", {"categories": ["Comedy"], "year_min": 1990, "year_max": 1999}),
        ("sci-fi after 1995", {"categories": ["Sci-Fi"], "year_min": 1996}),
        ("science fiction before 1980", {"categories": ["Sci-Fi"], "year_max": 1979}),
        ("something for the kids", {"categories": ["Children's"]}),
        ("something funny", {"categories": ["Comedy"]}),
        (
            "scary movies but no comedy",
            {"categories": ["Horror"], "exclude_categories": ["Comedy"]},
        ),
        ("no horror", {"exclude_categories": ["Horror"]}),
        ("not comedy or drama", {"exclude_categories": ["Comedy", "Drama"]}),
        ("without thrillers please", {"exclude_categories": ["Thriller"]}),
        ("1990-1999", {"year_min": 1990, "year_max": 1999}),
        ("between 1970 and 1975", {"year_min": 1970, "year_max": 1975}),
        ("late 80s dramas", {"categories": ["Drama"], "year_min": 1986, "year_max": 1989}),
        ("from 1990 onwards", {"year_min": 1990}),
        ("any year", {"clear_years": True}),
        ("more like the third one", {"more_like": 3}),
        ("more like #2", {"more_like": 2}),
        ("something like number 4", {"more_like": 4}),
        ("more like Star Wars", {"more_like_title": "Star Wars"}),
        ("something like the rock", {"more_like_title": "Rock, The"}),
        ("not that one", {"reject": [0]}),
        ("not the second one", {"reject": [2]}),
        ("remove 1st and 3rd", {"reject": [1, 3]}),
        ("I've seen it", {"seen": [0]}),
        ("i have already seen the 2nd one", {"seen": [2]}),
        ("the last one I've seen already", {"seen": [-1]}),
        ("like 2", {"like": [2]}),
        ("dislike #1", {"dislike": [1]}),
        ("I loved the first one", {"like": [1]}),
        ("i don't like the third one", {"dislike": [3]}),
        ("start over", {"start_over": True}),
        ("show them again", {"show_again": True}),
        ("something with space aliens", {"query": "space aliens"}),
        ("war movies", {"categories": ["War"]}),
    ],
)
def test_rule_parser(parser, message, expected):
    intent = parser.parse(message)
    got = {k: v for k, v in intent.model_dump().items() if v not in (None, [], {}, False)}
    assert got == expected


@pytest.fixture(scope="module")
def book_parser() -> RuleIntentParser:
    """A catalog without categories: authors and publishers as exact values, a price."""
    return RuleIntentParser(
        [],
        ["Small Gods", "The Firm"],
        {"author": ["Terry Pratchett", "John Grisham"], "publisher": ["Corgi", "Penguin Books"]},
        [("price", "$", None), ("pages", None, "page count")],
        ["book", "books"],
    )


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("something by Terry Pratchett", {"values": {"author": ["Terry Pratchett"]}}),
        ("books by terry pratchett", {"values": {"author": ["Terry Pratchett"]}}),
        ("not by John Grisham", {"exclude_values": {"author": ["John Grisham"]}}),
        ("nothing from Penguin Books", {"exclude_values": {"publisher": ["Penguin Books"]}}),
        (
            "like the second one but published after 1995",
            {"more_like": 2, "year_min": 1996},
        ),
        ("not from that publisher", {"not_same_as": {"publisher": 0}}),
        ("more by the same author", {"same_as": {"author": 0}}),
        ("under $30", {"ranges": {"price": {"min": None, "max": 30.0}}}),
        ("shorter than 300 pages", {"ranges": {"pages": {"min": None, "max": 300.0}}}),
        ("at least 100 pages", {"ranges": {"pages": {"min": 100.0, "max": None}}}),
        ("like 2", {"like": [2]}),
        ("funny fantasy", {"query": "funny fantasy"}),
    ],
)
def test_rule_parser_reads_the_catalogs_attributes(book_parser, message, expected):
    intent = book_parser.parse(message)
    got = {k: v for k, v in intent.model_dump().items() if v not in (None, [], {}, False)}
    assert got == expected


def test_rule_parser_on_mixed_messages(parser):
    i = parser.parse("Start over: westerns from the 60s, no comedy, with a lone gunslinger")
    assert i.start_over and i.categories == ["Western"] and i.exclude_categories == ["Comedy"]
    assert (i.year_min, i.year_max) == (1960, 1969)
    assert i.query == "lone gunslinger"
    # "Star Wars" is a title, not the War genre.
    assert parser.parse("Star Wars").categories == []


def test_llm_parser_falls_back_to_rules_and_normalises(rec, parser):
    settings = rec.settings.model_copy(
        update={"llm_base_url": "http://127.0.0.1:9/v1", "llm_timeout_s": 2.0}
    )
    llm = LLMIntentParser(settings, parser)
    intent, reader = llm.parse("comedies from the 90s")  # endpoint refused: the rules read it
    assert reader == "rules" and intent.categories == ["Comedy"]
    assert llm.failures == 1

    class Fake:
        def invoke(self, messages):
            assert "<data>" in messages[-1].content
            return Intent(categories=["comedy", "Polka"], exclude_categories=["HORROR"])

    llm.runnable = Fake()
    got, reader = llm.parse("funny, nothing scary")
    assert reader == "llm"
    assert got.categories == ["Comedy"] and got.exclude_categories == ["Horror"]
    assert llm.failures == 1


# ---- multi-turn memory ------------------------------------------------------------------------
def test_multi_turn_script(rec):
    engine = ChatEngine(rec, llm="none", k=5)
    s = engine.session("script", user_id="42")

    one = s.send("comedies from the 90s")
    assert len(one.items) == 5 and one.tier == "none"
    assert all("Comedy" in it.categories and 1990 <= it.year <= 1999 for it in one.items)
    assert all(it.explanation for it in one.items)
    assert "Comedy" in one.reply and "1990" in one.reply

    two = s.send("something with a road trip")
    assert two.state.query == "road trip"
    assert not set(ids(one)) & set(ids(two)), "items already shown came back"

    three = s.send("no romance")  # turn three: the turn-one constraint still holds
    assert all("Comedy" in it.categories and 1990 <= it.year <= 1999 for it in three.items)
    assert all("Romance" not in it.categories for it in three.items)
    assert three.state.query == "road trip"

    second = ids(three)[1]
    four = s.send("not the second one")
    assert second not in ids(four) and four.intent.reject == [2]
    assert ids(four)[0] == ids(three)[0], "removing an item keeps the rest of the list"
    assert "Removed" in four.reply

    first = ids(four)[0]
    five = s.send("not that one")  # nothing referenced since the removal: the top item
    assert first not in ids(five)

    third = ids(five)[2]
    six = s.send("more like the third one")
    assert six.state.like_item == third and third not in ids(six)
    assert all("Comedy" in it.categories for it in six.items)

    seven = s.send("start over")
    assert seven.state.categories == [] and seven.state.year_min is None
    assert seven.state.query is None and seven.state.like_item is None
    assert not all(
        "Comedy" in it.categories and 1990 <= (it.year or 0) <= 1999 for it in seven.items
    )
    assert seven.reply.startswith("Starting over.")
    # Nothing said in this chat reached the feedback store.
    assert all(not e.stored for r in (one, two, three, four, five, six, seven) for e in r.feedback)


def test_out_of_range_position_is_a_note_not_an_error(rec):
    s = ChatEngine(rec, llm="none", k=3).session("range", user_id="7")
    s.send("dramas")
    reply = s.send("not the ninth one")
    assert any("no #9" in n for n in reply.notes)


def test_anonymous_session_ratings_stay_in_the_session(rec):
    engine = ChatEngine(rec, llm="none", k=5)
    first = engine.chat("anon", "scary movies")
    assert first.user_id is None and all("Horror" in it.categories for it in first.items)
    top = first.items[0].item_id
    after = engine.session("anon").rate(top, "dislike")
    assert top not in ids(after) and ids(after) != ids(first)
    assert after.feedback[0].event == "dislike" and not after.feedback[0].stored
    assert after.state.history[-1].item_id == top


def test_state_round_trip_continues_a_conversation(rec):
    """A client that echoes ``state`` can continue on a process that never saw the chat."""
    a = ChatEngine(rec, llm="none", k=4)
    b = ChatEngine(rec, llm="none", k=4)
    one = a.chat("moved", "westerns", user_id="5")
    state = SessionState.model_validate_json(one.state.model_dump_json())
    state.shown.append("no-such-item")  # client-sent state is cleaned, not trusted
    two = b.chat("moved", "not the first one", state=state)
    assert two.state.categories == ["Western"] and two.user_id == "5"
    assert ids(one)[0] not in ids(two) and "no-such-item" not in two.state.shown


def test_user_ratings_change_the_next_list_without_retraining(rec, private_store):
    engine = ChatEngine(rec, llm="none", k=10)
    s = engine.session("loop", user_id="77")
    before_hist = len(rec.user_history("77"))
    first = s.send("anything")
    reply = s.send("I loved the first one")
    assert reply.feedback[0].stored and reply.feedback[0].event == "like"
    for item in ids(first)[1:4]:
        s.rate(item, "dislike")
    assert len(rec.user_history("77")) == before_hist + 4
    events = private_store.events("77")
    assert [e[2] for e in events] == ["like", "dislike", "dislike", "dislike"]
    again = rec.recommend(user_id="77", k=10, llm="none")
    assert not again.cached and ids(again) != ids(first)


def test_feedback_for_a_new_user_creates_their_history(rec, private_store):
    with pytest.raises(KeyError):
        rec.user_history("chat-new-user")
    rec.record_feedback("chat-new-user", "50", "like")
    rec.record_feedback("chat-new-user", "181", "seen")
    res = rec.recommend(user_id="chat-new-user", k=5, llm="none")
    assert res.history_size == 2 and {"50", "181"}.isdisjoint(ids(res))
    with pytest.raises(KeyError, match="nope"):
        rec.record_feedback("u", "nope", "like")
    with pytest.raises(ValueError, match="event must be one of"):
        rec.record_feedback("u", "50", "meh")


def test_acknowledged_feedback_survives_sigkill(tmp_path):
    path = tmp_path / "feedback.sqlite"
    code = textwrap.dedent(
        f"""
        import sys, time
        from agent.feedback import FeedbackStore
        store = FeedbackStore({str(path)!r})
        store.add("killed-user", "50", "like")
        print("ack", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ack"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    events = FeedbackStore(path).events("killed-user")
    assert [(u, i, e) for u, i, e, _ in events] == [("killed-user", "50", "like")]


# ---- terminal ---------------------------------------------------------------------------------
def test_terminal_chat(rec):
    from rich.console import Console

    lines = iter(["comedies from the 90s", "help", "", "not the second one", "quit", "never"])
    buf = io.StringIO()
    turns = run_terminal_chat(
        ChatEngine(rec, llm="none", k=3),
        read=lambda prompt: next(lines),
        console=Console(file=buf, width=200, color_system=None),
    )
    text = buf.getvalue()
    assert turns == 2
    assert "Here are 3 movies in Comedy, from 1990–1999." in text  # the catalog's noun
    assert "Removed" in text and "Ask for movies" in text  # the help speaks of movies too


def test_chat_command(rec, trained_workspace, capsys, monkeypatch):
    from agent.recommender import Recommender

    monkeypatch.setattr(Recommender, "load", classmethod(lambda cls, *a, **kw: rec))
    monkeypatch.setattr("sys.stdin", io.StringIO("sci-fi before 1980\nI've seen it\n"))
    code, out, _ = run_cli(
        ["chat", "-w", str(trained_workspace), "--llm", "none", "-k", "2"], capsys
    )
    assert code == 0
    assert "in Sci-Fi, up to 1979" in out and "Noted that you've seen" in out
