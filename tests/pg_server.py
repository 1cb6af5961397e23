"""A real PostgreSQL server for the tests: Debian's ``initdb``/``pg_ctl`` into a temp dir.

The server listens on a free loopback port and a unix socket in its own temp dir, with
``fsync`` on (the durability tests kill it). PostgreSQL refuses to run as root, so under root
the server runs as the ``postgres`` user (Debian's package creates it), else as ``nobody``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from agent.distributed import free_port

SUPERUSER = "mtrec"


def pg_bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are (Debian's versioned dir, else PATH)."""
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(d, "initdb").is_file() and Path(d, "pg_ctl").is_file():
            return Path(d)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _children(pid: int) -> list[int]:
    """The direct children of ``pid`` (the postmaster's backends), from /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _run_as() -> list[str]:
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
            return ["runuser", "-u", user, "--"]
        except KeyError:
            continue
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL")


class PostgresServer:
    """One PostgreSQL cluster: ``start``, ``kill`` (SIGKILL of the postmaster), ``restart``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="mtrec-pg-"))
        os.chmod(self.root, 0o755)
        self.data = self.root / "data"
        self.socket_dir = self.root
        self.log = self.root / "server.log"
        self.port = free_port()
        self.prefix = _run_as()
        if self.prefix:
            shutil.chown(self.root, user=self.prefix[2])

    @property
    def admin_url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def url(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _cmd(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    def init(self) -> None:
        out = self._cmd(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",  # the cluster's own files; the tests' writes are fsynced
        )
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed: {out.stderr[-2000:]}")

    def start(self) -> None:
        opts = (
            f"-h 127.0.0.1 -p {self.port} -k {self.socket_dir} -c fsync=on "
            "-c synchronous_commit=on -c max_connections=200 -c shared_buffers=32MB"
        )
        out = self._cmd(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            opts,
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "start",
        )
        if out.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {out.stderr[-1000:]} {self.log_text()}")

    def postmaster_pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        try:
            return int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends: a crash, not a shutdown."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        victims = [pid, *_children(pid)]
        for p in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(p) for p in victims):
            time.sleep(0.05)
        time.sleep(0.3)  # let the backends' sockets close

    def stop(self, mode: str = "fast") -> None:
        self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart_after_crash(self) -> None:
        """Start again after ``kill`` (PostgreSQL replays its WAL)."""
        pidfile = self.data / "postmaster.pid"
        pid = self.postmaster_pid()
        if pid is not None and not _alive(pid):
            # A zombie postmaster (nobody reaps it in a container) still answers kill(pid, 0),
            # so PostgreSQL would take its lock files for a live server's: remove them.
            pidfile.unlink(missing_ok=True)
            for lock in self.socket_dir.glob(f".s.PGSQL.{self.port}.lock"):
                lock.unlink(missing_ok=True)
        self.start()

    def create_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # a generated name, not user text
        return self.url(name)

    def log_text(self) -> str:
        try:
            return self.log.read_text()[-3000:]
        except OSError:
            return ""

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
