"""Torch CPU threads that follow the cores other processes leave free.

Torch starts one intra-op thread per core, and every parallel operator ends at a barrier
where all of them meet. When another CPU-bound process holds one of the cores, one of those
threads is often descheduled and the others wait for it at every operator: on 2 cores an
ml-100k training epoch went from 10.5 s alone to 44-49 s beside a 2-thread torch job
(2026-12-07). With one thread there is no barrier to wait at, and the same epoch took 21-22 s
beside that job.

``AdaptiveThreads`` reads, every few seconds, how much CPU the *other* processes used (the
machine's busy time from ``/proc/stat`` minus this process's own CPU time) and sets torch's
thread count to the cores they left free, between 1 and the cores this process may run on. On
a quiet machine that is every core, as torch would choose; when a neighbour starts, the run
drops to the cores it left, and it takes them back when the neighbour ends. Where
``/proc/stat`` cannot be read (not Linux), the thread count is left as it is.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

PROC_STAT = Path("/proc/stat")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the OS reports one, at most
    ``$OMP_NUM_THREADS`` where that is set (``torchrun`` sets 1 per worker)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    limit = os.environ.get("OMP_NUM_THREADS", "")
    if limit.isdigit() and int(limit) > 0:
        cores = min(cores, int(limit))
    return cores


def machine_busy_seconds(stat: Path = PROC_STAT) -> float | None:
    """CPU seconds all processes have spent on all cores since boot (None if unreadable).

    The first line of ``/proc/stat`` counts clock ticks per state; busy is everything but
    idle and iowait (guest time is already inside user time, so it is not added again).
    """
    try:
        first = stat.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not first or first[0] != "cpu" or len(first) < 8:
        return None
    ticks = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


class AdaptiveThreads:
    """Keeps torch's intra-op thread count at the cores other processes leave free.

    Call ``update()`` often (every training step); it measures at most every ``interval``
    seconds and changes the thread count only when the free cores, rounded, differ from it.

    Args:
        cores: The most threads to use (default: the usable cores).
        interval: Seconds between measurements.
        busy_seconds: Source of the machine's busy CPU seconds (``machine_busy_seconds``).
        own_seconds: Source of this process's CPU seconds (``time.process_time``).
        clock: Wall clock in seconds (``time.monotonic``).
        set_threads: Applies a thread count (``torch.set_num_threads``).
    """

    def __init__(
        self,
        cores: int | None = None,
        interval: float = 2.0,
        busy_seconds: Callable[[], float | None] = machine_busy_seconds,
        own_seconds: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
        set_threads: Callable[[int], None] = torch.set_num_threads,
    ) -> None:
        self.cores = max(1, cores or usable_cores())
        self.interval = interval
        self._busy, self._own = busy_seconds, own_seconds
        self._clock, self._set = clock, set_threads
        self.threads = self.cores
        self.changes: list[tuple[float, int]] = []  # (seconds since start, threads)
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
        # Half a free core or more counts as a core (a neighbour at 0.6 cores leaves 1 of 2).
        wanted = min(self.cores, max(1, math.floor(self.cores - others + 0.5)))
        if wanted != self.threads:
            self._apply(wanted)
        return self.threads
