"""Validation and test task sets: disjoint by content (environment, mission, seed), each file
saying which split it holds, older files read as test sets only, and every data stage that
makes tasks writing both."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from rayrg.config import ConfigError
from rayrg.contracts.tasks import (
    TASKS_FILE,
    VAL_TASKS_FILE,
    check_disjoint,
    read_eval_tasks,
    read_task_split,
    task_key,
    write_eval_tasks,
    write_task_sets,
)
from rayrg.envs.base import EvalTask

TASK = EvalTask(task_id="t0", env_name="babyai", instruction="go to the red ball", num_subtasks=1, seed=7,
                expert_steps=9)


def test_same_mission_and_seed_is_the_same_task_whatever_its_id(tmp_path: Path) -> None:
    twin = dataclasses.replace(TASK, task_id="another-id", instruction="Go to the  RED ball")
    assert task_key(twin) == task_key(TASK)
    with pytest.raises(ConfigError, match="1 task.*in both the validation and the test set.*seed 7") as info:
        write_task_sets(tmp_path, [twin], [TASK])
    assert "\n" not in str(info.value)
    assert not (tmp_path / TASKS_FILE).exists() and not (tmp_path / VAL_TASKS_FILE).exists()
    check_disjoint([dataclasses.replace(TASK, seed=8)], [TASK])  # another seed: another layout


def test_each_file_says_its_split_and_a_reader_can_insist(tmp_path: Path) -> None:
    val, test = write_task_sets(tmp_path, [dataclasses.replace(TASK, task_id="v", seed=8)], [TASK])
    assert (read_task_split(val), read_task_split(test)) == ("validation", "test")
    assert json.loads(val.read_text())["split"] == "validation"
    with pytest.raises(ConfigError, match="holds the test tasks; validation tasks were expected"):
        read_eval_tasks(test, split="validation")
    with pytest.raises(ConfigError, match="holds the validation tasks; test tasks were expected"):
        read_eval_tasks(val, split="test")


def test_files_from_before_splits_are_test_sets_only(tmp_path: Path) -> None:
    (tmp_path / "v1.json").write_text(json.dumps({"version": 1, "tasks": [dataclasses.asdict(TASK)]}))
    (tmp_path / "v0.json").write_text(json.dumps([dataclasses.asdict(TASK)]))
    for name in ("v1.json", "v0.json"):
        assert read_task_split(tmp_path / name) == "test"
        with pytest.raises(ConfigError, match="written before validation sets existed, are test sets"):
            read_eval_tasks(tmp_path / name, split="validation")
    write_eval_tasks(tmp_path / "t.json", [TASK])  # the default split is test
    assert read_task_split(tmp_path / "t.json") == "test"


@pytest.mark.integration
def test_generate_writes_disjoint_validation_and_test_sets(tmp_path: Path, ray_local) -> None:
    from rayrg.data.generate import GenerateConfig, generate

    out = generate(GenerateConfig(subtask_counts=[1, 2], episodes_per_count=2, eval_tasks_per_count=3,
                                  val_tasks_per_count=3, episodes_per_shard=4, max_steps=40), tmp_path / "g",
                   progress=False)
    val = read_eval_tasks(out / VAL_TASKS_FILE, split="validation")
    test = read_eval_tasks(out / TASKS_FILE, split="test")
    assert len(val) >= 4 and len(test) >= 4
    assert not {task_key(t) for t in val} & {task_key(t) for t in test}
    assert not {t.seed for t in val} & {t.seed for t in test}
    assert not {t.task_id for t in val} & {t.task_id for t in test}


def test_alfred_import_splits_trials_and_drops_validation_twins(tmp_path: Path) -> None:
    from rayrg.data.alfred import (
        AlfredImportConfig,
        build_task_sets,
        import_alfred,
        is_validation_trial,
    )
    from tests.data._alfred_synth import traj_data, write_trial

    root = tmp_path / "alfred"
    names = [f"trial_{i:02d}" for i in range(12)]
    for i, name in enumerate(names):
        data = traj_data()
        data["scene"]["random_seed"] = 1000 + i  # another scene seed: another task
        data["turk_annotations"]["anns"][0]["task_desc"] = f"put apple {i} on the counter"
        write_trial(root, "train", "pick", name, data)
    config = AlfredImportConfig.from_dict({"root": str(root), "use_ray": False, "val_fraction": 0.5})
    val, test, broken = build_task_sets(config)
    assert not broken and val and test
    assert not {task_key(t) for t in val} & {task_key(t) for t in test}
    assert {t.extra["trial"] for t in val} == {f"pick/{n}" for n in names if is_validation_trial(f"pick/{n}", 0.5)}
    # a validation trial that is the same task as a test trial (same mission, same seed) is dropped
    twin = traj_data()
    twin["scene"]["random_seed"] = test[0].seed
    twin["turk_annotations"]["anns"][0]["task_desc"] = test[0].instruction
    twin_name = next(f"twin_{i}" for i in range(100) if is_validation_trial(f"pick/twin_{i}", 0.5))
    write_trial(root, "train", "pick", twin_name, twin)
    val2, _, _ = build_task_sets(config)
    assert twin_name not in {t.extra["trial"].split("/")[1] for t in val2}
    out = import_alfred(config, tmp_path / "out", progress=False)
    assert read_task_split(out / VAL_TASKS_FILE) == "validation" and read_task_split(out / TASKS_FILE) == "test"
