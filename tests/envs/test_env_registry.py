"""Environments: one registry; a test-only one registers itself from its own module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rayrg.config import ConfigError
from rayrg.envs.base import EvalTask
from rayrg.envs.registry import action_names, environment_names, make_task_env
from tests.envs.toy import FORWARD, ToyTaskEnv


def test_builtin_entries_are_lazy_and_test_only_ones_come_from_the_tests() -> None:
    # rayrg alone knows only its simulators; ``toy`` comes from tests/envs/toy.py (via RAYRG_PLUGINS)
    code = ("import sys, json; from rayrg.envs.registry import environment_names, action_names; "
            "names = environment_names(); acts = len(action_names('babyai-chain')); "
            "print(json.dumps([names, acts, [m for m in ('minigrid', 'ai2thor', 'torch') if m in sys.modules]]))")
    env = {k: v for k, v in os.environ.items() if k != "RAYRG_PLUGINS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         timeout=120)
    names, acts, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert names == ["alfred-thor", "babyai-chain"] and acts == 6 and heavy == []
    assert "toy" in environment_names() and len(action_names("toy")) == 6
    with pytest.raises(ConfigError, match="no environment named 'nope'"):
        action_names("nope")


def test_a_plugin_environment_is_found_by_name_in_a_fresh_process() -> None:
    code = "from rayrg.envs.registry import make_task_env; print(type(make_task_env('toy')).__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "ToyTaskEnv"


def test_toy_environment_runs_through_the_real_evaluation(tmp_path: Path, ray_local) -> None:
    from rayrg.evaluation.config import EvalConfig
    from rayrg.evaluation.evaluate import evaluate

    assert isinstance(make_task_env("toy"), ToyTaskEnv)
    tasks = [EvalTask(task_id=f"toy-{n}", env_name="toy", instruction="go forward", num_subtasks=n, seed=n,
                      expert_steps=n) for n in (1, 2, 3)]
    config = EvalConfig(modes=["fixed"], seeds=[0, 1], num_actors=2, envs_per_actor=2, min_budget=4,
                        budget_multiplier=2.0)
    summary = evaluate(config, "random", tmp_path / "eval", tasks=tasks, progress=False)
    assert summary["episodes"] == 6
    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / "eval" / "episodes").to_pylist()
    # the random policy's draws (its seeded generator), replayed against the counter
    for r in rows:
        task = next(t for t in tasks if t.task_id == r["task_id"])
        rng = np.random.default_rng([r["seed"], 0xA11])
        done = steps = 0
        while done < task.num_subtasks and steps < r["budget"]:
            done += int(rng.integers(6) == FORWARD)
            steps += 1
        assert (r["subtasks_completed"], r["steps"], r["success"]) == (done, steps, done == task.num_subtasks)
