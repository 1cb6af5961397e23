"""The `mtrec` CLI end to end on real ml-100k, real MiniLM and real Chroma."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from tests.conftest import run_cli


def test_similar_items_to_toy_story_share_its_genres(ml100k_workspace, capsys):
    code, out, _ = run_cli(
        ["similar", "--item", "1", "-w", str(ml100k_workspace), "--json"], capsys
    )
    assert code == 0
    hits = json.loads(out)
    assert len(hits) == 10
    toy = {"Animation", "Children's", "Comedy"}
    sharing = [h for h in hits if toy & set(h["categories"])]
    assert len(sharing) >= 8
    assert all(h["item_id"] != "1" for h in hits)


def test_similar_table_output(ml100k_workspace, capsys):
    code, out, _ = run_cli(["similar", "-i", "1", "-w", str(ml100k_workspace), "-k", "3"], capsys)
    assert code == 0 and "Toy Story" in out and "similarity" in out


def test_search_with_filters(ml100k_workspace, capsys):
    code, out, _ = run_cli(
        [
            "search",
            "space adventure with aliens",
            "-w",
            str(ml100k_workspace),
            "--genre",
            "Sci-Fi",
            "--year-min",
            "1980",
            "--json",
            "-k",
            "5",
        ],
        capsys,
    )
    assert code == 0
    hits = json.loads(out)
    assert len(hits) == 5
    assert all("Sci-Fi" in h["categories"] and h["year"] >= 1980 for h in hits)
    assert any("Alien" in h["title"] or "Star" in h["title"] for h in hits)


def test_reindex_unchanged_catalog_embeds_nothing(ml100k_workspace, capsys):
    code, out, _ = run_cli(["index", "-w", str(ml100k_workspace), "--json"], capsys)
    assert code == 0
    summary = json.loads(out)
    assert summary["unchanged"] == 1682 and summary["added"] == 0 and summary["deleted"] == 0


def test_errors_are_one_line_with_exit_code(ml100k_workspace, tmp_path, capsys):
    code, _, err = run_cli(["similar", "--item", "no-such", "-w", str(ml100k_workspace)], capsys)
    assert code != 0 and "no-such" in err and "Traceback" not in err
    code, _, err = run_cli(["search", "x", "-w", str(ml100k_workspace), "-k", "0"], capsys)
    assert code == 2 and "k" in err
    code, _, err = run_cli(["similar", "--item", "1", "-w", str(tmp_path / "empty")], capsys)
    assert code == 1 and "mtrec index" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("user;item\n1;2\n")
    code, _, err = run_cli(["index", "--dataset", str(bad), "-w", str(tmp_path / "w2")], capsys)
    assert code == 2 and "bad.csv" in err and "missing column" in err


def test_real_console_script_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "similar", "--item", "1", "-w", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "error:" in proc.stderr


def test_data_get_prints_path(capsys, ml100k_dir):
    code, out, err = run_cli(["data", "get", "ml-100k"], capsys)
    assert code == 0 and out.strip() == str(ml100k_dir) and "already cached" in err


def test_evaluate_json(trained_workspace, capsys):
    code, out, _ = run_cli(["evaluate", "-w", str(trained_workspace), "--json"], capsys)
    assert code == 0
    res = json.loads(out)
    assert res["protocol"] == "loo" and res["users"] == 943
    m = res["models"]["MTRec"]
    assert 0 < m["ndcg@10"] < 1 and 0 < m["coverage@10"] <= 1
    assert {"rating_rmse", "like_auc", "category_kl"} <= set(res["tasks"])


def test_recommend_json_and_table(trained_workspace, capsys):
    code, out, _ = run_cli(
        [
            "recommend",
            "--user",
            "42",
            "-k",
            "3",
            "--llm",
            "none",
            "--json",
            "-w",
            str(trained_workspace),
        ],
        capsys,
    )
    assert code == 0
    res = json.loads(out)
    assert res["tier"] == "none" and len(res["items"]) == 3
    assert all(it["explanation"] and it["grounded"] for it in res["items"])
    code, out, _ = run_cli(
        [
            "recommend",
            "--history",
            "1,71,95",
            "-k",
            "3",
            "--llm",
            "none",
            "-w",
            str(trained_workspace),
        ],
        capsys,
    )
    assert code == 0 and "Recommendations for this history" in out
    code, _, err = run_cli(["recommend", "--user", "nobody", "-w", str(trained_workspace)], capsys)
    assert code == 2 and "nobody" in err
    code, _, err = run_cli(["recommend", "-w", str(trained_workspace)], capsys)
    assert code == 2 and "--user" in err
    code, _, err = run_cli(
        ["recommend", "--user", "42", "--llm", "magic", "-w", str(trained_workspace)], capsys
    )
    assert code == 2 and "--llm" in err


def test_train_refuses_bad_protocol_and_epochs(ml100k_workspace, capsys):
    code, _, err = run_cli(["train", "-w", str(ml100k_workspace), "--protocol", "kfold"], capsys)
    assert code == 2 and "unknown protocol" in err
    code, _, err = run_cli(["train", "-w", str(ml100k_workspace), "--epochs", "0"], capsys)
    assert code == 2 and "--epochs" in err
    code, _, err = run_cli(["train", "-w", str(ml100k_workspace), "--threads", "-1"], capsys)
    assert code == 2 and "--threads" in err


def test_train_with_feedback_folds_events_into_training(trained_workspace, capsys):
    from agent.feedback import FeedbackStore
    from agent.workspace import Workspace

    ws = Workspace(trained_workspace)
    store = FeedbackStore(ws.root / "feedback-test.sqlite")
    store.add("42", "50", "like")
    store.add("brand-new", "1", "dislike")
    from agent.feedback import feedback_interactions

    events = feedback_interactions(store, ws.dataset)
    ds, rows = ws.dataset.with_interactions(events)
    assert len(rows) == 2 and ds.has_user("brand-new")
    assert ds.value[rows[0]] == 5.0 and ds.value[rows[1]] == 1.0


def test_demo_runs_the_main_job_with_the_local_tier(ml100k_workspace, gguf_path, tmp_path):
    """`mtrec demo` end to end (its ml-100k fetch, index, training, explained list) in a fresh
    process; the copied index makes its embedding step a no-op, and 1 epoch keeps it short."""
    import shutil

    ws = tmp_path / "demo"
    shutil.copytree(ml100k_workspace, ws, ignore=shutil.ignore_patterns(".lock"))
    run = subprocess.run(
        [sys.executable, "-m", "agent", "demo", "-w", str(ws), "--epochs", "1"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "1682 unchanged" in run.stderr and "4/4" in run.stderr
    assert "Recommendations for user 1 (tier: local" in run.stdout
    explained = {int(m.group(1)) for m in re.finditer(r"^(\d+)\. \S", run.stdout, re.M)}
    assert explained == set(range(1, 11)), run.stdout
    assert "Traceback" not in run.stderr
