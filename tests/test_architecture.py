"""The shape of the code, checked rather than hoped for.

* the import-linter contracts in ``pyproject.toml`` (layers of ``agent/``, ``mtrec`` and
  ``retrieval`` apart, nothing imports ``agent``, no cycles between siblings);
* no module reaches into another object's private members;
* no function in ``agent/`` runs over 80 lines, and the ``Recommender`` facade stays small.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "mtrec", "retrieval")

#: Private attributes of third-party objects that we use on purpose, with the reason.
ALLOWED_PRIVATE = {
    # llama-cpp-python has no public call for the logits of every position of one decode
    # (``Llama.eval`` keeps the last one unless the model is built with ``logits_all``, which
    # allocates n_ctx x n_vocab floats: 2 GB for Gemma's vocabulary). The local tier scores
    # candidate titles with its batch and context wrappers instead.
    ("agent/llm/local.py", "llm._ctx"),
    ("agent/llm/local.py", "llm._batch"),
}


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_import_contracts_hold() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which(
        "lint-imports"
    )
    if exe is None:
        pytest.fail("lint-imports is not installed (it is in the dev extras)")
    proc = subprocess.run(
        [exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_no_module_reaches_into_private_members() -> None:
    found = []
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # A module's own classes may reach their own private members by name.
        own = {"self", "cls"} | {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            name = node.attr
            if not name.startswith("_") or name.startswith("__"):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in own:
                continue
            if (rel, ast.unparse(node)) not in ALLOWED_PRIVATE:
                found.append(f"{rel}:{node.lineno} {ast.unparse(node)}")
    assert not found, "private members used from outside their object:\n" + "\n".join(found)


def test_functions_in_agent_are_short() -> None:
    long = []
    for path in sorted((ROOT / "agent").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > 80:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert not long, "functions over 80 lines:\n" + "\n".join(long)


def test_the_recommender_facade_stays_small() -> None:
    tree = ast.parse((ROOT / "agent" / "recommender.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Recommender")
    assert cls.end_lineno - cls.lineno + 1 < 300  # type: ignore[operator]
