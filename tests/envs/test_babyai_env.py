"""The BabyAI TaskEnv: fixed start = the dataset's start; randomized start moves the agent
and keeps the mission (and its verifier)."""

from __future__ import annotations

import numpy as np
import pytest

from rayrg.data.generate import GenerateConfig, make_eval_task, rollout_episode
from rayrg.data.schema import decode_png
from rayrg.envs.babyai import completed_subtasks, make_bot
from rayrg.envs.registry import make_task_env


@pytest.fixture(scope="module")
def tasks():
    config = GenerateConfig()
    return [make_eval_task(config, n, i) for n in (1, 3) for i in range(3)]


def test_fixed_start_is_the_dataset_start(tasks) -> None:
    task = tasks[0]
    env = make_task_env("babyai-chain")
    obs = env.reset(task, "fixed")
    rows, _ = rollout_episode(task.num_subtasks, task.seed, 0.0, 50, GenerateConfig().env_config)
    assert np.array_equal(obs.frame, decode_png(rows[0]["frame"]))
    assert obs.instruction == rows[0]["instruction"] == task.instruction


def test_randomized_start_moves_agent_and_keeps_mission(tasks) -> None:
    env = make_task_env("babyai-chain")
    moved = 0
    for task in tasks:
        fixed = env.reset(task, "fixed")
        verifier_fixed = env.raw_env.unwrapped.instrs.surface(env.raw_env.unwrapped)
        rand = env.reset(task, "randomized", rng_seed=1)
        base = env.raw_env.unwrapped
        assert rand.instruction == fixed.instruction == base.instrs.surface(base) == verifier_fixed
        moved += (rand.info["agent_pos"], rand.info["agent_dir"]) != (fixed.info["agent_pos"], fixed.info["agent_dir"])
        # Completing the mission from the new start still counts: the verifier was not re-bound.
        bot, action, completed = make_bot(env.raw_env), None, 0
        for _ in range(500):
            action = bot.replan(action)
            obs = env.step(action)
            completed = obs.subtasks_completed
            if obs.done:
                break
        assert obs.done and obs.info["success"] and completed == task.num_subtasks
        assert completed_subtasks(env.raw_env) == task.num_subtasks
    assert moved >= len(tasks) - 1
    # Deterministic per seed, different across seeds.
    a = env.reset(tasks[1], "randomized", rng_seed=5).info
    b = env.reset(tasks[1], "randomized", rng_seed=5).info
    assert a == b


def test_unknown_env_and_mode() -> None:
    from rayrg.config import ConfigError

    with pytest.raises(ConfigError, match="no environment named"):
        make_task_env("atari")
    env = make_task_env("babyai-chain")
    task = make_eval_task(GenerateConfig(), 1, 0)
    with pytest.raises(ValueError, match="unknown initial-state mode"):
        env.reset(task, "teleport")  # type: ignore[arg-type]
