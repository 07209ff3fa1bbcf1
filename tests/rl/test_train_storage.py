"""`rayrg train` with its output in an S3 bucket (moto on 127.0.0.1): every
checkpoint lands in the bucket, none on a local disk, and a run killed mid-training resumes
from the bucket's newest checkpoint — its weights, not step 0."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.storage._moto import moto_server, s3_bucket  # noqa: F401 - fixtures

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SMALL = {"observation": "frame", "channels": [4, 8, 8], "batch_size": 8, "hidden": 32, "text_dim": 8,
         "report_every": 5, "checkpoint_every": 10, "updates_per_call": 5, "lr": 1e-4}
MARK = 50.0
CHECKPOINT = re.compile(r"^run/iql/(checkpoint_[^/]+)/step\.txt$")


def _get(bucket, key: str) -> bytes:
    return bucket.client().get_object(Bucket=bucket.name, Key=key)["Body"].read()


def _train_cmd(dataset: str, out: str, config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "rayrg.cli", "train", "--dataset", dataset, "--out", out,
            "--config", str(config), *extra]


def _env(bucket) -> dict[str, str]:
    return {**os.environ, **bucket.env, "PYTHONPATH": str(REPO)}


def test_train_to_bucket_killed_then_resumed_from_the_bucket(make_toy_dataset, s3_bucket, tmp_path: Path) -> None:  # noqa: F811
    dataset, out = str(make_toy_dataset()), f"{s3_bucket.uri}/run"
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({**SMALL, "num_steps": 100_000}))  # never finishes before the kill
    cwd = tmp_path / "cwd"
    cwd.mkdir()

    # 1. Killed (the whole process group: driver and its Ray) once a checkpoint is in the bucket.
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(_train_cmd(dataset, out, config), cwd=cwd, env=_env(s3_bucket), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while not any(CHECKPOINT.match(k) for k in s3_bucket.keys()):
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.3)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    keys = s3_bucket.keys()
    assert "run/_provenance.json" in keys and "run/train_config.yaml" in keys
    assert not any(k.startswith("run/final/") for k in keys)

    # Mark the newest checkpoint in the bucket: a run that really resumes from it carries the
    # mark (Adam moves a weight by ~lr per step); one that restarts from step 0 does not.
    steps = {}
    for key in keys:
        match = CHECKPOINT.match(key)
        if match and f"run/iql/{match.group(1)}/learner.pt" in keys:
            steps[int(_get(s3_bucket, key))] = match.group(1)
    step = max(steps)
    assert step >= 10
    learner_key = f"run/iql/{steps[step]}/learner.pt"
    state = torch.load(io.BytesIO(_get(s3_bucket, learner_key)), weights_only=False)
    name = [k for k in state["policy"] if k.endswith("bias")][-1]
    marked = state["policy"][name] + MARK
    state["policy"][name] = marked
    buffer = io.BytesIO()
    torch.save(state, buffer)
    s3_bucket.client().put_object(Bucket=s3_bucket.name, Key=learner_key, Body=buffer.getvalue())

    # 2. The same command again (a few more steps than the checkpoint's): resumes from it.
    target = step + 20
    done = subprocess.run(_train_cmd(dataset, out, config, "--num-steps", str(target)), cwd=cwd,
                          env=_env(s3_bucket), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert f"resuming from {out}/iql/{steps[step]} (step {step})" in done.stdout
    assert f"final checkpoint: {out}/final" in done.stdout
    assert int(_get(s3_bucket, "run/final/step.txt")) == target
    final = torch.load(io.BytesIO(_get(s3_bucket, "run/final/learner.pt")), weights_only=False)
    assert torch.allclose(final["policy"][name], marked, atol=1.0), "did not resume from the bucket's checkpoint"
    keys = s3_bucket.keys()
    assert {"run/final/featurizer.json", "run/final/metrics.json", "run/final/provenance.json"} <= set(keys)
    # nothing on a local disk: no `s3:` folder, nothing in the working directory
    assert list(cwd.iterdir()) == []

    # 3. Once more: finished, skipped; the final checkpoint in the bucket loads as a policy.
    again = subprocess.run(_train_cmd(dataset, out, config, "--num-steps", str(target)), cwd=cwd,
                           env=_env(s3_bucket), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "finished earlier" in again.stdout, again.stdout + again.stderr
    from rayrg.rl.policy import load_policy

    assert load_policy(f"{out}/final").step == target
