"""Map exceptions to one line for the user, with secrets removed, and an exit code."""

from __future__ import annotations

import os
import re

from agent.settings import ConfigFileError, known_secrets
from agent.workspace import WorkspaceError
from mtrec.data.download import DownloadError
from mtrec.data.errors import DataError
from mtrec.model.checkpoint import CheckpointError

#: Environment variables whose values must never be printed.
SECRET_ENV = ("OPENAI_API_KEY", "MTREC_LLM_API_KEY")
_KEY_PATTERN = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,})")


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove secret values (and anything shaped like an OpenAI key) from text.

    Removed: the values of ``SECRET_ENV``, every API key a ``Settings`` loaded (environment or
    ``mtrec.toml``), ``secrets``, and ``sk-...`` tokens.
    """
    values = [os.environ.get(v, "") for v in SECRET_ENV] + list(known_secrets()) + list(secrets)
    for value in values:
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return _KEY_PATTERN.sub("***", text)


def user_facing(e: BaseException) -> tuple[str, int]:
    """A readable, secret-free message and an exit code for an exception.

    Exit codes: 2 for bad input (data, arguments, unknown ids), 1 for everything else.
    """
    from retrieval import RetrievalError

    bad_input = (DataError, ValueError, KeyError, ConfigFileError)
    from pydantic import ValidationError

    if isinstance(e, KeyError):
        message = str(e.args[0]) if e.args else "unknown key"
    elif isinstance(e, ValidationError):  # one line: "k: Input should be ... ; query: ..."
        message = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or e.title}: {err['msg']}"
            for err in e.errors(include_url=False)
        )
    else:
        message = str(e) or type(e).__name__
    if isinstance(e, (WorkspaceError, CheckpointError, DownloadError, RetrievalError)):
        code = 1
    elif isinstance(e, bad_input):
        code = 2
    elif isinstance(e, (OSError, MemoryError)):
        message = f"{type(e).__name__}: {message}"
        code = 1
    else:
        message = f"unexpected {type(e).__name__}: {message} (set MTREC_DEBUG=1 for a traceback)"
        code = 1
    return redact(message), code
