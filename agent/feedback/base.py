"""What every feedback store guarantees, and how a store is chosen from a target.

A store holds append-only ``(user_id, item_id, event, ts)`` rows. Every backend keeps the same
promises, and the same tests hold them to it (``tests/agent/test_feedback.py`` runs against
each backend):

* ``add`` returns only once the row is committed durably: an acknowledged event survives the
  writing process (and, for PostgreSQL, the database server) being killed right after;
* each call lands once under any number of concurrent writers, and a call given an
  ``event_id`` lands once however often it is repeated (a client may retry safely);
* the next read from any process (any serving node, for PostgreSQL) sees it.

A store is chosen by its target: a ``postgresql://`` URL (``MTREC_FEEDBACK_URL``) or a path
to a SQLite file (the default: ``WORKSPACE/feedback.sqlite``). ``FeedbackStore(target)``
builds the right one.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from agent.schema import Feedback, feedback_rating_value
from mtrec.data.history import History
from mtrec.data.schema import Dataset

#: Longest user / item id and client event id a store accepts (the HTTP API's own limit).
MAX_ID_CHARS = 200
#: What a client event id may look like (a UUID, a ULID, ``web-1234``, ...).
EVENT_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")

#: (user_id, item_id, event, ts)
EventRow = tuple[str, str, str, float]


class FeedbackStore(ABC):
    """Feedback events of users on items.

    ``FeedbackStore(target)`` returns the store for ``target``: a ``SQLiteFeedbackStore`` for a
    path, a ``PostgresFeedbackStore`` for a ``postgresql://`` URL.
    """

    #: The backend's name, as reported by the HTTP API (``sqlite`` or ``postgresql``).
    backend: ClassVar[str]
    _backends: ClassVar[list[type[FeedbackStore]]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        FeedbackStore._backends.append(cls)

    def __new__(cls, *args: Any, **kwargs: Any) -> FeedbackStore:
        if cls is FeedbackStore:
            target = args[0] if args else kwargs.get("target", kwargs.get("path"))
            cls = next((b for b in FeedbackStore._backends if b.handles(target)), None)  # type: ignore[assignment]
            if cls is None:
                raise ValueError("no feedback store backend for this target")
        return super().__new__(cls)

    @classmethod
    @abstractmethod
    def handles(cls, target: object) -> bool:
        """Whether this backend stores events at ``target``."""

    @abstractmethod
    def add(
        self, user_id: str, item_id: str, event: Feedback | str, event_id: str | None = None
    ) -> int:
        """Append one event; returns its id once it is durable.

        Args:
            event_id: A client's id for this event: repeating a call with the same id returns
                the first call's row id and stores nothing new.

        Raises:
            ValueError: an unknown event name, an empty or over-long id, or an ``event_id``
                already used for a different event.
            FeedbackStoreError: the store cannot be reached or written.
        """

    @abstractmethod
    def events(self, user_id: str | None = None) -> list[EventRow]:
        """(user_id, item_id, event, ts) rows in insertion order."""

    @abstractmethod
    def describe(self) -> str:
        """Where the events are, safe to print (no password)."""

    def close(self) -> None:  # noqa: B027 (a store with nothing to release keeps it)
        """Release connections (the store reopens them on next use)."""

    def history(self, user_id: str, ds: Dataset) -> History:
        """The user's feedback as a history over the dataset's items (unknown items skipped)."""
        rows = [r for r in self.events(user_id) if ds.has_item(r[1])]
        events = [Feedback(r[2]) for r in rows]
        return History(
            np.array([ds.item_index(r[1]) for r in rows], np.int64),
            np.array([e.event.code for e in events], np.int8),
            np.array([feedback_rating_value(e) for e in events], np.float32),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


def check_event(
    user_id: str, item_id: str, event: Feedback | str, event_id: str | None
) -> tuple[str, str, Feedback]:
    """The checked fields of one event (the same rules for every backend).

    Raises:
        ValueError: what is wrong, in one line.
    """
    user_id, item_id = str(user_id), str(item_id)
    for name, value in (("user_id", user_id), ("item_id", item_id)):
        if not value.strip():
            raise ValueError(f"{name} must not be empty")
        if len(value) > MAX_ID_CHARS:
            raise ValueError(f"{name} is longer than {MAX_ID_CHARS} characters")
    if event_id is not None and not EVENT_ID.match(event_id):
        raise ValueError("event_id must be 1-100 characters of letters, digits and _.:-")
    return user_id, item_id, Feedback.parse(event)


def same_event_or_raise(
    stored: tuple[str, str, str], user_id: str, item_id: str, event: Feedback
) -> None:
    """A repeated ``event_id`` must name the same event.

    Raises:
        ValueError: it names a different one.
    """
    if stored != (user_id, item_id, event.value):
        raise ValueError("event_id was already used for a different event")


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def as_path(target: object) -> Path | None:
    if isinstance(target, Path):
        return target
    if isinstance(target, str) and "://" not in target:
        return Path(target)
    return None
