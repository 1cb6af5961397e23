"""Helpers shared by the benchmark scripts: machine info and results files."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
# Read when a benchmark imports this module, i.e. as it starts: the load it met. The load
# when the results are written (often minutes later, and raised by the benchmark itself) is
# recorded beside it.
LOADAVG_AT_START = [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "loadavg_at_start": LOADAVG_AT_START,
        "loadavg_at_write": [round(x, 2) for x in os.getloadavg()],
    }


def git_commit() -> str | None:
    """The checked-out commit, ``+dirty`` when tracked files have changes (None outside git).

    Changes under ``benchmarks/results/`` do not count: a benchmark appends its own figures
    there, and they do not change the code that produced them."""
    import subprocess

    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=root
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return None
    return head + (
        "+dirty"
        if git(
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":(exclude)benchmarks/results",
        )
        else ""
    )


def command() -> str:
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/NAME.json`` with the date, command and machine."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command(),
        "machine": machine(),
        **data,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)
    return path
