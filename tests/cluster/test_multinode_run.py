"""Issue 25, item 4: rayrg on a real multi-node layout (tests/cluster/_multinode.py: a head with 0
CPUs and a worker node with its own disk) with a real S3-protocol server (moto) as shared storage.

- a reduced quickstart with ``--out s3://…`` completes: every output and checkpoint is in the
  bucket, none on a local disk (the worker's private disk, the driver's cwd);
- the same run with a local ``--out`` is refused before any work, in one line;
- ``ray job submit`` of a stage with a relative out and ``RAYRG_STORAGE=s3://…`` lands in the bucket;
- a training job killed after its first checkpoint in the bucket resumes from it when resubmitted.

The four tests share one cluster (module-scoped fixture): starting it costs ≈ 30 s on 2 cores.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.cluster._multinode import REPO, TwoNodeCluster, two_node_cluster  # noqa: F401 - fixture
from tests.cluster.test_job_submit import REDUCED_EXPERIMENT
from tests.storage._moto import S3Bucket, moto_server, s3_bucket  # noqa: F401 - fixtures

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BIN = Path(sys.executable).parent
RAY_LOG = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(INFO|WARNING|DEBUG) ")
METHOD = "simulated_plus_sparse"  # slug of REDUCED_EXPERIMENT's one method
# What the worker node's own disk holds after a run; run on that node (the head has 0 CPUs).
LIST_PRIVATE = r'''
import json, os, ray
ray.init(log_to_driver=False)

@ray.remote(num_cpus=1)
def listing(root):
    return [os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files]

print("LISTING " + json.dumps(ray.get(listing.remote(PRIVATE))))
'''


def _rayrg(cluster: TwoNodeCluster, args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """``rayrg`` as a driver of the cluster, from ``cwd`` (a fresh folder: anything written
    relative to the driver's cwd shows up there)."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "rayrg.cli", *args, "--address", cluster.address],
                          env=cluster.driver_env(), cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _worker_disk(cluster: TwoNodeCluster) -> list[str]:
    run = cluster.run_driver(f"PRIVATE = {str(cluster.private_dir)!r}\n{LIST_PRIVATE}")
    lines = [line for line in run.stdout.splitlines() if line.startswith("LISTING ")]
    assert run.returncode == 0 and lines, run.stdout[-2000:] + run.stderr[-2000:]
    return json.loads(lines[-1][len("LISTING "):])


def _experiment(tmp_path: Path, out: str, **train: int) -> Path:
    config = tmp_path / "experiment.yaml"
    experiment = {**REDUCED_EXPERIMENT, "out": out}
    experiment["train"] = {**REDUCED_EXPERIMENT["train"], **train}
    config.write_text(yaml.safe_dump(experiment))
    return config


def _files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _job(cluster: TwoNodeCluster, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """``ray job <args>`` against the cluster's dashboard, retried while the head's job agent
    is still coming up."""
    command = [str(BIN / "ray"), "job", *args[:1], "--address", cluster.dashboard, *args[1:]]
    deadline = time.monotonic() + 90
    while True:
        done = subprocess.run(command, env=cluster.driver_env(), capture_output=True, text=True, timeout=timeout)
        if "No available agent" not in done.stderr or time.monotonic() > deadline:
            return _with_logs(done)
        time.sleep(3)


def _with_logs(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """On failure, append the full tracebacks the job's one-line errors point to (they are on
    this machine: every node of this cluster shares its disk but the private folder)."""
    if done.returncode != 0:
        for log in set(re.findall(r"full traceback: (\S+?\.log)", done.stdout + done.stderr)):
            path = Path(log)
            if path.is_file():
                done.stderr += f"\n--- {log}\n" + path.read_text()[-6000:]
    return done


def _runtime_env(storage_root: str) -> str:
    """The job's runtime env: this checkout as working dir (jobs/runtime_env.yaml's excludes)
    plus the storage root; every node already has the S3 endpoint and keys (the fixture)."""
    shipped = yaml.safe_load((REPO / "jobs" / "runtime_env.yaml").read_text())
    return json.dumps({"working_dir": str(REPO), "excludes": shipped["excludes"],
                       "env_vars": {**shipped.get("env_vars", {}), "RAYRG_STORAGE": storage_root}})


# -- (a) --out s3://… : everything in the bucket, nothing on a local disk --------------------------
def test_run_with_s3_out_keeps_every_output_in_the_bucket(two_node_cluster: TwoNodeCluster,  # noqa: F811
                                                          s3_bucket: S3Bucket, tmp_path: Path) -> None:  # noqa: F811
    out = f"{s3_bucket.uri}/run"
    cwd = tmp_path / "driver-cwd"
    run = _rayrg(two_node_cluster, ["run", str(_experiment(tmp_path, out))], cwd)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    keys = s3_bucket.keys()
    # data, labels, training checkpoints (periodic and final), evaluation and the report
    assert any(re.fullmatch(r"run/data/trajectories/.+\.parquet", k) for k in keys), keys
    assert "run/data/eval_tasks.json" in keys
    train = f"run/train/{METHOD}/seed0"
    assert any(re.fullmatch(rf"{train}/iql/checkpoint_[^/]+/step\.txt", k) for k in keys), keys
    assert f"{train}/final/step.txt" in keys and f"{train}/final/learner.pt" in keys
    summary = json.loads(s3_bucket.client().get_object(
        Bucket=s3_bucket.name, Key=f"run/eval/{METHOD}/seed0/summary.json")["Body"].read())
    assert summary["episodes"] == 4
    assert "run/report/report.md" in keys
    # ... and none on a local disk: not the driver's cwd, not the worker node's own disk
    assert _files_under(cwd) == [], _files_under(cwd)
    assert not (REPO / "s3:").exists()  # the typo folder
    assert _worker_disk(two_node_cluster) == []


# -- (b) a local --out on this cluster: refused before any work ----------------------------------
def test_run_with_local_out_is_refused_before_any_work(two_node_cluster: TwoNodeCluster,  # noqa: F811
                                                       tmp_path: Path) -> None:
    out = tmp_path / "local-run"
    cwd = tmp_path / "driver-cwd"
    run = _rayrg(two_node_cluster, ["run", str(_experiment(tmp_path, str(out)))], cwd, timeout=300)
    assert run.returncode == 2, run.stdout[-3000:] + run.stderr[-3000:]
    # Ray's own timestamped log lines (connecting to the cluster) aside, one line
    lines = [line for line in run.stderr.splitlines() if line.strip() and not RAY_LOG.match(line)]
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert str(out) in lines[0] and "the Ray cluster has 2 nodes" in lines[0]
    # before any work: no stage started, nothing written on either side
    assert "[rayrg] generate" not in run.stdout
    assert not out.exists() or _files_under(out) == []
    assert _files_under(cwd) == []
    assert _worker_disk(two_node_cluster) == []


# -- (c) ray job submit: a relative out under RAYRG_STORAGE=s3://… lands in the bucket -------------
def test_job_submit_relative_out_lands_under_the_s3_root(two_node_cluster: TwoNodeCluster,  # noqa: F811
                                                         s3_bucket: S3Bucket) -> None:  # noqa: F811
    job_id = f"rayrg-rel-{secrets.token_hex(3)}"
    submit = _job(two_node_cluster, "submit", "--submission-id", job_id,
                  "--runtime-env-json", _runtime_env(f"{s3_bucket.uri}/root"), "--",
                  sys.executable, "-m", "rayrg.cli", "generate", "--out", "runs/job/data",
                  "--episodes-per-count", "2", "--eval-tasks-per-count", "1", "--address", "auto")
    assert submit.returncode == 0, submit.stdout[-4000:] + submit.stderr[-4000:]
    keys = s3_bucket.keys()
    assert any(re.fullmatch(r"root/runs/job/data/trajectories/.+\.parquet", k) for k in keys), keys
    assert "root/runs/job/data/eval_tasks.json" in keys
    assert _worker_disk(two_node_cluster) == []


# -- (d) a job killed mid-training resumes from the bucket's checkpoint ---------------------------
def _checkpoint_steps(bucket: S3Bucket, prefix: str) -> list[int]:
    client = bucket.client()
    steps = []
    for key in bucket.keys():
        if re.fullmatch(rf"{re.escape(prefix)}/iql/checkpoint_[^/]+/step\.txt", key):
            steps.append(int(client.get_object(Bucket=bucket.name, Key=key)["Body"].read().decode().strip()))
    return sorted(steps)


def test_job_killed_mid_training_resumes_from_the_buckets_checkpoint(two_node_cluster: TwoNodeCluster,  # noqa: F811
                                                                     s3_bucket: S3Bucket,  # noqa: F811
                                                                     tmp_path: Path) -> None:
    num_steps = 400
    config = tmp_path / "resume.yaml"
    experiment = {**REDUCED_EXPERIMENT, "out": "runs/resume"}
    experiment["train"] = {**REDUCED_EXPERIMENT["train"], "num_steps": num_steps, "checkpoint_every": 20}
    config.write_text(yaml.safe_dump(experiment))
    root = f"{s3_bucket.uri}/root"
    # the experiment YAML goes with the job: into the bucket, read by the job through its URI
    s3_bucket.client().put_object(Bucket=s3_bucket.name, Key="configs/resume.yaml", Body=config.read_bytes())
    entry = [sys.executable, "-m", "rayrg.cli", "run", f"{s3_bucket.uri}/configs/resume.yaml", "--address", "auto"]
    prefix = f"root/runs/resume/train/{METHOD}/seed0"

    first = f"rayrg-resume-{secrets.token_hex(3)}"
    submit = _job(two_node_cluster, "submit", "--no-wait", "--submission-id", first,
                  "--runtime-env-json", _runtime_env(root), "--", *entry)
    assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
    deadline = time.monotonic() + 600
    while not _checkpoint_steps(s3_bucket, prefix):  # the first checkpoint reaches the bucket
        done = _job(two_node_cluster, "status", first)
        status = done.stdout + done.stderr  # Ray's CLI logger writes the status line to stderr
        assert not re.search(r"\b(FAILED|SUCCEEDED|STOPPED)\b", status), (
            status[-2000:] + _job(two_node_cluster, "logs", first).stdout[-4000:])
        assert time.monotonic() < deadline, _job(two_node_cluster, "logs", first).stdout[-4000:]
        time.sleep(2)
    stop = _job(two_node_cluster, "stop", first)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    killed_at = max(_checkpoint_steps(s3_bucket, prefix))
    assert killed_at < num_steps
    assert f"{prefix}/final/step.txt" not in s3_bucket.keys()

    second = f"rayrg-resume-{secrets.token_hex(3)}"
    again = _job(two_node_cluster, "submit", "--submission-id", second,
                 "--runtime-env-json", _runtime_env(root), "--", *entry)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    logs = _job(two_node_cluster, "logs", second).stdout
    resumed = re.search(r"\[rayrg\] train: resuming from (\S+) \(step (\d+)\)", logs)
    assert resumed, logs[-4000:]
    assert resumed.group(1).startswith(f"{root}/runs/resume/train/") and int(resumed.group(2)) >= killed_at
    final = s3_bucket.client().get_object(Bucket=s3_bucket.name, Key=f"{prefix}/final/step.txt")
    assert int(final["Body"].read().decode().strip()) == num_steps
    assert "root/runs/resume/report/report.md" in s3_bucket.keys()
    assert _worker_disk(two_node_cluster) == []
