"""Access control of ``mtrec serve`` over real HTTP: keys, scopes, user binding, rate limits,
the body cap, CORS, the non-loopback guard, and that no key ever shows up in a log line or a
response. The keys file is made by ``mtrec keys add`` (hashes only)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.agent.test_server import ROOT, copy_workspace, serve_process
from tests.conftest import run_cli

ENV_TOKEN = "envkey-Feedback-Only-0123456789abcdef"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A keys file with four keys made by `mtrec keys add`; the tokens it printed."""
    path = tmp_path_factory.mktemp("keys") / "keys.toml"
    made: dict[str, str] = {}
    specs = {
        "reader": ["--scopes", "read"],
        "u42": ["--scopes", "read,feedback", "--user", "42"],
        "slow": ["--scopes", "read", "--rate-per-minute", "6"],
        "writer": ["--scopes", "read,feedback"],
    }
    for name, args in specs.items():
        cmd = [sys.executable, "-m", "agent", "keys", "add", "--file", str(path), "--name", name]
        out = subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert out.returncode == 0, out.stderr
        made[name] = out.stdout.strip()
        assert made[name].startswith("mtk_") and len(made[name]) > 40
    text = path.read_text()
    assert all(token not in text for token in made.values())  # hashes only
    assert text.count("sha256:") == 4 and oct(path.stat().st_mode)[-3:] == "600"
    made["env"] = ENV_TOKEN
    return path, made


