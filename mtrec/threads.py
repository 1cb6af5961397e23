"""Torch CPU threads that follow the cores other processes leave free.

Torch starts one intra-op thread per core, and every parallel operator ends at a barrier
where all of them meet. When another CPU-bound process holds one of the cores, one of those
threads is often descheduled and the others wait for it at every operator. On 2 cores,
ml-100k training epochs of 10.1-10.9 s alone took 45.5-133.9 s at 2 threads beside a 2-thread
torch job, and 18.6-20.8 s at one thread, which has no barrier to wait at
(``benchmarks/results/train_threads.json``, 2026-12-07).

``AdaptiveThreads`` reads, every few seconds, how much CPU the *other* processes used on the
cores this process may run on (their busy time in ``/proc/stat`` minus this process's own CPU
time). It sets torch's thread count to the cores they left free, between 1 and its cap (the
thread count torch had when it started, at most the usable cores). On a quiet machine that is
the cap. When a neighbour starts, the run drops to the cores it left, and it takes them back
when the neighbour ends. Where ``/proc/stat`` cannot be read (not Linux), the thread count is
left as it is.

The cap also honours a CPU quota of the process's cgroup (``cpu.max`` under cgroup v2,
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` under v1): a container limited to 2 CPUs on a
32-core host would otherwise start 32 threads, which the kernel then throttles. The quota
counts rounded up (1.5 CPUs = 2 threads). Where it is tighter than the CPU affinity, the
neighbours that matter are the processes sharing it, so their CPU use is read from the
cgroup's own usage counter instead of ``/proc/stat`` (which, in a container, often shows the
whole host). Without a quota, a container whose ``/proc/stat`` shows the whole host counts
other tenants' load as neighbours.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

PROC_STAT = Path("/proc/stat")
PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class CpuQuota:
    """A cgroup CPU quota.

    Attributes:
        cores: CPUs the quota allows, rounded up (1.5 CPUs = 2).
        usage: The file that counts the CPU time of every process under that cgroup (v2
            ``cpu.stat``, microseconds; v1 ``cpuacct.usage``, nanoseconds), or None where
            it cannot be told (v1 with the process in different ``cpu`` and ``cpuacct``
            groups).
    """

    cores: int
    usage: Path | None

    def busy_seconds(self) -> float | None:
        """CPU seconds the processes under the quota's cgroup have used (None if unreadable)."""
        if self.usage is None:
            return None
        try:
            text = self.usage.read_text()
        except OSError:
            return None
        if self.usage.name == "cpuacct.usage":
            return int(text) / 1e9 if text.strip().isdigit() else None
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec" and value.strip().isdigit():
                return int(value) / 1e6
        return None


def cgroup_cpu_quota(proc_cgroup: Path | None = None, root: Path | None = None) -> CpuQuota | None:
    """The tightest CPU quota over the process's cgroup and its ancestors, or None.

    Reads cgroup v2's ``cpu.max`` ("200000 100000" = 2 CPUs; "max ..." = none) or v1's
    ``cpu.cfs_quota_us`` (-1 = none) and ``cpu.cfs_period_us``, in the process's own cgroup
    directory and its ancestors up to the mount root (a parent's quota binds its children;
    inside a container the process's path is often not visible, and then the mount root is
    its cgroup). Between equal quotas the outermost wins: its usage counts every process
    that shares it.

    Args:
        proc_cgroup: The process's cgroup list (default ``/proc/self/cgroup``).
        root: Where the hierarchies are mounted (default ``/sys/fs/cgroup``).
    """
    proc_cgroup = PROC_CGROUP if proc_cgroup is None else proc_cgroup
    root = CGROUP_ROOT if root is None else root
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    groups: dict[str, tuple[Path, str]] = {}  # "v2", "cpu", "cpuacct" -> (mount, path)
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            groups["v2"] = (root, path)
            continue
        names = controllers.split(",")
        mount = next(
            (
                root / m
                for m in (controllers, ",".join(sorted(names)), *names)
                if (root / m).is_dir()
            ),
            None,
        )
        for name in ("cpu", "cpuacct"):
            if name in names and mount is not None:
                groups[name] = (mount, path)
    found: list[tuple[int, int, CpuQuota]] = []  # (cores, depth, quota)
    if "v2" in groups:
        mount, path = groups["v2"]
        for depth, directory in _up_to_mount(mount, path):
            cores = _cpu_max(directory)
            if cores is not None:
                found.append((cores, depth, CpuQuota(cores, directory / "cpu.stat")))
    if "cpu" in groups:
        mount, path = groups["cpu"]
        acct = groups.get("cpuacct")
        same_group = acct is not None and _visible(acct[0], acct[1]).relative_to(
            acct[0]
        ) == _visible(mount, path).relative_to(mount)
        for depth, directory in _up_to_mount(mount, path):
            cores = _cfs_quota(directory)
            if cores is None:
                continue
            usage = None
            if acct is not None and same_group:
                usage = acct[0] / directory.relative_to(mount) / "cpuacct.usage"
            found.append((cores, depth, CpuQuota(cores, usage)))
    return min(found, key=lambda f: (f[0], f[1]))[2] if found else None


