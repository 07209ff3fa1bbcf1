"""`rayrg evaluate` with the policy checkpoint, the tasks and the output in an S3 bucket (moto
on 127.0.0.1): the episodes, summary and provenance land in the bucket, nothing on a local
disk, and a re-run finds its finished episodes there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from tests.storage._moto import moto_server, s3_bucket  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _checkpoint(tmp_path: Path) -> Path:
    """A real IQL checkpoint (2 updates on a tiny real BabyAI dataset), saved locally."""
    from rayrg.data.generate import GenerateConfig, generate_shard
    from rayrg.data.schema import DatasetMetadata
    from rayrg.envs.babyai import ENV_NAME
    from rayrg.rl.checkpoint import network_spec, save_checkpoint
    from rayrg.rl.config import TrainConfig
    from rayrg.rl.data import load_transitions
    from rayrg.rl.iql import IQLLearner

    data = tmp_path / "trajectories"
    gen = GenerateConfig(episodes_per_count=1, eval_tasks_per_count=0, subtask_counts=[1], max_steps=40)
    stats = generate_shard([(1, gen.train_seed(1, 0))], gen.to_dict(), str(data / "part-00000.parquet"))
    DatasetMetadata(generator="tests", env_name=ENV_NAME, num_episodes=stats["episodes"],
                    num_transitions=stats["transitions"], extra={"config": gen.to_dict()}).write(data)
    config = TrainConfig(observation="state", batch_size=8, hidden=16, text_dim=4, channels=[4, 4])
    tensors, featurizer, info = load_transitions(data, "reward_sparse", observation="state", history=config.history)
    learner = IQLLearner(config, network_spec(config, info, featurizer, int(tensors.text.shape[-1])))
    learner.update(tensors.sample(config.batch_size))
    checkpoint = tmp_path / "final"
    checkpoint.mkdir()
    save_checkpoint(checkpoint, learner, featurizer)
    return checkpoint


def test_evaluate_policy_tasks_and_out_in_a_bucket(s3_bucket, tmp_path: Path) -> None:  # noqa: F811
    from rayrg.data.generate import GenerateConfig, make_eval_task

    client = s3_bucket.client()
    for path in _checkpoint(tmp_path).iterdir():
        client.put_object(Bucket=s3_bucket.name, Key=f"train/final/{path.name}", Body=path.read_bytes())
    tasks = [t for n in (1, 2) for t in [make_eval_task(GenerateConfig(), n, 0)] if t is not None]
    client.put_object(Bucket=s3_bucket.name, Key="data/eval_tasks.json",
                      Body=json.dumps([asdict(t) for t in tasks]).encode())
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    policy, out = f"{s3_bucket.uri}/train/final", f"{s3_bucket.uri}/ev"
    # its own process and Ray cluster, whose actors get the bucket's endpoint and keys
    args = [sys.executable, "-m", "rayrg.cli", "evaluate", "--policy", policy,
            "--tasks", f"{s3_bucket.uri}/data/eval_tasks.json", "--out", out]
    env = {**os.environ, **s3_bucket.env, "PYTHONPATH": str(REPO)}

    def evaluate() -> str:
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        return done.stdout + done.stderr

    evaluate()
    keys = s3_bucket.keys()
    episodes = [k for k in keys if k.startswith("ev/episodes/") and k.endswith(".parquet")]
    assert episodes and {"ev/summary.json", "ev/_provenance.json", "ev/eval_config.yaml"} <= set(keys)
    summary = json.loads(client.get_object(Bucket=s3_bucket.name, Key="ev/summary.json")["Body"].read())
    assert summary["policy"] == policy and summary["episodes"] == 2 * len(tasks)  # fixed + randomized
    assert list(cwd.iterdir()) == []  # nothing local, no `s3:` folder

    # again: every episode is found in the bucket, none is run or written again
    assert f"{2 * len(tasks)} episodes done earlier" in evaluate()
    assert [k for k in s3_bucket.keys() if k.startswith("ev/episodes/")] == episodes
