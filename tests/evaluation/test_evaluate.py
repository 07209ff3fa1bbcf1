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


def test_a_failing_actor_keeps_the_episodes_finished_before_it(tmp_path: Path, ray_local) -> None:
    """Rows are written in batches: a failure must still write every episode finished before it,
    and the re-run runs only the rest."""
    from rayrg.envs.base import EvalTask

    tasks = [EvalTask(task_id=f"t{i}", env_name="toy", instruction="go", num_subtasks=1, seed=i, expert_steps=1)
             for i in range(8)]
    marker = tmp_path / "fail"
    marker.write_text("")
    config = EvalConfig(modes=["fixed"], seeds=[0], num_actors=1, envs_per_actor=1,
                        env_settings={"fail_task": "t5", "fail_while": str(marker)})
    out = tmp_path / "ev"
    with pytest.raises(ValueError, match="toy simulator failed on t5"):
        evaluate(config, "random", out, tasks=tasks, progress=False)
    from rayrg.contracts.episodes import read_episodes

    # one actor runs its chunks in order: t0..t4 finished before t5 failed (t6, queued, may have)
    kept = {r["task_id"] for r in read_episodes(out / "episodes")}
    assert {"t0", "t1", "t2", "t3", "t4"} <= kept and "t5" not in kept
    files = set((out / "episodes").glob("*.parquet"))
    marker.unlink()
    summary = evaluate(config, "random", out, tasks=tasks, progress=False)
    assert summary["episodes"] == 8
    new = [f for f in (out / "episodes").glob("*.parquet") if f not in files]
    rerun = {r["task_id"] for f in new for r in read_episodes_file(f)}
    assert rerun == {f"t{i}" for i in range(8)} - kept


def read_episodes_file(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def test_return_and_aggregation_with_ci() -> None:
    assert episode_return(2, 4) == 0.5 and episode_return(5, 4) == 1.0
    rows = [{"mode": "fixed", "num_subtasks": 2, "return": v} for v in (0.0, 0.5, 1.0)]
    rows += [{"mode": "randomized", "num_subtasks": 2, "return": 1.0}]
    summary = aggregate(rows)
    fixed = summary["fixed"]["by_num_subtasks"]["2"]
    # p 0.5, s² = 1/4 (ddof 1), v = s²/3 = 1/12 -> n_eff = 0.25 / (1/12) = 3 = the episodes
    # (within [3 episodes, 6 sub-tasks]): no design effect to estimate, so Wilson's z on 3.
    z, n_eff = 1.959964, 3.0
    half = z * (0.25 / n_eff + z * z / (4 * n_eff * n_eff)) ** 0.5 / (1 + z * z / n_eff)
    assert fixed["mean"] == pytest.approx(0.5)
    assert fixed["ci95"] == pytest.approx([0.5 - half, 0.5 + half], rel=1e-5)
    # one episode that finished both sub-tasks: at p̂ = 1 nothing shows how its sub-tasks are
    # correlated, so it counts as one trial: Wilson's lower bound 1 / (1 + z²), not [1, 1]
    assert summary["randomized"]["ci95"] == pytest.approx([1 / (1 + z * z), 1.0], rel=1e-5)
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


def _tasks_file(tasks, path: Path) -> Path:
    from dataclasses import asdict

    path.write_text(json.dumps([asdict(t) for t in tasks[:2]]))
    return path


def _error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("rayrg evaluate: error: ")
    return lines[0]


def test_missing_checkpoint_is_one_line_naming_it_before_anything_is_written(tasks, tmp_path: Path,
                                                                             capsys) -> None:
    from rayrg.cli import main

    missing, out = tmp_path / "runs" / "x" / "final", tmp_path / "ev"
    code = main(["evaluate", "--policy", str(missing), "--tasks", str(_tasks_file(tasks, tmp_path / "t.json")),
                 "--out", str(out)])
    assert code == 2
    assert str(missing) in _error_line(capsys.readouterr().err)
    assert not out.exists()


def test_incompatible_checkpoint_is_one_line(tasks, tmp_path: Path, capsys) -> None:
    from rayrg.cli import main
    from rayrg.rl.checkpoint import FEATURIZER_FILE, LEARNER_FILE

    bad = tmp_path / "final"
    bad.mkdir()
    (bad / LEARNER_FILE).write_bytes(b"not a torch checkpoint")
    (bad / FEATURIZER_FILE).write_text("{}")
    out = tmp_path / "ev"
    code = main(["evaluate", "--policy", str(bad), "--tasks", str(_tasks_file(tasks, tmp_path / "t.json")),
                 "--out", str(out)])
    assert code == 2
    line = _error_line(capsys.readouterr().err)
    assert str(bad) in line and "not a checkpoint this rayrg can load" in line
    assert not (out / "episodes").exists()


def test_bad_tasks_file_is_one_line(tmp_path: Path, capsys) -> None:
    from rayrg.cli import main

    (tmp_path / "t.json").write_text("[{\"task_id\": 1}]")
    assert main(["evaluate", "--policy", "random", "--tasks", str(tmp_path / "t.json"),
                 "--out", str(tmp_path / "ev")]) == 2
    assert "t.json: task 0" in _error_line(capsys.readouterr().err)
