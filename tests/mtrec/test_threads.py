"""AdaptiveThreads: torch threads follow the cores that other processes leave free."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import ClassVar

import numpy as np
import pytest
import torch

from mtrec import threads
from mtrec.threads import (
    PROC_STAT,
    AdaptiveThreads,
    cgroup_cpu_quota,
    machine_busy_seconds,
    usable_cores,
)


class FakeMachine:
    """A clock, the machine's busy CPU seconds and this process's own, advanced by hand."""

    def __init__(self) -> None:
        self.now, self.busy, self.own = 0.0, 0.0, 0.0
        self.applied: list[int] = []

    def advance(self, seconds: float, own_cores: float, other_cores: float) -> None:
        self.now += seconds
        self.own += seconds * own_cores
        self.busy += seconds * (own_cores + other_cores)

    def policy(self, cores: int = 2) -> AdaptiveThreads:
        return AdaptiveThreads(
            cores=cores,
            interval=2.0,
            busy_seconds=lambda: self.busy,
            own_seconds=lambda: self.own,
            clock=lambda: self.now,
            set_threads=self.applied.append,
        )


def test_starts_with_every_core_and_keeps_them_on_a_quiet_machine():
    m = FakeMachine()
    p = m.policy(cores=2)
    assert m.applied == [2]
    for _ in range(5):
        m.advance(2.5, own_cores=2.0, other_cores=0.1)
        assert p.update() == 2
    assert m.applied == [2]


def test_gives_a_core_to_a_neighbour_and_takes_it_back():
    m = FakeMachine()
    p = m.policy(cores=2)
    m.advance(2.5, own_cores=1.3, other_cores=0.7)  # a neighbour took 0.7 cores
    assert p.update() == 1
    m.advance(2.5, own_cores=1.0, other_cores=1.0)
    assert p.update() == 1
    m.advance(2.5, own_cores=1.0, other_cores=0.0)  # it ended
    assert p.update() == 2
    assert m.applied == [2, 1, 2]
    assert [t for _, t in p.changes] == [2, 1, 2]


def test_never_below_one_thread_nor_above_the_cores():
    m = FakeMachine()
    p = m.policy(cores=4)
    m.advance(3.0, own_cores=0.5, other_cores=6.0)
    assert p.update() == 1
    m.advance(3.0, own_cores=1.0, other_cores=1.6)  # 2.4 free -> 2
    assert p.update() == 2
    m.advance(3.0, own_cores=2.0, other_cores=0.0)
    assert p.update() == 4


def test_measures_only_once_per_interval():
    m = FakeMachine()
    p = m.policy(cores=2)
    m.advance(1.0, own_cores=0.0, other_cores=2.0)
    assert p.update() == 2  # under 2 s since the last measurement: no change yet
    m.advance(1.5, own_cores=0.0, other_cores=2.0)
    assert p.update() == 1


def test_does_nothing_where_the_machine_cannot_be_read():
    applied: list[int] = []
    p = AdaptiveThreads(
        cores=2, busy_seconds=lambda: None, clock=lambda: 100.0, set_threads=applied.append
    )
    assert not p.enabled
    assert p.update() == 2
    assert applied == []


def test_proc_stat_parsing(tmp_path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text(
        "cpu  300 10 60 1000 30 5 5 70 40 3\n"
        "cpu0 100 0 20 500 10 1 1 30 20 1\n"
        "cpu1 200 10 40 500 20 4 4 40 20 2\n"
        "intr 12345\n"
    )
    hz = os.sysconf("SC_CLK_TCK")
    # Busy = user + nice + system + irq + softirq: not idle, iowait, steal, nor guest again.
    assert machine_busy_seconds(stat) == pytest.approx((300 + 10 + 60 + 5 + 5) / hz)
    assert machine_busy_seconds(stat, {1}) == pytest.approx((200 + 10 + 40 + 4 + 4) / hz)
    assert machine_busy_seconds(stat, {0, 1}) == pytest.approx(380 / hz)
    assert machine_busy_seconds(stat, {7}) is None
    stat.write_text("cpu  1 2 x 4 5 6 7 8\n")
    assert machine_busy_seconds(stat) is None
    stat.write_text("garbage\n")
    assert machine_busy_seconds(stat) is None
    assert machine_busy_seconds(tmp_path / "missing") is None


def test_usable_cores_is_the_affinity_capped_by_omp_num_threads(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: None)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert usable_cores() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert usable_cores() == 2
    for ignored in ("0", "abc", ""):
        monkeypatch.setenv("OMP_NUM_THREADS", ignored)
        assert usable_cores() == 4


def _write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# The cgroup trees below are files laid out as the kernel lays them out: the kernel cannot be
# asked for a cgroup v2 hierarchy on this (v1) machine. The real v1 case is the test after.
def test_cgroup_v2_quota_the_tightest_ancestor_wins(tmp_path):
    proc = tmp_path / "cgroup"
    _write(proc, "0::/user.slice/app\n")
    root = tmp_path / "fs"
    _write(root / "user.slice" / "app" / "cpu.max", "max 100000\n")  # no quota here
    _write(root / "user.slice" / "cpu.max", "150000 100000\n")  # 1.5 CPUs: 2 threads
    _write(root / "user.slice" / "cpu.stat", "usage_usec 2500000\nuser_usec 2000000\n")
    quota = cgroup_cpu_quota(proc, root)
    assert quota is not None and quota.cores == 2
    assert quota.busy_seconds() == pytest.approx(2.5)
    _write(root / "cpu.max", "100000 100000\n")  # the mount root binds too
    assert cgroup_cpu_quota(proc, root).cores == 1


def test_cgroup_v1_quota_with_cpu_and_cpuacct_mounted_apart(tmp_path):
    proc = tmp_path / "cgroup"
    _write(proc, "4:memory:/x\n2:cpuacct:/job\n1:cpu:/job\n0::/\n")
    root = tmp_path / "fs"
    _write(root / "cpu" / "job" / "cpu.cfs_quota_us", "300000\n")
    _write(root / "cpu" / "job" / "cpu.cfs_period_us", "100000\n")
    _write(root / "cpu" / "cpu.cfs_quota_us", "-1\n")
    _write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    _write(root / "cpuacct" / "job" / "cpuacct.usage", "4000000000\n")
    quota = cgroup_cpu_quota(proc, root)
    assert quota is not None and quota.cores == 3
    assert quota.busy_seconds() == pytest.approx(4.0)


def _v1_quota(directory, cores: int) -> None:
    _write(directory / "cpu.cfs_quota_us", f"{cores * 100000}\n")
    _write(directory / "cpu.cfs_period_us", "100000\n")


@pytest.mark.parametrize("line", ["3:cpu,cpuacct:/job", "3:cpuacct,cpu:/job"])
def test_cgroup_v1_combined_mount_either_order(tmp_path, line):
    proc = tmp_path / "cgroup"
    _write(proc, line + "\n")
    mount = tmp_path / "fs" / "cpu,cpuacct"  # the mount's own name, whatever the line's order
    _v1_quota(mount / "job", 2)
    _write(mount / "job" / "cpuacct.usage", "1500000000\n")
    quota = cgroup_cpu_quota(proc, tmp_path / "fs")
    assert quota is not None and quota.cores == 2
    assert quota.busy_seconds() == pytest.approx(1.5)


def test_cgroup_path_not_visible_falls_back_to_the_mount_root(tmp_path):
    root = tmp_path / "fs"
    _v1_quota(root / "cpu", 1)  # inside a container: the mount root is its cgroup
    (root / "cpu" / "elsewhere").mkdir()
    proc = tmp_path / "cgroup"
    for path in ("/docker/abc123", "/../elsewhere"):  # not under this mount; outside the ns
        _write(proc, f"1:cpu:{path}\n")
        quota = cgroup_cpu_quota(proc, root)
        assert quota is not None and quota.cores == 1


def test_equal_quotas_the_outermost_wins_and_usage_needs_the_same_cpuacct_group(tmp_path):
    root = tmp_path / "fs"
    _v1_quota(root / "cpu" / "team", 2)
    _v1_quota(root / "cpu" / "team" / "job", 2)  # a tie: the team's usage counts its siblings
    _write(root / "cpuacct" / "team" / "cpuacct.usage", "7000000000\n")
    proc = tmp_path / "cgroup"
    _write(proc, "2:cpuacct:/team/job\n1:cpu:/team/job\n")
    (root / "cpuacct" / "team" / "job").mkdir()
    quota = cgroup_cpu_quota(proc, root)
    assert quota.usage == root / "cpuacct" / "team" / "cpuacct.usage"
    assert quota.busy_seconds() == pytest.approx(7.0)
    _write(proc, "2:cpuacct:/\n1:cpu:/team/job\n")  # accounted elsewhere: usage unknown
    quota = cgroup_cpu_quota(proc, root)
    assert quota.cores == 2 and quota.usage is None and quota.busy_seconds() is None


def test_a_binding_quota_caps_the_cores_and_picks_the_usage_source(monkeypatch, tmp_path):
    usage = tmp_path / "cpuacct.usage"
    usage.write_text("3000000000\n")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: threads.CpuQuota(2, usage))
    assert usable_cores() == 2
    assert threads.default_busy_seconds()() == pytest.approx(3.0)  # the cgroup's counter
    usage.unlink()  # unreadable: back to /proc/stat over the affinity
    source = threads.default_busy_seconds()
    assert source() is None or source() != pytest.approx(3.0)
    assert getattr(source, "__self__", None) is None


def test_no_quota_and_unreadable_files_mean_none(tmp_path):
    proc = tmp_path / "cgroup"
    _write(proc, "1:cpu:/\n0::/\n")
    root = tmp_path / "fs"
    _write(root / "cpu" / "cpu.cfs_quota_us", "-1\n")
    _write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    _write(root / "cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(proc, root) is None
    assert cgroup_cpu_quota(tmp_path / "missing", root) is None
    _write(root / "cpu.max", "garbage\n")
    assert cgroup_cpu_quota(proc, root) is None


CGROUP_V1 = threads.CGROUP_ROOT / "cpu"
CGROUP_V1_ACCT = threads.CGROUP_ROOT / "cpuacct"


@pytest.mark.skipif(
    not (os.access(CGROUP_V1, os.W_OK) and (CGROUP_V1 / "cpu.cfs_quota_us").exists()),
    reason="needs a writable cgroup v1 cpu hierarchy (root on a v1 machine)",
)
def test_a_real_cgroup_quota_caps_the_threads(tmp_path):
    """A child process in a real cgroup limited to one CPU: torch starts one thread per core,
    the policy caps it at the quota and reads the cgroup's own CPU usage."""
    name = f"mtrec-test-{os.getpid()}"
    made = []
    try:
        # Under systemd both names are links to one "cpu,cpuacct" mount: make it once.
        for base in dict.fromkeys(b.resolve() for b in (CGROUP_V1, CGROUP_V1_ACCT)):
            if base.is_dir():
                (base / name).mkdir()
                made.append(base / name)
        (CGROUP_V1 / name / "cpu.cfs_quota_us").write_text("100000")  # = one period
        script = (
            "import os, sys\n"
            f"for d in {[str(d) for d in made]!r}:\n"
            "    open(d + '/cgroup.procs', 'w').write(str(os.getpid()))\n"
            "import torch\n"
            "from mtrec.threads import AdaptiveThreads, cgroup_cpu_quota, default_busy_seconds\n"
            "before = torch.get_num_threads()\n"
            "policy = AdaptiveThreads()\n"
            "quota = cgroup_cpu_quota()\n"
            "source = default_busy_seconds()\n"
            "print(before, policy.cores, torch.get_num_threads(), quota.cores,\n"
            "      getattr(source, '__self__', None) == quota, source() > 0)\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
        )
        assert out.returncode == 0, out.stderr
        _before, cores, now, quota, reads_cgroup, counted = out.stdout.split()
        assert (cores, now, quota) == ("1", "1", "1")
        if len(os.sched_getaffinity(0)) > 1:
            assert (reads_cgroup, counted) == ("True", "True")
    finally:
        for d in made:
            d.rmdir()


