"""Secrets: a planted API key never appears in anything the program emits.

The key is planted in the environment (``OPENAI_API_KEY``) and, separately, in the
workspace's ``mtrec.toml``. It is deliberately not shaped like an OpenAI key (``sk-...``),
so that only real redaction, not the ``sk-`` pattern, can hide it. The provider is a
loopback stand-in that echoes the key it receives back in its error bodies, in its
explanations and in chat intents (a real server will not misbehave on demand).

Scanned: CLI stdout/stderr (tables, ``--json``, error paths, the real console script), every
log record at DEBUG (ours, openai, httpx, uvicorn), exception messages and reprs from the
Python API, written reports, and HTTP responses of the service.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
KEY = "planted-4f9c2a7e61d0b3a8"  # not sk-shaped on purpose


class EchoProvider:
    """An OpenAI-compatible endpoint that puts the bearer token it receives into its answers."""

    def __init__(self) -> None:
        self.mode = "401"
        self.seen_keys: list[str] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers.get("Authorization", "").removeprefix("Bearer ")
                provider.seen_keys.append(key)
                provider.answer(self, body, key)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def answer(self, h: BaseHTTPRequestHandler, body: dict[str, Any], key: str) -> None:
        if self.mode in ("401", "500"):
            code = int(self.mode)
            data = {"error": {"message": f"Incorrect API key provided: {key}", "key": key}}
            return self._send(h, code, data)
        text = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
        tool = (body.get("tools") or [{}])[0].get("function", {}).get("name", "RerankOutput")
        if tool == "Intent":  # the chat's intent parser: the key comes back as the query
            args: dict[str, Any] = {"query": f"films about {key}"}
        else:  # "ok": a clean ranking; "echo": the key inside every explanation
            cands = re.findall(r"^(C\d+): ", text, flags=re.MULTILINE)
            why = f"Picked with key {key}." if self.mode == "echo" else "A good pick."
            args = {"ranking": [{"id": c, "explanation": why} for c in cands]}
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": tool, "arguments": json.dumps(args)},
                }
            ],
        }
        self._send(
            h,
            200,
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": key,
                "choices": [{"index": 0, "finish_reason": "tool_calls", "message": message}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, code: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        try:
            h.send_response(code)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def provider() -> Iterator[EchoProvider]:
    p = EchoProvider()
    yield p
    p.server.shutdown()
    p.server.server_close()


@pytest.fixture(scope="module")
def workspace(trained_workspace, tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("secrets") / "ws"
    shutil.copytree(
        trained_workspace, dst, ignore=shutil.ignore_patterns("feedback*.sqlite*", ".lock")
    )
    return dst


@pytest.fixture(params=["env", "toml"])
def planted(request, workspace, provider, monkeypatch) -> str:
    """The key in the environment or in a chmod-600 mtrec.toml; the endpoint in the env."""
    for var in ("OPENAI_API_KEY", "MTREC_LLM_API_KEY", "OPENAI_BASE_URL", "MTREC_LLM_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MTREC_LLM_BASE_URL", provider.url)
    monkeypatch.setenv("MTREC_LLM_TIMEOUT_S", "3")
    # No local model: a failing remote tier falls straight to model-only (and fast).
    monkeypatch.setenv("MTREC_LOCAL_MODEL_PATH", "/nonexistent/model.gguf")
    toml = workspace / "mtrec.toml"
    if request.param == "env":
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        toml.unlink(missing_ok=True)
    else:
        toml.write_text(f'llm_api_key = "{KEY}"\nllm_model = "m"\n')
        toml.chmod(0o600)
    yield request.param
    toml.unlink(missing_ok=True)


@pytest.fixture
def debug_logs(caplog) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # root and every library logger: openai, httpx, httpcore
    return caplog


def emitted(*texts: str, logs: pytest.LogCaptureFixture | None = None) -> str:
    parts = list(texts)
    if logs is not None:
        parts.append(logs.text)
        parts += [repr(r.args) + str(r.msg) for r in logs.records]
    return "\n".join(parts)


def test_cli_outputs_logs_and_reports(planted, workspace, provider, capsys, debug_logs, tmp_path):
    w = str(workspace)
    outputs: list[str] = []
    for mode, args in [
        ("401", ["recommend", "--user", "42", "-k", "3", "--llm", "remote", "--json"]),
        ("500", ["recommend", "--user", "42", "-k", "3", "--llm", "remote"]),
        ("ok", ["recommend", "--user", "43", "-k", "3", "--llm", "remote", "--json"]),
        ("ok", ["recommend", "--user", "44", "-k", "3", "--llm", "remote"]),
        ("401", ["recommend", "--user", "nobody", "--llm", "remote"]),
        ("401", ["recommend", "--user", "42", "-k", "0", "--json"]),
        ("ok", ["similar", "--item", "1", "--json"]),
        ("ok", ["report", "--user", "42", "-k", "3", "--llm", "remote", "--out", "r.md"]),
        ("ok", ["report", "--user", "45", "-k", "3", "--llm", "remote", "--out", "r.json"]),
        ("401", ["report", "--user", "46", "-k", "3", "--llm", "remote", "--out", "r.html"]),
    ]:
        provider.mode = mode
        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            code, out, err = run_cli([*args, "-w", w], capsys)
        finally:
            os.chdir(cwd)
        outputs += [out, err]
        if "--json" in args and code == 0:
            json.loads(out)
    assert KEY in provider.seen_keys, "the planted key never reached the provider"
    reports = [p.read_text() for p in tmp_path.glob("r.*")]
    assert len(reports) == 3
    text = emitted(*outputs, *reports, logs=debug_logs)
    assert KEY not in text


def test_chat_with_a_provider_that_echoes_the_key(
    planted, workspace, provider, capsys, monkeypatch
):
    provider.mode = "ok"
    monkeypatch.setattr("sys.stdin", io.StringIO("comedies\nnot the first one\nlike 2\n"))
    code, out, err = run_cli(["chat", "-w", str(workspace), "--llm", "remote", "-k", "3"], capsys)
    assert code == 0
    provider.mode = "500"
    monkeypatch.setattr("sys.stdin", io.StringIO("westerns\n"))
    code2, out2, err2 = run_cli(["chat", "-w", str(workspace), "-k", "2"], capsys)
    assert code2 == 0
    assert KEY not in emitted(out, err, out2, err2)


def test_llm_explanation_echoing_the_key_is_redacted(planted, workspace, provider, capsys):
    provider.mode = "echo"
    w = ["-w", str(workspace)]
    code, out, err = run_cli(
        ["recommend", "--user", "48", "-k", "3", "--llm", "remote", "--json", *w], capsys
    )
    assert code == 0 and json.loads(out)["tier"] == "remote"
    assert KEY not in emitted(out, err)


def test_python_api_results_exceptions_and_settings(planted, workspace, provider, debug_logs):
    from agent.recommender import Recommender
    from agent.settings import ConfigFileError, load_settings

    rec = Recommender.load(workspace)
    assert rec.settings.llm_api_key is not None
    texts = [repr(rec.settings), str(rec.settings), rec.settings.model_dump_json()]
    for mode in ("401", "500", "ok"):
        provider.mode = mode
        rec.cache.clear()
        rec.chain.breakers["remote"].success()
        res = rec.recommend(user_id="42", k=5, llm="remote")
        texts += [res.model_dump_json(), repr(res)]
    for call in (
        lambda: rec.recommend(user_id="nobody"),
        lambda: rec.recommend(history=["1", "nope"]),
        lambda: rec.recommend(user_id="42", k=0),
        lambda: rec.recommend(user_id="42", filters={"categories": ["Polka"]}),
        lambda: rec.explain("42", "nope"),
    ):
        with pytest.raises((KeyError, ValueError)) as e:
            call()
        texts += [str(e.value), repr(e.value)]
    if planted == "toml":  # an unsafe config file is refused without echoing it
        (workspace / "mtrec.toml").chmod(0o644)
        with pytest.raises(ConfigFileError) as e:
            load_settings(workspace)
        texts += [str(e.value), repr(e.value)]
        (workspace / "mtrec.toml").chmod(0o600)
    assert KEY not in emitted(*texts, logs=debug_logs)


def test_http_service_responses_and_logs(planted, workspace, provider, debug_logs):
    from fastapi.testclient import TestClient

    from agent.recommender import Recommender
    from agent.server import create_app

    rec = Recommender.load(workspace)
    bodies: list[str] = []
    with TestClient(create_app(rec=rec, warm_up=False)) as client:
        for mode, method, path, body in [
            ("401", "post", "/recommend", {"user_id": "42", "k": 3, "llm": "remote"}),
            ("ok", "post", "/recommend", {"user_id": "47", "k": 3, "llm": "remote"}),
            ("ok", "post", "/chat", {"session_id": "s1", "message": "scary films"}),
            ("500", "post", "/chat", {"session_id": "s2", "message": "westerns"}),
            ("ok", "post", "/recommend", {"user_id": "nobody"}),
            ("ok", "post", "/recommend", {"user_id": "42", "k": -1}),
            ("ok", "get", "/health", None),
            ("ok", "get", "/openapi.json", None),
        ]:
            provider.mode = mode
            rec.chain.breakers["remote"].success()
            r = client.post(path, json=body) if method == "post" else client.get(path)
            assert r.status_code < 500, r.text
            bodies += [r.text, str(dict(r.headers))]
    assert KEY not in emitted(*bodies, logs=debug_logs)


def test_real_console_script_error_path(planted, workspace, provider):
    """The installed entry point in a subprocess: stderr of a provider failure and a bad id."""
    provider.mode = "401"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("MTREC_DEBUG", None)
    w = str(workspace)
    outs: list[str] = []
    for args in (
        ["recommend", "--user", "42", "-k", "2", "--llm", "remote", "--json"],
        ["recommend", "--user", "nobody", "--llm", "remote"],
    ):
        p = subprocess.run(
            [sys.executable, "-m", "agent", *args, "-w", w],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        outs += [p.stdout, p.stderr]
    assert KEY not in "\n".join(outs)
