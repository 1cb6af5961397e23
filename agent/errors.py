"""Every exception the agent raises, and how each becomes one line for a person.

Two families, told apart by their base class:

* bad input (``ValueError`` and ``KeyError``, exit code 2 / HTTP 4xx): the caller can fix it;
* a missing or broken part of the installation (``RuntimeError``, exit code 1 / HTTP 5xx).

``redact`` removes every API key this process has loaded from any text that leaves it.
"""

from __future__ import annotations

import os
import re

#: Environment variables whose values must never be printed.
SECRET_ENV = ("OPENAI_API_KEY", "MTREC_LLM_API_KEY")
_KEY_PATTERN = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,})")
#: API keys loaded by any ``Settings`` of this process (environment or ``mtrec.toml``).
_SECRETS: set[str] = set()


# ---- bad input --------------------------------------------------------------------------------
class UsageError(ValueError):
    """A bad command-line value (exit code 2)."""


class ConfigFileError(ValueError):
    """The workspace config file is unsafe or malformed."""


class BatchError(ValueError):
    """A bad batch request (the CLI prints it as one line, exit code 2)."""


class ReportError(ValueError):
    """A bad report request or output path (the CLI prints it as one line, exit code 2)."""


# ---- a missing or broken part -------------------------------------------------------------------
class WorkspaceError(RuntimeError):
    """The workspace is missing something a command needs; the message says what to run."""


class TierError(RuntimeError):
    """An LLM tier could not produce a usable answer (the chain falls to the next tier)."""


class FeedbackStoreError(RuntimeError):
    """The feedback store cannot be reached or written."""


# ---- secrets ------------------------------------------------------------------------------------
def remember_secret(value: str) -> None:
    """Make ``redact`` remove ``value`` from every text from now on (keys of 8+ characters)."""
    if len(value) >= 8:  # not "none", "x", ...
        _SECRETS.add(value)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove secret values (and anything shaped like an OpenAI key) from text.

    Removed: the values of ``SECRET_ENV``, every API key a ``Settings`` loaded (environment or
    ``mtrec.toml``), ``secrets``, and ``sk-...`` tokens.
    """
    values = [os.environ.get(v, "") for v in SECRET_ENV] + list(_SECRETS) + list(secrets)
    for value in values:
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return _KEY_PATTERN.sub("***", text)


def user_facing(e: BaseException) -> tuple[str, int]:
    """A readable, secret-free message and an exit code for an exception.

    Exit codes: 2 for bad input (data, arguments, unknown ids), 1 for everything else.
    """
    from pydantic import ValidationError

    from mtrec.data.download import DownloadError
    from mtrec.data.errors import DataError
    from mtrec.model.checkpoint import CheckpointError
    from retrieval import RetrievalError

    if isinstance(e, KeyError):
        message = str(e.args[0]) if e.args else "unknown key"
    elif isinstance(e, ValidationError):  # one line: "k: Input should be ... ; query: ..."
        message = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or e.title}: {err['msg']}"
            for err in e.errors(include_url=False)
        )
    else:
        message = str(e) or type(e).__name__
    if isinstance(
        e,
        WorkspaceError
        | FeedbackStoreError
        | TierError
        | CheckpointError
        | DownloadError
        | RetrievalError,
    ):
        code = 1
    elif isinstance(e, DataError | ValueError | KeyError):
        code = 2
    elif isinstance(e, OSError | MemoryError):
        message = f"{type(e).__name__}: {message}"
        code = 1
    else:
        message = f"unexpected {type(e).__name__}: {message} (set MTREC_DEBUG=1 for a traceback)"
        code = 1
    return redact(message), code