def test_a_neighbour_near_half_a_core_does_not_flip_the_count():
    m = FakeMachine()
    p = m.policy(cores=2)
    for others in (0.55, 0.45, 0.58, 0.42, 0.5):
        m.advance(2.5, own_cores=1.5, other_cores=others)
        assert p.update() == 2
    m.advance(2.5, own_cores=1.3, other_cores=0.7)
    assert p.update() == 1
    for others in (0.45, 0.55, 0.42, 0.58):
        m.advance(2.5, own_cores=1.0, other_cores=others)
        assert p.update() == 1
    assert m.applied == [2, 1]


def test_the_change_log_stays_short():
    m = FakeMachine()
    p = m.policy(cores=2)
    for k in range(100):
        m.advance(2.5, own_cores=1.0, other_cores=1.0 if k % 2 == 0 else 0.0)
        p.update()
    assert p.n_changes == 101
    assert len(p.changes) == AdaptiveThreads.MAX_LOGGED
    assert p.changes[0] == (0.0, 2) and p.changes[-1][1] == p.threads


@pytest.mark.skipif(not PROC_STAT.is_file(), reason="needs Linux /proc/stat")
def test_a_real_busy_neighbour_takes_a_core(monkeypatch):
    """A real CPU-burning child process on a policy of 2 cores: the policy gives it one."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    applied: list[int] = []
    p = AdaptiveThreads(cores=2, interval=1.0, set_threads=applied.append)
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        p.others_busy()  # start the window with the burner already running
        time.sleep(1.5)
        assert p.update() == 1, "a neighbour burning a whole core left 1 of 2 cores"
    finally:
        burner.kill()
        burner.wait()
    assert applied == [2, 1]


class CountingPolicy:
    """Stands in for AdaptiveThreads in training, to see that training consults it."""

    instances: ClassVar[list[CountingPolicy]] = []

    def __init__(self) -> None:
        self.updates = 0
        self.changes = [(0.0, 1)]
        CountingPolicy.instances.append(self)

    def update(self) -> int:
        self.updates += 1
        return 1


def test_training_consults_the_policy_every_step(synthetic, monkeypatch):
    import mtrec.training
    from mtrec.config import MTRecConfig
    from mtrec.model.multitask import MultiTaskModel

    CountingPolicy.instances.clear()
    monkeypatch.setattr(mtrec.training, "AdaptiveThreads", CountingPolicy)
    cfg = MTRecConfig.for_protocol("random")
    cfg.model.dim, cfg.model.layers, cfg.train.epochs, cfg.train.batch_size = 16, 1, 2, 64
    rows = np.arange(2000)

    cfg.train.threads = 0
    model = MultiTaskModel.create(synthetic, cfg, None)
    steps: list[int] = []
    result = mtrec.training.train_multitask(
        model, synthetic, rows, on_step=lambda step, n, losses: steps.append(step)
    )
    (policy,) = CountingPolicy.instances
    assert steps and policy.updates == len(steps)
    assert result.threads == [(0.0, 1)]

    cfg.train.threads = 1  # a fixed count: no policy
    mtrec.training.train_multitask(MultiTaskModel.create(synthetic, cfg, None), synthetic, rows)
    assert len(CountingPolicy.instances) == 1


@pytest.mark.skipif(not PROC_STAT.is_file(), reason="needs Linux /proc/stat")
def test_training_adapts_and_restores_torch_threads(synthetic):
    """threads=0 trains under the policy (its start is logged); a fixed count is used as is."""
    from mtrec.config import MTRecConfig
    from mtrec.model.multitask import MultiTaskModel
    from mtrec.training import train_multitask

    cfg = MTRecConfig.for_protocol("random")
    cfg.model.dim, cfg.model.layers, cfg.train.epochs = 16, 1, 1
    rows = np.arange(2000)
    before = torch.get_num_threads()
    cfg.train.threads = 0
    result = train_multitask(MultiTaskModel.create(synthetic, cfg, None), synthetic, rows)
    assert result.threads[0] == (0.0, min(usable_cores(), before))
    assert torch.get_num_threads() == before

    cfg.train.threads = 1
    result = train_multitask(MultiTaskModel.create(synthetic, cfg, None), synthetic, rows)
    assert result.threads == [(0.0, 1)]
    assert torch.get_num_threads() == before
