"""Files the agent writes and reads: atomic writes, and lists of user ids.

Every file the agent leaves behind (workspace manifests, reports, batch parts and their
manifest, the merged Parquet output) goes through ``atomic_path``: a reader, a rerun or a crash
sees either the whole new file or the old one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, mode: int | None = None) -> Iterator[Path]:
    """A temporary path beside ``path``; on a clean exit it is synced and renamed to ``path``.

    Write the file at the yielded path (any writer: text, Parquet, ...). On an exception the
    temporary file is removed and ``path`` keeps what it held before.

    Args:
        path: The final file.
        mode: Permission bits of the final file (default: ``mkstemp``'s 0600).
    """
    final = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str, mode: int | None = None) -> Path:
    """Write UTF-8 text to ``path`` atomically (see ``atomic_path``); returns the path."""
    with atomic_path(path, mode) as tmp:
        tmp.write_bytes(text.encode("utf-8"))
    return Path(path)


def read_user_selection(
    users: str | Path | Sequence[str], all_ids: Sequence[str]
) -> tuple[list[str], str]:
    """The user ids a batch or cohort names, once each in order, and how they were named.

    Args:
        users: ``"all"``, a file (one id a line; blank lines and ``#`` comments skipped) or a
            list of ids.
        all_ids: Every dataset user, for ``"all"``.

    Returns:
        ``(ids, selection)`` with selection ``"all"``, ``"file"`` or ``"list"``.

    Raises:
        ValueError: the file cannot be read or is not UTF-8 text.
    """
    if isinstance(users, str) and users == "all":
        ids, selection = list(all_ids), "all"
    elif isinstance(users, str | Path):
        path = Path(users)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise ValueError(f"cannot read the users file {str(path)!r}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise ValueError(f"the users file {str(path)!r} is not UTF-8 text") from None
        ids = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        selection = "file"
    else:
        ids, selection = [str(u) for u in users], "list"
    return list(dict.fromkeys(ids)), selection
