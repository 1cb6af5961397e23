"""The terminal chat (``mtrec chat``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.markup import escape

from agent.chat.engine import ChatEngine
from agent.chat.session import ChatReply
from agent.errors import user_facing

TERMINAL_HELP = (
    "Say what you want (a topic, “more like the third one”, “not that one”, “I've seen it”, "
    "“start over”). Rate items with “like 2”, “dislike 3”, “seen 1”. “quit” ends the chat."
)


def terminal_help(engine: ChatEngine) -> str:
    """The help line, with examples from the catalog (a category, an attribute)."""
    ds = engine.rec.ds
    examples = []
    if ds.categories:
        examples += [f"“{ds.categories[0].lower()}”", f"“no {ds.categories[-1].lower()}”"]
    for spec in ds.profile.attributes:
        if spec.kind == "exact" and engine.rec.catalog.values.get(spec.name):
            value = next((v for v in engine.rec.catalog.values[spec.name] if v), "")
            if value:
                examples.append(f"“by {value}”" if spec.name == "author" else f"“{value}”")
                break
        if spec.name == "year":
            examples.append("“after 1995”")
    lead = f"Ask for {ds.profile.items}" + (f" ({', '.join(examples)})" if examples else "")
    return f"{lead}. {TERMINAL_HELP}"


def run_terminal_chat(
    engine: ChatEngine,
    user_id: str | None = None,
    read: Callable[[str], str] = input,
    console: Any = None,
    session_id: str = "terminal",
) -> int:
    """A read-answer loop on the terminal until ``quit`` or end of input; returns the turns.

    Args:
        engine: The chat engine.
        user_id: Ratings are stored for this user (else they stay in the session).
        read: Reads one line given a prompt (``input``); EOF or Ctrl-C ends the chat.
        console: A rich console (default: stdout).
    """
    if console is None:
        from agent.console import out as console
    who = f" for user {user_id}" if user_id else ""
    help_text = terminal_help(engine)
    console.print(f"[bold]mtrec chat{who}[/] — {escape(help_text)}", highlight=False)
    session = engine.session(session_id, user_id)
    turns = 0
    while True:
        try:
            line = read("you> ")
        except (EOFError, KeyboardInterrupt):
            console.print()
            break
        text = line.strip()
        if not text:
            continue
        if text.lower() in ("quit", "exit", "/quit", "/exit", "bye", ":q"):
            break
        if text.lower() in ("help", "/help", "?"):
            console.print(escape(help_text), highlight=False)
            continue
        try:
            reply = session.send(text)
        except (KeyError, ValueError) as e:
            console.print(f"[red]{escape(user_facing(e)[0])}[/]", highlight=False)
            continue
        turns += 1
        print_reply(reply, console)
    return turns


def print_reply(reply: ChatReply, console: Any) -> None:
    """A chat answer as text: the one-line reply, then numbered items with explanations."""
    console.print(f"[bold cyan]mtrec>[/] {escape(reply.reply)}", highlight=False)
    for note in reply.notes:
        console.print(f"  [dim]{escape(note)}[/]", highlight=False)
    for i, it in enumerate(reply.items, 1):
        meta = ", ".join([*it.categories, *it.details.values()])
        year = f" ({it.year})" if it.year else ""
        console.print(
            f"  [bold]{i}. {escape(it.title)}[/]{year} [dim]{escape(meta)}[/]", highlight=False
        )
        if it.explanation:
            console.print(f"     {escape(it.explanation)}", highlight=False)
