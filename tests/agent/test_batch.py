"""`mtrec batch`: Parquet output equal to per-user recommendations, resumable, clear errors.

The workspace is a small synthetic catalog, trained with `mtrec train --nproc 2` (a real
two-process DDP run through torchrun), so this module also covers the CLI side of DDP.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import agent.batch as batch_mod
from agent.recommender import Recommender
from tests.conftest import run_cli

DATASET = "synthetic:300:240:14000"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from agent.workspace import DatasetSpec, Workspace, index_items

    root = tmp_path_factory.mktemp("batch") / "ws"
    ws = Workspace(root)
    ws.set_dataset(DatasetSpec(DATASET))
    ws.index(create=True).sync(index_items(ws.dataset), show_progress=False)
    cmd = [sys.executable, "-c", "from agent.cli import main; main()"]
    cmd += ["train", "-w", str(root), "--nproc", "2", "--epochs", "2", "--device", "cpu"]
    proc = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["world_size"] == 2 and summary["epochs_run"] == 2
    return root


@pytest.fixture(scope="module")
def rec(workspace: Path) -> Recommender:
    return Recommender.load(workspace, llm="none")


@pytest.fixture(scope="module")
def full_run(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """An uninterrupted model-only run over all users (the reference output)."""
    out = tmp_path_factory.mktemp("full") / "recs.parquet"
    rec = Recommender.load(workspace, llm="none")
    summary = batch_mod.run_batch(rec, batch_mod.read_users(rec, "all"), out, chunk_size=64)
    assert summary.users == 240 and summary.rows == 2400 and summary.chunks == 4
    return pd.read_parquet(out)


@pytest.mark.slow
def test_trained_with_ddp_loads_in_one_process(rec):
    assert rec.model.metrics.get("world_size") == 2
    res = rec.recommend(user_id="3", k=5, llm="none")
    assert len(res.items) == 5


@pytest.mark.slow
def test_cli_writes_parquet_and_matches_recommend(workspace, rec, tmp_path, capsys):
    out = tmp_path / "recs.parquet"
    args = ["batch", "-w", str(workspace), "--users", "all", "--out", str(out)]
    code, stdout, stderr = run_cli([*args, "--chunk-size", "100", "--json"], capsys)
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["users"] == 240 and summary["rows"] == 2400 and summary["chunks"] == 3
    assert summary["resumed_chunks"] == 0 and summary["llm"] == "none"
    assert not (tmp_path / "recs.parquet.parts").exists()
    df = pd.read_parquet(out)
    assert list(df.columns) == ["user_id", "rank", "item_id", "score", "tier"]
    assert (df.groupby("user_id")["rank"].apply(list) == [list(range(1, 11))] * 240).all()
    assert set(df["tier"]) == {"none"}
    for user in ["0", "7", "42", "133", "239"]:
        want = rec.recommend(user_id=user, k=10, llm="none", explain=False)
        got = df[df["user_id"] == user].sort_values("rank")
        assert got["item_id"].tolist() == [it.item_id for it in want.items]
        assert got["score"].tolist() == pytest.approx([it.score for it in want.items], abs=1e-4)


@pytest.mark.slow
def test_resumes_after_a_crash_and_equals_an_uninterrupted_run(
    workspace, full_run, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "recs.parquet"
    real_write = batch_mod._write_part
    written: list[int] = []

    def crash_after_two(parts: Path, i: int, table) -> None:
        if len(written) == 2:
            raise RuntimeError("simulated crash")
        real_write(parts, i, table)
        written.append(i)

    monkeypatch.setattr(batch_mod, "_write_part", crash_after_two)
    args = ["batch", "-w", str(workspace), "--users", "all", "--out", str(out)]
    args += ["--chunk-size", "64"]
    code, _, stderr = run_cli(args, capsys)
    assert code == 1 and "simulated crash" in stderr
    parts = tmp_path / "recs.parquet.parts"
    assert sorted(p.name for p in parts.glob("part-*.parquet")) == [
        "part-000000.parquet",
        "part-000001.parquet",
    ]
    assert not out.exists()
    # A torn temporary file from the crash is ignored.
    (parts / ".part-000002.parquet.999.tmp").write_bytes(b"PAR1 torn")

    monkeypatch.setattr(batch_mod, "_write_part", real_write)
    code, stdout, stderr = run_cli([*args, "--json"], capsys)
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["resumed_chunks"] == 2 and summary["chunks"] == 4
    assert not parts.exists()
    pd.testing.assert_frame_equal(pd.read_parquet(out), full_run)


@pytest.mark.slow
def test_explanations_for_a_users_file(workspace, tmp_path, capsys):
    users = tmp_path / "users.txt"
    users.write_text("# a cohort\n5\n\n9\n5\n")
    out = tmp_path / "expl.parquet"
    args = ["batch", "-w", str(workspace), "--users", str(users), "--out", str(out)]
    code, _, stderr = run_cli([*args, "-k", "3", "--explain"], capsys)
    assert code == 0, stderr
    df = pd.read_parquet(out)
    assert df["user_id"].tolist() == ["5"] * 3 + ["9"] * 3
    assert df["explanation"].str.len().min() > 0
    assert "wrote 6 rows for 2 users" in stderr


@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_2(workspace, tmp_path, capsys):
    base = ["batch", "-w", str(workspace), "--out"]
    out = tmp_path / "r.parquet"

    users = tmp_path / "u.txt"
    users.write_text("1\nnobody\n2\nghost\n")
    code, _, stderr = run_cli([*base, str(out), "--users", str(users)], capsys)
    assert code == 2 and "2 unknown user id(s)" in stderr and "nobody" in stderr
    assert len(stderr.strip().splitlines()) == 1

    out.write_text("x")
    code, _, stderr = run_cli([*base, str(out), "--users", "all"], capsys)
    assert code == 2 and "already exists" in stderr and "--overwrite" in stderr

    cases = [
        ([*base, str(tmp_path / "n.parquet"), "--users", "all", "--llm", "gpt"], "--llm"),
        ([*base, str(tmp_path / "n.parquet"), "--users", str(tmp_path / "no.txt")], "not a file"),
        ([*base, str(tmp_path / "nodir" / "x.parquet"), "--users", "all"], "does not exist"),
        ([*base, str(tmp_path / "n.parquet"), "--users", "all", "-k", "0"], "-k"),
    ]
    for args, needle in cases:
        code, _, stderr = run_cli(args, capsys)
        assert code == 2 and needle in stderr, (args, stderr)


@pytest.mark.slow
def test_a_partial_run_with_other_options_is_not_mixed_in(workspace, tmp_path, monkeypatch, capsys):
    out = tmp_path / "recs.parquet"
    args = ["batch", "-w", str(workspace), "--users", "all", "--out", str(out)]

    def crash(parts: Path, i: int, table) -> None:
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(batch_mod, "_write_part", crash)
    assert run_cli([*args, "-k", "5"], capsys)[0] == 1
    monkeypatch.undo()
    code, _, stderr = run_cli([*args, "-k", "10"], capsys)
    assert code == 2 and "partial run with other options" in stderr
    code, _, stderr = run_cli([*args, "-k", "10", "--overwrite"], capsys)
    assert code == 0, stderr
    assert len(pd.read_parquet(out)) == 2400
