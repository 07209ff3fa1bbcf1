"""A tiny real BabyAI dataset (schema version 2: frames and symbolic states), rolled out in-process."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_babyai(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rayrg.data.generate import GenerateConfig, generate_shard
    from rayrg.data.schema import DatasetMetadata
    from rayrg.envs.babyai import ENV_NAME

    out = tmp_path_factory.mktemp("babyai") / "trajectories"
    config = GenerateConfig(episodes_per_count=2, eval_tasks_per_count=0, subtask_counts=[1, 2], max_steps=40)
    jobs = [(n, config.train_seed(n, i)) for n in config.subtask_counts for i in range(2)]
    stats = generate_shard(jobs, config.to_dict(), str(out / "part-00000.parquet"))
    DatasetMetadata(generator="tests", env_name=ENV_NAME, num_episodes=stats["episodes"],
                    num_transitions=stats["transitions"], extra={"config": config.to_dict()}).write(out)
    return out
