"""Shared fixtures. Expensive things (datasets, models) are session-scoped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.distributed import free_port

# Nothing in the suite may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """The real ml-100k atomic files, fetched the way users fetch them (`mtrec data get`)."""
    from mtrec.data.download import get_dataset

    return get_dataset("ml-100k", quiet=True)


@pytest.fixture(scope="session")
def ml100k(ml100k_dir: Path):
    from mtrec.data import load_dataset

    return load_dataset(ml100k_dir, format="atomic")


@pytest.fixture(scope="session")
def synthetic():
    """A small synthetic dataset with planted category preferences."""
    from mtrec.data import generate_synthetic

    return generate_synthetic(
        n_items=300, n_users=240, n_interactions=14_000, n_categories=6, seed=7
    )


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the `mtrec` CLI in-process; returns (exit code, stdout, stderr)."""
    from agent.cli import main

    code = 0
    try:
        main(args)
    except SystemExit as e:
        code = int(e.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="session")
def ml100k_workspace(tmp_path_factory: pytest.TempPathFactory, ml100k_dir: Path) -> Path:
    """A workspace with ml-100k loaded and indexed by the real embedder in embedded Chroma."""
    from agent.workspace import DatasetSpec, Workspace, index_items

    root = tmp_path_factory.mktemp("ws") / "ml100k"
    ws = Workspace(root)
    ws.set_dataset(DatasetSpec("ml-100k"))
    ws.index(create=True).sync(index_items(ws.dataset), show_progress=False)
    return root


@pytest.fixture(scope="session")
def trained_workspace(ml100k_workspace: Path) -> Path:
    """The ml-100k workspace with a briefly trained model (2 epochs: enough to be sane)."""
    from agent.training_run import run_training
    from agent.workspace import Workspace

    run_training(Workspace(ml100k_workspace), "loo", epochs=2, show_progress=False)
    return ml100k_workspace


def _chroma_executable() -> str | None:
    # Prefer the CLI installed alongside this interpreter (venvs), then PATH.
    beside = Path(sys.executable).parent / "chroma"
    return str(beside) if beside.exists() else shutil.which("chroma")


@pytest.fixture(scope="session")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``chroma run`` server on a free loopback port, shared by the session."""
    exe = _chroma_executable()
    if exe is None:
        pytest.skip("the `chroma` CLI is not installed")
    data = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    log = (data / "server.log").open("wb")
    proc = subprocess.Popen(
        [exe, "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"chroma server exited early: {(data / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("chroma server did not answer its heartbeat within 30 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _need(what: str) -> None:
    """Skip a test whose real part is missing on a developer's machine; fail it in CI."""
    message = f"{what} (`.ci/run` installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def start_postgres():
    """A fresh PostgreSQL server (``tests.pg_server``), started; the caller destroys it."""
    from tests.pg_server import PostgresServer, pg_bindir

    bindir = pg_bindir()
    if bindir is None:
        _need("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        _need("psycopg is not installed (pip install -e '.[dev]')")
    server = PostgresServer(bindir)
    try:
        server.init()
        server.start()
    except BaseException:
        server.destroy()
        raise
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """A real PostgreSQL on a free loopback port, shared by the session (never killed)."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_url(postgres_server) -> str:
    """The URL of a fresh, empty database on the session's PostgreSQL."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path):
    """Each feedback backend in turn, empty (PostgreSQL is started only when asked for)."""
    from tests.feedback_backends import backend_for

    return backend_for(request.param, tmp_path, request)
