"""Append-only feedback events, read back into user histories.

Two backends with the same interface and guarantees (``agent.feedback.base``): a SQLite file
in the workspace (the default; the processes of one host) and PostgreSQL
(``MTREC_FEEDBACK_URL=postgresql://...``; any number of serving nodes).
"""

from __future__ import annotations

import os

from agent.feedback.base import FeedbackStore
from agent.feedback.postgres import PostgresFeedbackStore
from agent.feedback.sqlite import SQLiteFeedbackStore
from agent.schema import Feedback
from agent.workspace import Workspace
from mtrec.data.schema import Dataset, Interaction

#: The environment variable that moves feedback to PostgreSQL.
ENV_URL = "MTREC_FEEDBACK_URL"

__all__ = [
    "ENV_URL",
    "FeedbackStore",
    "PostgresFeedbackStore",
    "SQLiteFeedbackStore",
    "feedback_interactions",
    "feedback_url",
    "open_feedback_store",
]


def feedback_url() -> str | None:
    """``$MTREC_FEEDBACK_URL`` when set (a ``postgresql://`` URL).

    Raises:
        ValueError: it is set to something that is not a PostgreSQL URL.
    """
    url = os.environ.get(ENV_URL, "").strip()
    if not url:
        return None
    if not PostgresFeedbackStore.handles(url):
        raise ValueError(f"{ENV_URL} must be a postgresql:// URL (or unset for SQLite)")
    return url


def open_feedback_store(
    ws: Workspace, create: bool = True, url: str | None = None
) -> FeedbackStore | None:
    """The feedback store: PostgreSQL at ``url`` (default ``$MTREC_FEEDBACK_URL``), else the
    workspace's SQLite file (None when that does not exist yet and ``create`` is off)."""
    url = url or feedback_url()
    if url:
        return PostgresFeedbackStore(url)
    if not create and not ws.feedback_path.exists():
        return None
    return SQLiteFeedbackStore(ws.feedback_path)


def feedback_interactions(store: FeedbackStore, ds: Dataset) -> list[Interaction]:
    """Stored events as ``Interaction`` records on the dataset's catalog (unknown items skipped)."""
    out = []
    for user_id, item_id, name, ts in store.events():
        if ds.has_item(item_id):
            event = Feedback(name)
            out.append(Interaction(user_id, item_id, event.event, event.rating, ts))
    return out