@pytest.fixture(scope="module")
def served(trained_workspace, keys, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    path, _ = keys
    ws = copy_workspace(trained_workspace, tmp_path_factory.mktemp("access") / "ws")
    env = {"MTREC_API_KEYS": f"feedback={ENV_TOKEN}"}
    args = ["--llm", "none", "--keys-file", str(path), "--max-body", "4096", "--log-level", "info"]
    with serve_process(ws, *args, env=env) as url:
        yield url, ws.parent / f"serve-{url.rsplit(':', 1)[1]}.log"


SEEN: list[str] = []  # every response body and header block of this module, scanned at the end


def call(url: str, method: str, path: str, token: str | None = None, **kw) -> httpx.Response:
    headers = dict(kw.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    r = httpx.request(method, url + path, headers=headers, timeout=60, **kw)
    SEEN.append(r.text + "\n" + "\n".join(f"{k}: {v}" for k, v in r.headers.items()))
    return r


def test_no_key_is_401_and_health_says_only_that_it_lives(served):
    url, _ = served
    for method, path, body in [
        ("POST", "/recommend", {"user_id": "42", "k": 3}),
        ("GET", "/similar/1", None),
        ("POST", "/feedback", {"user_id": "42", "item_id": "1", "event": "like"}),
        ("POST", "/chat", {"session_id": "s", "message": "comedies"}),
    ]:
        r = call(url, method, path, json=body)
        assert r.status_code == 401, (path, r.text)
        assert "API key" in r.json()["detail"] and r.headers["www-authenticate"].startswith(
            "Bearer"
        )
    r = call(url, "POST", "/recommend", "mtk_not-a-real-key", json={"user_id": "42"})
    assert r.status_code == 401 and r.json()["detail"] == "invalid API key"
    r = call(
        url, "POST", "/recommend", json={"user_id": "42"}, headers={"Authorization": "Basic x"}
    )
    assert r.status_code == 401
    live = call(url, "GET", "/health").json()
    assert live["status"] == "ok" and live["auth"] == "keys" and "items" not in live
    assert call(url, "GET", "/").status_code == 200  # the page itself, which asks for a key


def test_scopes_are_enforced(served, keys):
    url, tokens = served[0], keys[1]
    r = call(url, "POST", "/recommend", tokens["reader"], json={"user_id": "42", "k": 3})
    assert r.status_code == 200 and len(r.json()["items"]) == 3
    assert call(url, "GET", "/similar/1?k=2", tokens["reader"]).status_code == 200
    h = call(url, "GET", "/health", tokens["reader"]).json()
    assert h["auth"] == "keys" and h["items"] == 1682  # the details need a read key
    fb = {"user_id": "42", "item_id": "1", "event": "like"}
    r = call(url, "POST", "/feedback", tokens["reader"], json=fb)
    assert r.status_code == 403 and "'feedback' scope" in r.json()["detail"]
    # The environment's key may only write feedback.
    r = call(url, "POST", "/recommend", tokens["env"], json={"user_id": "42", "k": 3})
    assert r.status_code == 403 and "'read' scope" in r.json()["detail"]
    r = call(url, "POST", "/feedback", tokens["env"], json={**fb, "user_id": "13"})
    assert r.status_code == 200 and r.json()["stored"] and r.json()["backend"] == "sqlite"


def test_a_key_bound_to_a_user_acts_for_that_user_only(served, keys):
    url, token = served[0], keys[1]["u42"]
    assert call(url, "POST", "/recommend", token, json={"user_id": "42", "k": 3}).status_code == 200
    for method, path, body in [
        ("POST", "/recommend", {"user_id": "7", "k": 3}),
        ("POST", "/feedback", {"user_id": "7", "item_id": "1", "event": "like"}),
        ("POST", "/chat", {"session_id": "b1", "user_id": "7", "message": "comedies"}),
        ("POST", "/chat", {"session_id": "b2", "message": "more", "state": {"user_id": "7"}}),
    ]:
        r = call(url, method, path, token, json=body)
        assert r.status_code == 403 and "acts for one user only" in r.json()["detail"], path
    ok = call(
        url, "POST", "/feedback", token, json={"user_id": "42", "item_id": "1", "event": "like"}
    )
    assert ok.status_code == 200 and ok.json()["stored"]
    anonymous = call(url, "POST", "/recommend", token, json={"history": ["1", "50"], "k": 3})
    assert anonymous.status_code == 200  # a raw history reveals no one's data


def test_chat_sessions_are_kept_apart_per_key(served, keys):
    url, tokens = served[0], keys[1]
    body = {"session_id": "shared-id", "message": "comedies from the 90s", "user_id": "42"}
    first = call(url, "POST", "/chat", tokens["u42"], json=body)
    assert first.status_code == 200 and first.json()["session_id"] == "shared-id"
    other = call(
        url,
        "POST",
        "/chat",
        tokens["reader"],
        json={"session_id": "shared-id", "message": "more like the first one"},
    )
    assert other.status_code == 200
    assert other.json()["state"]["user_id"] is None  # not user 42's session
    assert other.json()["state"]["categories"] == []


def test_rate_limit_is_429_with_retry_after(served, keys):
    url, token = served[0], keys[1]["slow"]  # 6 per minute: a burst of 1
    assert call(url, "GET", "/similar/1?k=2", token).status_code == 200
    r = call(url, "GET", "/similar/1?k=2", token)
    assert r.status_code == 429 and "rate limit of key 'slow'" in r.json()["detail"]
    assert 1 <= int(r.headers["retry-after"]) <= 10
    # Other keys are not slowed by it.
    assert call(url, "GET", "/similar/1?k=2", keys[1]["reader"]).status_code == 200


def test_bodies_over_the_cap_are_413(served, keys):
    url, token = served[0], keys[1]["reader"]
    big = {"session_id": "big", "message": "x" * 3000, "user_id": "42", "pad": "y" * 3000}
    r = call(url, "POST", "/chat", token, json=big)
    assert r.status_code == 413 and "over 4096 bytes" in r.json()["detail"]

    def stream():  # no Content-Length: the cap counts the bytes as they arrive
        yield b'{"user_id": "42", "query": "'
        for _ in range(10):
            yield b"z" * 1000
        yield b'"}'

    r = call(
        url,
        "POST",
        "/recommend",
        token,
        content=stream(),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413


def test_cors_is_closed_by_default(served, keys):
    url = served[0]
    pre = call(
        url,
        "OPTIONS",
        "/recommend",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert "access-control-allow-origin" not in pre.headers
    r = call(url, "GET", "/health", keys[1]["reader"], headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_no_key_in_any_log_line_or_response(served, keys):
    """Runs last in the module: every response above and the server's whole log."""
    _, log = served
    time.sleep(0.5)  # the access log of the last request
    text = log.read_text()
    assert "POST /recommend" in text  # the log is the real access log
    for name, token in keys[1].items():
        assert token not in text, f"key {name} in the server log"
        assert all(token not in body for body in SEEN), f"key {name} in a response"
        assert token[4:20] not in text  # not even a piece of it


def test_non_loopback_without_keys_refuses_to_start(trained_workspace, capsys):
    code, _, err = run_cli(["serve", "-w", str(trained_workspace), "--host", "0.0.0.0"], capsys)
    assert code == 2 and "refusing to serve 0.0.0.0 without API keys" in err
    assert "--insecure" in err and len(err.strip().splitlines()) <= 2  # the banner, the error


def test_bad_keys_files_are_one_line_without_the_token(
    trained_workspace, tmp_path, capsys, monkeypatch
):
    secret = "mtk_" + "s3cr3t" * 8
    cases = {
        f'[[keys]]\nname = "a"\ntoken = "{secret}"\nscopes = ["read"]\n': "hashes only",
        '[[keys]]\nname = "a"\nhash = "md5:00"\nscopes = ["read"]\n': "64 hex digits",
        f'[[keys]]\nname = "a"\nhash = "sha256:{"0" * 64}"\nscopes = ["admin"]\n': "unknown scope",
        "[[keys]\n": "not valid TOML",
    }
    for text, needle in cases.items():
        path = tmp_path / "keys.toml"
        path.write_text(text)
        code, out, err = run_cli(
            ["serve", "-w", str(trained_workspace), "--keys-file", str(path)], capsys
        )
        assert code == 2 and needle in err, err
        assert secret not in out + err
    monkeypatch.setenv("MTREC_API_KEYS", "read=short")
    code, _, err = run_cli(["serve", "-w", str(trained_workspace)], capsys)
    assert code == 2 and "MTREC_API_KEYS entry #1" in err and "short" not in err.split("#1")[1]


def test_the_chat_page_asks_for_a_key(trained_workspace, keys):
    """A real browser: the page shows the key box when the server needs a key, and sends it."""
    import threading

    import uvicorn

    from agent.access import AccessPolicy, read_keys_file
    from agent.recommender import Recommender
    from agent.server import create_app
    from tests.agent.test_browser import CHROMIUM, CHROMIUM_ARGS, _ensure_browser
    from tests.conftest import free_port

    _ensure_browser()
    from playwright.sync_api import sync_playwright

    policy = AccessPolicy(keys=tuple(read_keys_file(keys[0])))
    app = create_app(rec=Recommender.load(trained_workspace, llm="none"), llm="none", access=policy)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.1)
    try:
        with sync_playwright() as p:
            exe = CHROMIUM if os.path.exists(CHROMIUM) else None
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector("#apikey", state="visible", timeout=30_000)
                page.fill("#message", "comedies from the 90s")
                page.press("#message", "Enter")
                error = page.locator('[data-testid="error"]').first
                error.wait_for(timeout=60_000)
                assert "needs an API key" in error.inner_text()
                page.fill("#apikey", keys[1]["reader"])
                page.dispatch_event("#apikey", "change")
                page.fill("#message", "comedies from the 90s")
                page.press("#message", "Enter")
                page.locator('[data-testid="answer"]').first.wait_for(timeout=60_000)
                assert keys[1]["reader"] not in page.content()
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(15)
