"""Versioned prompt templates: text files in ``prompts/`` with a small front matter.

A file looks like::

    ---
    name: rerank
    version: 1
    ---
    [system]
    ...
    [user]
    ...

The id ``name@vVERSION`` is part of the answer cache key and of every response's metadata.

The files ship inside the installed distribution as the package ``mtrec_prompts`` (the
repository's ``prompts/`` folder, mapped in ``pyproject.toml``) and are read with
``importlib.resources``, so a wheel or a Docker image finds them like a source checkout does.
``$MTREC_PROMPTS_DIR`` points at another folder of templates (to try a prompt without a
release).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

#: The package that holds the templates in an installed distribution.
PROMPTS_PACKAGE = "mtrec_prompts"
_SECTION = re.compile(r"^\[([\w.]+)\]\s*$", re.MULTILINE)


def prompts_dir() -> Traversable:
    """Where templates are read from: ``$MTREC_PROMPTS_DIR``, else the installed package."""
    env = os.environ.get("MTREC_PROMPTS_DIR")
    return Path(env) if env else resources.files(PROMPTS_PACKAGE)


def prompt_names() -> list[str]:
    """Every template in ``prompts_dir()``, by name."""
    return sorted(p.name[:-4] for p in prompts_dir().iterdir() if p.name.endswith(".txt"))


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    sections: dict[str, str]

    @property
    def id(self) -> str:
        return f"{self.name}@v{self.version}"

    def render(self, section: str, **values: str) -> str:
        """Fill a section; values are inserted verbatim (they are not re-parsed as templates)."""
        return self.sections[section].format(**values)


@cache
def load_prompt(name: str) -> PromptTemplate:
    """Load the template ``NAME.txt``.

    Raises:
        FileNotFoundError: no such prompt.
        ValueError: the file has no front matter with a version.
    """
    path = prompts_dir() / f"{name}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"no prompt template {name!r} in {prompts_dir()}")
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        raise ValueError(f"{path}: prompt files start with a '---' front matter")
    _, front, body = text.split("---", 2)
    meta = dict(
        (k.strip(), v.strip())
        for k, v in (line.split(":", 1) for line in front.strip().splitlines())
    )
    if "version" not in meta:
        raise ValueError(f"{path}: front matter has no version")
    parts = _SECTION.split(body)
    sections = {parts[i]: parts[i + 1].strip("\n") for i in range(1, len(parts) - 1, 2)}
    return PromptTemplate(meta.get("name", name), meta["version"], sections)
