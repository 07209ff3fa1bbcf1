"""Evaluation actors on BabyAI: expert ≈ 1 in fixed mode, random low, resume, aggregation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rayrg.config import ConfigError
from rayrg.data.generate import GenerateConfig, make_eval_task
from rayrg.evaluation.config import EvalConfig
from rayrg.evaluation.evaluate import evaluate, load_eval_tasks
from rayrg.evaluation.metrics import aggregate, episode_return, mean_ci


@pytest.fixture(scope="module")
def tasks():
    config = GenerateConfig()
    return [t for n in range(1, 7) for t in [make_eval_task(config, n, 0)] if t is not None]


def test_expert_scores_one_in_fixed_mode_random_scores_low(tasks, tmp_path: Path, ray_local) -> None:
    config = EvalConfig(modes=["fixed"], seeds=[0], num_actors=2, envs_per_actor=3)
    expert = evaluate(config, "expert", tmp_path / "expert", tasks=tasks, progress=False)
    assert expert["modes"]["fixed"]["mean"] == pytest.approx(1.0)
    assert expert["episodes"] == len(tasks)
    config = EvalConfig(modes=["fixed"], seeds=[0, 1], num_actors=2, envs_per_actor=4)
    random = evaluate(config, "random", tmp_path / "random", tasks=tasks, progress=False)
    assert random["modes"]["fixed"]["mean"] < 0.5
    assert random["episodes"] == 2 * len(tasks)


def test_resume_runs_only_missing_items(tasks, tmp_path: Path, ray_local) -> None:
    out = tmp_path / "ev"
    evaluate(EvalConfig(modes=["fixed"], seeds=[0]), "random", out, tasks=tasks[:3], progress=False)
    files = set((out / "episodes").glob("*.parquet"))
    summary = evaluate(EvalConfig(modes=["fixed"], seeds=[0]), "random", out, tasks=tasks[:3], progress=False)
    assert set((out / "episodes").glob("*.parquet")) == files  # nothing re-run
    assert summary["episodes"] == 3
    summary = evaluate(EvalConfig(modes=["fixed", "randomized"], seeds=[0]), "random", out, tasks=tasks[:3],
                       progress=False)
    assert summary["episodes"] == 6 and len(set((out / "episodes").glob("*.parquet"))) > len(files)
    assert json.loads((out / "summary.json").read_text())["episodes"] == 6


def test_return_and_aggregation_with_ci() -> None:
    assert episode_return(2, 4) == 0.5 and episode_return(5, 4) == 1.0
    rows = [{"mode": "fixed", "num_subtasks": 2, "return": v} for v in (0.0, 0.5, 1.0)]
    rows += [{"mode": "randomized", "num_subtasks": 2, "return": 1.0}]
    summary = aggregate(rows)
    fixed = summary["fixed"]["by_num_subtasks"]["2"]
    # mean 0.5, sd 0.5, t_{0.975, 2} = 4.303 -> half width 4.303 * 0.5 / sqrt(3)
    assert fixed["mean"] == pytest.approx(0.5)
    assert fixed["ci95"][1] - 0.5 == pytest.approx(4.302653 * 0.5 / 3 ** 0.5, rel=1e-4)
    assert summary["randomized"]["ci95"] == [1.0, 1.0]
    assert mean_ci([])[0] != mean_ci([])[0]  # NaN for no data


def test_task_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_eval_tasks(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("[{\"task_id\": 1}]")
    with pytest.raises(ConfigError, match="task 0"):
        load_eval_tasks(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="not 'expert', 'random'"):
        from rayrg.evaluation.policies import load_episode_policy

        load_episode_policy(str(tmp_path / "nope"), 6)
