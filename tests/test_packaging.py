"""The installable wheel: built, installed into a fresh venv (no editable install), used.

The fresh venv gets the wheel only; its dependencies come from the running interpreter's
site-packages through a plain path entry (no ``.pth`` code runs from there, so an editable
install of this repository cannot shadow the wheel's copy, and the test checks that it did not).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What a source distribution holds: the build reads nothing else.
SOURCES = ("pyproject.toml", "README.md", "agent", "mtrec", "retrieval", "prompts")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src, dist = tmp / "src", tmp / "dist"
    src.mkdir()
    for name in SOURCES:  # a copy, so that the build leaves nothing in the checkout
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
         str(dist), str(src)],
        capture_output=True, text=True, timeout=300, cwd=tmp,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (wheel,) = dist.glob("mtrec-*.whl")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    site = Path(
        sysconfig.get_path("purelib", vars={"base": str(env_dir), "platbase": str(env_dir)})
    )
    parent = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "_mtrec_test_parent.pth").write_text("\n".join(sorted(parent)) + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install",
         "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True, timeout=300, cwd=tmp,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    return env_dir


def _run(env_dir: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MTREC_PROMPTS_DIR")}
    return subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def test_the_wheel_is_what_runs(wheel_venv: Path, tmp_path: Path) -> None:
    code = "import agent, mtrec_prompts; print(agent.__file__); print(mtrec_prompts.__file__)"
    proc = _run(wheel_venv, [str(wheel_venv / "bin" / "python"), "-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for line in proc.stdout.split():
        assert Path(line).resolve().is_relative_to(wheel_venv.resolve()), line


def test_the_wheel_renders_every_prompt(wheel_venv: Path, tmp_path: Path) -> None:
    code = """
import json
from agent.llm.prompting import chat_messages, rank_prompt, reason_prompt
from agent.llm.types import PromptCandidate, PromptHistory, RerankRequest
from agent.prompts import load_prompt, prompt_names

names = prompt_names()
hist = PromptHistory("H1", "1", "Toy Story", ("Animation",), 5.0)
cand = PromptCandidate("C1", "2", "Heat", 1995, ("Crime",), "A heist.", 0.1, 0.7, 4.0)
req = RerankRequest((hist,), (cand,), (("Crime", 0.5),), 5)
out = {name: load_prompt(name).id for name in names}
out["texts"] = [*chat_messages(req), rank_prompt(req), reason_prompt(cand, hist)]
out["chat_intent"] = load_prompt("chat_intent").render(
    "system", categories="Crime", shown="(nothing yet)")
print(json.dumps(out))
"""
    proc = _run(wheel_venv, [str(wheel_venv / "bin" / "python"), "-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    shipped = sorted(p.stem for p in (ROOT / "prompts").glob("*.txt"))
    assert shipped and all(name in out for name in shipped), (shipped, out)
    system, user, rank, reason = out["texts"]
    assert system.strip() and "Heat" in user and "Toy Story" in user
    assert "Toy Story" in rank and "Heat" in reason and "Toy Story" in reason
    assert "Crime" in out["chat_intent"]


def test_the_wheel_serves_a_recommendation(
    wheel_venv: Path, trained_workspace: Path, tmp_path: Path
) -> None:
    proc = _run(
        wheel_venv,
        [str(wheel_venv / "bin" / "mtrec"), "recommend", "-w", str(trained_workspace),
         "--user", "1", "-k", "5", "--llm", "none", "--json"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["tier"] == "none" and len(result["items"]) == 5
    assert all(it["explanation"] for it in result["items"])
