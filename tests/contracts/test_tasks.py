"""The evaluation-task-set contract: stamped on write, bare lists of before read, another
version refused naming it, every field typed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from rayrg.config import ConfigError
from rayrg.contracts.tasks import VERSION, TaskSpec, read_eval_tasks, write_eval_tasks
from rayrg.envs.base import EvalTask
from rayrg.evaluation.evaluate import load_eval_tasks

TASK = EvalTask(task_id="t0", env_name="babyai", instruction="go to the red ball", num_subtasks=2, seed=7,
                expert_steps=9, extra={"scene": "FloorPlan1"})


def test_fields_are_the_eval_tasks() -> None:
    assert list(TaskSpec.model_fields) == [f.name for f in dataclasses.fields(EvalTask)]


def test_round_trip_stamped(tmp_path: Path) -> None:
    path = write_eval_tasks(tmp_path / "eval_tasks.json", [TASK])
    assert json.loads(path.read_text())["version"] == VERSION
    assert load_eval_tasks(path) == [TASK]


def test_a_bare_list_of_before_is_read(tmp_path: Path) -> None:
    (tmp_path / "old.json").write_text(json.dumps([dataclasses.asdict(TASK)]))
    assert load_eval_tasks(tmp_path / "old.json") == [TASK]


def test_another_version_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text(json.dumps({"version": VERSION + 1, "tasks": [dataclasses.asdict(TASK)]}))
    with pytest.raises(ConfigError, match=f"evaluation tasks version {VERSION + 1};") as info:
        read_eval_tasks(tmp_path / "t.json")
    assert "\n" not in str(info.value)


def test_bad_tasks_are_one_line_naming_the_task(tmp_path: Path) -> None:
    for bad, said in (({**dataclasses.asdict(TASK), "colour": "red"}, "task 0 (t0): colour: Extra inputs"),
                      ({**dataclasses.asdict(TASK), "num_subtasks": 0}, "task 0 (t0): num_subtasks: Input should be"),
                      ({**dataclasses.asdict(TASK), "task_id": 1}, "task 0: task_id: Input should be a valid string")):
        (tmp_path / "t.json").write_text(json.dumps({"version": VERSION, "tasks": [bad]}))
        with pytest.raises(ConfigError) as info:
            read_eval_tasks(tmp_path / "t.json")
        assert said in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "t.json").write_text(json.dumps({"version": VERSION, "tasks": []}))
    with pytest.raises(ConfigError, match="non-empty"):
        read_eval_tasks(tmp_path / "t.json")
