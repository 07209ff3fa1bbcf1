"""A real local Ray head (`ray start --head`, dashboard on 127.0.0.1), a reduced experiment
submitted with `ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml`, its
outputs and logs checked, and the head stopped — only this head: other Ray clusters on the
machine (the test session's own) are left alone."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.cluster._multinode import BIN, REPO, processes, stop
from tests.storage._moto import free_port

REDUCED_EXPERIMENT = {
    "name": "job-submit-check",
    "data": {"generate": {"subtask_counts": [1, 2], "episodes_per_count": 2, "eval_tasks_per_count": 1}},
    "labels": [{"method": "sparse"}, {"method": "simulated", "accuracy": 0.9, "name": "acc900"}],
    "methods": {"simulated+sparse": {"reward_column": "reward_simulated_acc900_sparse"}},
    "train": {"num_steps": 10, "batch_size": 8, "checkpoint_every": 10, "report_every": 5, "hidden": 32},
    "seeds": [0],
    "evaluation": {"modes": ["fixed", "randomized"], "seeds": [0], "num_actors": 1},
    "reference_policies": ["random"],
}


@pytest.mark.integration
@pytest.mark.slow
def test_ray_job_submit_reduced_experiment(tmp_path: Path) -> None:
    temp_dir = tempfile.mkdtemp(prefix="rrg", dir="/tmp")  # short: Ray's socket paths are limited
    port, dash = free_port(), free_port()
    # Every agent port explicit: defaults (e.g. the agent's 52365) clash with other Ray
    # clusters on the same machine, and the job agent then never comes up.
    agent_ports = [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
                   f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}"]
    # `ray start` with token auth needs the token to exist already (only `ray.init` makes one
    # itself): on a fresh machine there is none, as on a fresh cluster head. The test's own
    # token file (Ray's RAY_AUTH_TOKEN_PATH) leaves ~/.ray/auth_token alone.
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_TOKEN", None)
    address = f"http://127.0.0.1:{dash}"
    config = tmp_path / "experiment.yaml"
    out = tmp_path / "run"
    config.write_text(yaml.safe_dump({**REDUCED_EXPERIMENT, "out": str(out)}))
    try:
        start = subprocess.run([BIN / "ray", "start", "--head", f"--port={port}", "--dashboard-host=127.0.0.1",
                                f"--dashboard-port={dash}", "--num-cpus=2", f"--temp-dir={temp_dir}",
                                "--include-dashboard=true", "--disable-usage-stats", *agent_ports],
                               env=env, capture_output=True, text=True, timeout=120)
        assert start.returncode == 0, start.stdout[-2000:] + start.stderr[-2000:]
        command = [BIN / "ray", "job", "submit", "--address", address, "--working-dir", str(REPO),
                   "--runtime-env", str(REPO / "jobs" / "runtime_env.yaml"), "--submission-id", "rayrg-ci",
                   "--", sys.executable, "-m", "rayrg.cli", "run", str(config), "--address", "auto"]
        deadline = time.monotonic() + 90
        while True:  # the head's job agent comes up a few seconds after `ray start` returns
            submit = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
            if "No available agent" not in submit.stderr or time.monotonic() > deadline:
                break
            time.sleep(3)
        assert submit.returncode == 0, submit.stdout[-4000:] + submit.stderr[-4000:]
        status = subprocess.run([BIN / "ray", "job", "status", "--address", address, "rayrg-ci"],
                                env=env, capture_output=True, text=True, timeout=60)
        assert "succeeded" in (status.stdout + status.stderr).lower()
        logs = subprocess.run([BIN / "ray", "job", "logs", "--address", address, "rayrg-ci"],
                              env=env, capture_output=True, text=True, timeout=60).stdout
        assert "[rayrg] report:" in logs and "[rayrg] generate: finished" in logs
        assert (out / "report" / "report.md").exists()
        summary = json.loads((out / "eval" / "simulated_plus_sparse" / "seed0" / "summary.json").read_text())
        assert summary["episodes"] == 4
    finally:
        stop(temp_dir)
        time.sleep(1)
        leftover = processes(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not leftover, f"stray Ray processes of the test head: {[p.pid for p in leftover]}"
