"""A 2-node Ray cluster on one machine, laid out like `cluster/`: the head has 0 CPUs, the
worker node runs in its own mount namespace with a private tmpfs over ``private_dir``, so a
file a task writes there on the worker is lost to the driver, as on a real node's own disk.

Fixture ``two_node_cluster`` (module scope; import it into a test module): yields a
:class:`TwoNodeCluster` with ``address`` (the GCS address for ``ray.init``), ``dashboard``
(for ``ray job submit``), ``private_dir``, ``env`` (auth token and the session moto server's S3 endpoint/keys every node's tasks
inherit), ``driver_env()`` and ``run_driver(code)``: drivers run as separate processes. It
stops only the processes of its own temp dir. Needs root (``unshare --mount``), like the
fact check it reproduces. ``processes`` and ``stop`` serve any test cluster started with its
own temp dir (tests/cluster/test_job_submit.py's head too).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.storage._moto import MotoServer, free_port, s3_env

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


@dataclass
class TwoNodeCluster:
    address: str
    dashboard: str
    private_dir: Path
    temp_dir: str
    env: dict[str, str]
    worker: subprocess.Popen = field(repr=False)

    def driver_env(self) -> dict[str, str]:
        """The environment of a driver process (``rayrg``, a script) for this cluster: its
        auth token, its S3 settings, ``RAY_ADDRESS``. A separate process, because Ray keeps
        the first auth token it read for the life of a process."""
        env = {**os.environ, **self.env, "RAY_ADDRESS": self.address}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env.pop("RAY_AUTH_TOKEN", None)
        return env

    def run_driver(self, code: str, timeout: int = 300) -> subprocess.CompletedProcess:
        """Run ``python -c code`` as a driver of this cluster; its output captured."""
        return subprocess.run([sys.executable, "-c", code], env=self.driver_env(), cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)


def processes(temp_dir: str) -> list:
    """The processes of the cluster whose temp dir is ``temp_dir`` (it is in their command lines)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(temp_dir in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def stop(temp_dir: str, worker: subprocess.Popen | None = None) -> None:
    """Stop this cluster's processes only (found by its own temp dir), never others'."""
    import psutil

    if worker is not None and worker.poll() is None:
        worker.terminate()
    procs = processes(temp_dir)
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=15)
    for proc in alive:
        proc.kill()
    if worker is not None:
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()


def _ports() -> list[str]:
    return [f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
            ]


def start_two_node_cluster(private_dir: Path, token_dir: Path,
                           extra_env: dict[str, str] | None = None) -> TwoNodeCluster:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for the worker's private mount namespace")
    temp_dir = tempfile.mkdtemp(prefix="rr2n", dir="/tmp")  # short: Ray's socket paths are limited
    token = token_dir / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, **(extra_env or {}), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    # every node's workers import rayrg and the tests from this checkout
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN"):
        env.pop(name, None)
    port, dash = free_port(), free_port()
    private_dir.mkdir(parents=True, exist_ok=True)
    head = subprocess.run([BIN / "ray", "start", "--head", f"--port={port}",
                           "--num-cpus=0", f"--temp-dir={temp_dir}", "--dashboard-host=127.0.0.1",
                           f"--dashboard-port={dash}", "--include-dashboard=true", "--disable-usage-stats",
                           *_ports()], env=env, capture_output=True, text=True, timeout=180)
    if head.returncode != 0:
        stop(temp_dir)
        raise RuntimeError(head.stdout[-2000:] + head.stderr[-2000:])
    address = f"127.0.0.1:{port}"
    # The worker node's own temp dir, as a real node has: with the head's, both nodes' runtime-env
    # agents unpacked a job's working_dir into one folder at once, and the job's driver imported
    # from a half-written copy (ModuleNotFoundError). Under temp_dir, so `stop` finds its processes.
    ray_start = " ".join([str(BIN / "ray"), "start", f"--address={address}",
                          "--num-cpus=2", f"--temp-dir={temp_dir}/w", "--disable-usage-stats", "--block",
                          *_ports()])
    # The worker node's own disk: a tmpfs over private_dir that only its namespace sees.
    worker = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "bash", "-c",
                               f"mount -t tmpfs tmpfs {private_dir} && exec {ray_start}"],
                              env=env, stdout=subprocess.DEVNULL,
                              stderr=open(Path(temp_dir) / "worker-node.err", "w"))
    cluster = TwoNodeCluster(address, f"http://127.0.0.1:{dash}", private_dir, temp_dir,
                             {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), **(extra_env or {})},
                             worker)
    deadline = time.monotonic() + 120
    while True:  # wait until the worker node has joined (2 alive nodes)
        probe = subprocess.run([BIN / "python", "-c", (
            f"import ray; ray.init(address={address!r}, log_to_driver=False); "
            "print(sum(n['Alive'] for n in ray.nodes()))")],
            env=env, capture_output=True, text=True, timeout=120)
        if probe.stdout.strip().endswith("2"):
            return cluster
        if worker.poll() is not None or time.monotonic() > deadline:
            stop(temp_dir, worker)
            log = (Path(temp_dir) / "worker-node.err").read_text()[-2000:]
            raise RuntimeError(f"the worker node did not join: {log}")
        time.sleep(2)


@pytest.fixture(scope="module")
def two_node_cluster(moto_server: MotoServer,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodeCluster]:
    """The cluster; every node's processes have the session's moto server as their S3
    (``AWS_ENDPOINT_URL`` and dummy keys, as an instance role would give a real node)."""
    base = tmp_path_factory.mktemp("multinode")
    cluster = start_two_node_cluster(base / "out", base, s3_env(moto_server.endpoint))
    try:
        yield cluster
    finally:
        stop(cluster.temp_dir, cluster.worker)
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)
