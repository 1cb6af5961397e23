"""Bad input at the CLI, the Python API and HTTP: a clear one-line error (exit 2 / HTTP 4xx)
or a defined answer, never a traceback, and nothing half-written.

Cases of issue #7 not covered elsewhere (test_cli, test_recommender, test_server,
test_report, tests/mtrec): k larger than the catalog, filters that match nothing, very long
queries and messages, non-UTF-8 arguments and input, workspace paths that are files or
climb out with ``..``, and a failed re-index that must leave the workspace as it was.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from tests.conftest import run_cli

NOTHING = ["--genre", "Documentary", "--year-min", "1900", "--year-max", "1901"]


def one_line_error(code: int, err: str, expected_code: int = 2) -> None:
    assert code == expected_code, err
    assert "Traceback" not in err and err.startswith("error:")
    assert len(err.strip().splitlines()) == 1, err


@pytest.fixture(scope="module")
def rec(trained_workspace):
    from agent.recommender import Recommender

    return Recommender.load(trained_workspace, llm="none")


# ---- k ------------------------------------------------------------------------------------------
def test_k_out_of_range_cli(trained_workspace, capsys):
    w = ["-w", str(trained_workspace), "--llm", "none"]
    for k in ("0", "-3", "5000"):
        code, _, err = run_cli(["recommend", "--user", "42", "-k", k, *w], capsys)
        one_line_error(code, err)
        assert "k:" in err
    code, _, err = run_cli(
        ["similar", "--item", "1", "-k", "0", "-w", str(trained_workspace)], capsys
    )
    assert code == 2 and "Traceback" not in err


def test_k_larger_than_the_eligible_items_gives_all_of_them(rec):
    docs = {it.item_id for it in rec.ds.items if "Documentary" in it.categories}
    seen = {rec.ds.items[i].item_id for i in rec.user_history("42").items}
    res = rec.recommend(user_id="42", k=1000, filters={"categories": ["Documentary"]}, llm="none")
    got = [it.item_id for it in res.items]
    assert len(got) == len(set(got)) and set(got) == docs - seen


# ---- filters that match nothing -----------------------------------------------------------------
def test_filters_matching_nothing_are_an_empty_answer(trained_workspace, rec, capsys):
    w = ["-w", str(trained_workspace)]
    code, out, _ = run_cli(
        ["recommend", "--user", "42", "--llm", "none", "--json", *NOTHING, *w], capsys
    )
    assert code == 0
    res = json.loads(out)
    assert res["items"] == [] and any("no item matches" in n for n in res["notes"])
    code, out, _ = run_cli(["search", "space", "--json", *NOTHING, *w], capsys)
    assert code == 0 and json.loads(out) == []
    code, out, _ = run_cli(["similar", "--item", "1", "--json", *NOTHING, *w], capsys)
    assert code == 0 and json.loads(out) == []
    from agent.chat import ChatEngine

    reply = ChatEngine(rec, llm="none").chat("nothing", "documentaries from 1900")
    assert reply.items == () and "Nothing left" in reply.reply


# ---- very long queries and messages -------------------------------------------------------------
def test_very_long_queries(trained_workspace, rec, capsys):
    long = "space adventure " * 10_000  # 160 KB
    w = ["-w", str(trained_workspace)]
    code, _, err = run_cli(
        ["recommend", "--user", "42", "--query", long, "--llm", "none", *w], capsys
    )
    one_line_error(code, err)
    assert "query:" in err and "2000" in err
    code, out, _ = run_cli(["search", long, "-k", "3", "--json", *w], capsys)
    assert code == 0 and len(json.loads(out)) == 3  # the embedder truncates: a defined answer
    with pytest.raises(ValueError, match="2000"):
        rec.recommend(user_id="42", query="x" * 2001)
    ok = rec.recommend(user_id="42", query="x" * 2000, k=3, llm="none")
    assert len(ok.items) == 3 and len(ok.query or "") <= 500

    from agent.chat import MAX_MESSAGE_CHARS, ChatEngine

    reply = ChatEngine(rec, llm="none", k=3).chat("long", "comedies " + "with robots " * 50_000)
    assert len(reply.items) == 3 and len(reply.state.query or "") <= MAX_MESSAGE_CHARS


# ---- non-UTF-8 input ----------------------------------------------------------------------------
def test_non_utf8_arguments(trained_workspace, capsys):
    # Python hands undecodable argv bytes over as lone surrogates (surrogateescape).
    w = ["-w", str(trained_workspace)]
    code, out, err = run_cli(
        ["search", "space \udcff\udcfe aliens", "-k", "3", "--json", *w], capsys
    )
    assert code == 0, err
    assert len(json.loads(out)) == 3
    code, out, err = run_cli(
        ["recommend", "--user", "42", "--query", "robots \udcff", "-k", "2", "--llm", "none", *w],
        capsys,
    )
    one_line_error(code, err)  # pydantic refuses the undecodable string, in one line
    assert "query:" in err
    code, _, err = run_cli(["recommend", "--user", "\udcff42", "--llm", "none", *w], capsys)
    one_line_error(code, err)
    assert "unknown user id" in err


def test_non_utf8_chat_input(rec, trained_workspace, capsys, monkeypatch):
    from agent.recommender import Recommender

    monkeypatch.setattr(Recommender, "load", classmethod(lambda cls, *a, **kw: rec))
    # A terminal whose input is not UTF-8: the line cannot be decoded.
    stdin = io.TextIOWrapper(io.BytesIO(b"comedies \xff\xfe please\n"), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    code, _, err = run_cli(["chat", "-w", str(trained_workspace), "--llm", "none"], capsys)
    one_line_error(code, err)
    assert "decode" in err
    # Undecodable bytes that did get through (surrogateescape) are cleaned, not fatal.
    from agent.chat import ChatEngine

    reply = ChatEngine(rec, llm="none", k=2).chat("bytes", "comedies \udcff\udcfe from the 90s")
    assert len(reply.items) == 2 and reply.state.categories == ["Comedy"]


# ---- paths --------------------------------------------------------------------------------------
def test_workspace_and_output_paths(trained_workspace, tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    code, _, err = run_cli(["similar", "--item", "1", "-w", str(a_file)], capsys)
    one_line_error(code, err, expected_code=1)
    assert "not a directory" in err
    # A workspace path through ".." that stays a real directory is fine.
    ws = Path(trained_workspace)
    up = ws.parent / ".." / ws.parent.name / ws.name
    code, out, _ = run_cli(["similar", "--item", "1", "-k", "2", "--json", "-w", str(up)], capsys)
    assert code == 0 and len(json.loads(out)) == 2
    # Output paths may not climb out of the current directory.
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(
        ["report", "--user", "42", "--out", "../../escape.md", "-w", str(trained_workspace)], capsys
    )
    assert code != 0 and "escapes" in err and "Traceback" not in err
    assert not (tmp_path.parent.parent / "escape.md").exists()


def test_http_bad_input(rec):
    from fastapi.testclient import TestClient

    from agent.server import create_app

    with TestClient(create_app(rec=rec, warm_up=False)) as c:
        r = c.post(
            "/recommend", json={"user_id": "42", "filters": {"year_min": 1900, "year_max": 1901}}
        )
        assert r.status_code == 200 and r.json()["items"] == []
        assert c.post("/recommend", json={"user_id": "42", "k": 5000}).status_code == 422
        assert c.post("/recommend", json={"user_id": "42", "query": "x" * 2001}).status_code == 422
        bad = c.post(
            "/recommend",
            content=b'{"user_id": "\xff42"}',
            headers={"content-type": "application/json"},
        )
        assert 400 <= bad.status_code < 500 and "Traceback" not in bad.text
        trav = c.get("/similar/..%2F..%2Fetc%2Fpasswd")
        assert trav.status_code == 404 and "root:" not in trav.text
        sess = c.post("/chat", json={"session_id": "../../etc", "message": "hi"})
        assert sess.status_code == 422
        chat = c.post("/chat", json={"session_id": "long", "message": "drama " * 20_000})
        assert chat.status_code in (200, 422) and "Traceback" not in chat.text


# ---- nothing half-written -----------------------------------------------------------------------
def test_failed_reindex_leaves_the_workspace_as_it_was(tmp_path, capsys):
    good = tmp_path / "good.csv"
    good.write_text(
        "user_id,item_id,rating,timestamp\n" + "".join(f"u{i % 3},i{i},4,{i}\n" for i in range(12))
    )
    ws = tmp_path / "ws"
    code, out, err = run_cli(["index", "--dataset", str(good), "-w", str(ws), "--json"], capsys)
    assert code == 0, err
    manifest = (ws / "workspace.json").read_text()
    for name, content in [
        ("semicolons.csv", "user_id;item_id;rating\nu1;i1;4\n"),
        ("future.csv", "user_id,item_id,rating,timestamp\nu1,i1,4,99999999999\n"),
        ("latin1.csv", "user_id,item_id,rating\nu1,caf\xe9,4\n"),
        ("empty.csv", ""),
    ]:
        bad = tmp_path / name
        bad.write_bytes(content.encode("latin-1"))
        code, _, err = run_cli(["index", "--dataset", str(bad), "-w", str(ws)], capsys)
        one_line_error(code, err)
        assert name in err
        assert (ws / "workspace.json").read_text() == manifest
    code, out, _ = run_cli(["index", "-w", str(ws), "--json"], capsys)
    summary = json.loads(out)
    assert code == 0 and summary["unchanged"] == 12 and summary["added"] == summary["deleted"] == 0
    assert os.listdir(ws) and not list(ws.glob("*.tmp"))