def _visible(mount: Path, path: str) -> Path:
    """The process's cgroup directory under ``mount``, or the mount itself where the path is
    not visible (another mount namespace; ``..`` parts from outside a cgroup namespace)."""
    parts = [p for p in path.split("/") if p]
    if ".." in parts:
        return mount
    here = mount.joinpath(*parts)
    return here if here.is_dir() else mount


def _up_to_mount(mount: Path, path: str) -> list[tuple[int, Path]]:
    """(depth below the mount, directory) from the process's cgroup up to the mount."""
    here = _visible(mount, path)
    depth = len(here.relative_to(mount).parts)
    return [(depth - i, d) for i, d in enumerate([here, *here.parents][: depth + 1])]


def _quota_cores(quota: float, period: float) -> int | None:
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period - 1e-9))


def _cpu_max(directory: Path) -> int | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else _quota_cores(float(quota), float(period))
    except (OSError, ValueError):
        return None


def _cfs_quota(directory: Path) -> int | None:
    try:
        quota = float((directory / "cpu.cfs_quota_us").read_text())
        period = float((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return _quota_cores(quota, period)


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the OS reports one, at most
    its cgroup's CPU quota and ``$OMP_NUM_THREADS`` where those are set (``torchrun`` sets 1
    per worker)."""
    cores = _cores(_affinity())
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, quota.cores)
    limit = os.environ.get("OMP_NUM_THREADS", "")
    if limit.isdigit() and int(limit) > 0:
        cores = min(cores, int(limit))
    return cores


def machine_busy_seconds(stat: Path = PROC_STAT, cpus: set[int] | None = None) -> float | None:
    """CPU seconds all processes have spent on ``cpus`` (default: every core) since boot.

    Each ``cpu`` line of ``/proc/stat`` counts clock ticks per state. Busy is user, nice,
    system, irq and softirq. Guest time is already inside user time, and steal time (what the
    hypervisor gave to other machines) was used by no process here. Returns None if the file
    cannot be read or parsed.
    """
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    ticks = 0
    found = False
    for line in lines:
        fields = line.split()
        if not fields or not fields[0].startswith("cpu"):
            continue
        name = fields[0]
        wanted = name == "cpu" if cpus is None else name[3:].isdigit() and int(name[3:]) in cpus
        if not wanted or len(fields) < 8:
            continue
        try:
            user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
        except ValueError:
            return None
        ticks += user + nice + system + irq + softirq
        found = True
    return ticks / os.sysconf("SC_CLK_TCK") if found else None


def _affinity() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _cores(affinity: set[int] | None) -> int:
    """The cores of a CPU affinity, else every core the OS reports."""
    return len(affinity) if affinity else os.cpu_count() or 1


def default_busy_seconds() -> Callable[[], float | None]:
    """Where other processes' CPU use is read: the cgroup's own usage counter when a CPU
    quota binds (its rounded-up CPUs are fewer than the affinity's: the neighbours that matter
    are the ones sharing the quota, and ``/proc/stat`` may show a whole host) and the counter
    can be read, else ``/proc/stat`` over the cores of the CPU affinity."""
    cpus = _affinity()
    quota = cgroup_cpu_quota()
    binds = quota is not None and quota.cores < _cores(cpus)
    if binds and quota.busy_seconds() is not None:  # type: ignore[union-attr]
        return quota.busy_seconds  # type: ignore[union-attr]

    def busy_seconds() -> float | None:
        return machine_busy_seconds(PROC_STAT, cpus)

    return busy_seconds


class AdaptiveThreads:
    """Keeps torch's intra-op thread count at the cores other processes leave free.

    Call ``update()`` often (every training step); it measures at most every ``interval``
    seconds. It changes the count only when the free cores differ from it by more than
    ``margin`` (a neighbour hovering near half a core does not flip it back and forth).

    Args:
        cores: The most threads to use (default: the usable cores, at most torch's current
            thread count).
        interval: Seconds between measurements.
        margin: Extra free or missing share of a core, beyond one half, needed to change.
        busy_seconds: Source of the busy CPU seconds of the cores this process may use
            (``default_busy_seconds``: the cgroup's usage under a binding CPU quota, else
            ``machine_busy_seconds`` over the CPU affinity).
        own_seconds: Source of this process's CPU seconds (``time.process_time``).
        clock: Wall clock in seconds (``time.monotonic``).
        set_threads: Applies a thread count (``torch.set_num_threads``).
    """

    MAX_LOGGED = 32  # changes kept in ``changes`` (the first and the most recent ones)

    def __init__(
        self,
        cores: int | None = None,
        interval: float = 2.0,
        margin: float = 0.1,
        busy_seconds: Callable[[], float | None] | None = None,
        own_seconds: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
        set_threads: Callable[[int], None] = torch.set_num_threads,
    ) -> None:
        self.cores = max(1, cores or min(usable_cores(), torch.get_num_threads()))
        self.interval = interval
        self.margin = margin
        if busy_seconds is None:
            busy_seconds = default_busy_seconds()

        self._busy, self._own = busy_seconds, own_seconds
        self._clock, self._set = clock, set_threads
        self.threads = self.cores
        self.changes: list[tuple[float, int]] = []  # (seconds since start, threads)
        self.n_changes = 0
        self._start = clock()
        self._last = self._sample()
        self.enabled = self._last[1] is not None
        if self.enabled:
            self._apply(self.cores)

    def _sample(self) -> tuple[float, float | None, float]:
        return self._clock(), self._busy(), self._own()

    def _apply(self, threads: int) -> None:
        self._set(threads)
        self.threads = threads
        self.n_changes += 1
        if len(self.changes) >= self.MAX_LOGGED:
            del self.changes[1]
        self.changes.append((round(self._clock() - self._start, 1), threads))

    def others_busy(self) -> float | None:
        """Cores the other processes kept busy since the last measurement (None if unknown)."""
        now = self._sample()
        (t0, busy0, own0), (t1, busy1, own1) = self._last, now
        self._last = now
        if busy0 is None or busy1 is None or t1 <= t0:
            return None
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / (t1 - t0))

    def update(self) -> int:
        """Re-measure if ``interval`` has passed; returns the thread count in force."""
        if not self.enabled or self._clock() - self._last[0] < self.interval:
            return self.threads
        others = self.others_busy()
        if others is None:
            return self.threads
        free = self.cores - others
        if abs(free - self.threads) <= 0.5 + self.margin:
            return self.threads
        # Half a free core or more counts as a core (a neighbour at 0.7 cores leaves 1 of 2).
        wanted = min(self.cores, max(1, math.floor(free + 0.5)))
        if wanted != self.threads:
            self._apply(wanted)
        return self.threads
