"""`mtrec batch --engine ray` on real Ray (a local cluster, and a `ray start --head` cluster
joined with --address): the same Parquet schema and rows as the local engine on ml-100k."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from agent.distributed import free_port

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    # Ray swaps 127.0.0.1 for the machine's own address when it joins a cluster; with this it
    # keeps every connection on loopback (the tests must not leave it).
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}

pytest.importorskip("ray.data", reason="install mtrec[scale] for the Ray engine")


def batch(
    ws: Path, out: Path, *args: str, json_out: bool = True, env: dict | None = None
) -> tuple[dict | None, str]:
    cmd = [sys.executable, "-m", "agent", "batch", "-w", str(ws), "--out", str(out), *args]
    proc = subprocess.run(
        [*cmd, *(["--json"] if json_out else [])],
        cwd=ROOT,
        env=env or ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (json.loads(proc.stdout) if json_out else None), proc.stderr


def engine_of(path: Path) -> str:
    return pq.read_schema(path).metadata[b"mtrec.engine"].decode()


@pytest.fixture(scope="module")
def local_run(trained_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "recs.parquet"
    # The chunks the Ray runs below use: a chunk is scored as one batch of tensor work, and
    # another batch size sums floats in another order (~1e-5), enough to swap two items whose
    # scores tie to that precision. The engines are compared on the same chunks.
    summary, _ = batch(
        trained_workspace, out, "--users", "all", "--threads", "1", "--chunk-size", "100"
    )
    assert summary["engine"] == "local" and summary["users"] == 943
    return out


def assert_same_rows(a: Path, b: Path) -> None:
    left, right = pd.read_parquet(a), pd.read_parquet(b)
    assert pq.read_schema(a).remove_metadata() == pq.read_schema(b).remove_metadata()
    assert left[["user_id", "rank", "item_id", "tier"]].equals(
        right[["user_id", "rank", "item_id", "tier"]]
    )
    # The same chunks, so the lists above are equal; the scores are held to the tolerance the
    # local engine's own test allows between a batch and single requests (1e-4).
    assert (left["score"] - right["score"]).abs().max() <= 1e-4


@pytest.mark.slow
def test_ray_engine_equals_the_local_engine_on_ml100k(trained_workspace, local_run, tmp_path):
    out = tmp_path / "ray.parquet"
    summary, _ = batch(
        trained_workspace,
        out,
        "--users",
        "all",
        "--engine",
        "ray",
        "--workers",
        "2",
        "--chunk-size",
        "100",
        "--threads",
        "1",
    )
    assert summary["engine"] == "ray" and summary["workers"] == 2
    assert summary["users"] == 943 and summary["rows"] == 9430
    assert summary["actor_processes"] >= 1  # scored in Ray actors, not in the driver
    assert engine_of(out) == "ray" and engine_of(local_run) == "local"
    assert_same_rows(local_run, out)


@pytest.mark.slow
def test_ray_joins_a_running_cluster_with_address(trained_workspace, local_run, tmp_path):
    """`ray start --head` (the README's command, on loopback), then `--address` to join it."""
    ray_cli = Path(sys.executable).parent / "ray"
    port = free_port()
    # `ray start --head` turns on Ray's token authentication (its token in ~/.ray/auth_token):
    # clients join with RAY_AUTH_MODE=token, as the README says.
    env = {**ENV, "RAY_AUTH_MODE": "token"}
    head_log = (tmp_path / "head.log").open("wb")
    head = subprocess.Popen(
        [
            str(ray_cli),
            "start",
            "--head",
            "--block",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(port),
            "--num-cpus",
            "1",
            "--include-dashboard",
            "false",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=head_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so that we stop exactly it
    )
    try:
        users = tmp_path / "users.txt"
        users.write_text("\n".join(str(u) for u in range(1, 201)) + "\n")
        out = tmp_path / "joined.parquet"
        deadline = time.monotonic() + 240
        while True:  # the head is up when a client can join
            probe = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    f"import ray; ray.init(address='127.0.0.1:{port}'); "
                    "print(ray.cluster_resources().get('CPU'))",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if probe.returncode == 0:
                break
            assert head.poll() is None, (tmp_path / "head.log").read_text()[-2000:]
            assert time.monotonic() < deadline, probe.stderr[-2000:]
            time.sleep(2)
        _, stderr = batch(
            trained_workspace,
            out,
            "--users",
            str(users),
            "--engine",
            "ray",
            "--address",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--chunk-size",
            "100",
            json_out=False,
            env=env,
        )
        said = " ".join(stderr.split())  # the console wraps long lines
        assert "wrote 2000 rows for 200 users" in said and "on Ray (1 worker)" in said
        assert engine_of(out) == "ray"
        local = pd.read_parquet(local_run)
        want = local[local["user_id"].isin([str(u) for u in range(1, 201)])].reset_index(drop=True)
        got = pd.read_parquet(out)
        assert got[["user_id", "rank", "item_id"]].equals(want[["user_id", "rank", "item_id"]])
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(30)
        with contextlib.suppress(ProcessLookupError):  # what is left of the group we started
            os.killpg(head.pid, signal.SIGKILL)
        head.wait(10)
        head_log.close()


def test_bad_engine_options_are_exit_2(trained_workspace, tmp_path, capsys):
    from tests.conftest import run_cli

    base = ["batch", "-w", str(trained_workspace), "--users", "all", "--out"]
    cases = [
        (["--engine", "spark"], "--engine must be local or ray"),
        (["--address", "127.0.0.1:1"], "need --engine ray"),
        (["--engine", "ray", "--workers", "0"], "--workers must be >= 1"),
    ]
    for args, needle in cases:
        code, _, err = run_cli([*base, str(tmp_path / "x.parquet"), *args], capsys)
        assert code == 2 and needle in err, (args, err)
    assert not (tmp_path / "x.parquet").exists()
