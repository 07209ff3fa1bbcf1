"""An experiment's data.source can be any registered dataset format; its import is a stage of the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrg.config import ConfigError
from rayrg.data.access import Dataset
from rayrg.data.alfred import AlfredImportOptions
from rayrg.experiments.config import ExperimentConfig
from rayrg.experiments.preflight import plan, preflight
from rayrg.experiments.runner import ExperimentRunner
from tests.data._alfred_synth import PLAN_LOW, traj_data, write_trial


@pytest.fixture()
def alfred_root(tmp_path: Path) -> Path:
    root = tmp_path / "alfred"
    write_trial(root, "valid_seen", "pick_apple-1", "trial_A", traj_data())
    write_trial(root, "valid_seen", "pick_apple-2", "trial_B", traj_data())
    return root


def test_a_format_source_runs_its_import_stage(alfred_root: Path, tmp_path: Path) -> None:
    config = ExperimentConfig.from_dict({"out": str(tmp_path / "run"), "data": {
        "source": "alfred", "input": str(alfred_root), "options": {"split": "valid_seen", "use_ray": False}}})
    assert isinstance(config.data.options, AlfredImportOptions)
    assert not [p for p in preflight(config) if p.startswith("data.")]
    assert f"import alfred: {alfred_root}" in plan(config)
    runner = ExperimentRunner(config)
    (tmp_path / "run").mkdir()
    trajectories, tasks = runner.data()
    assert [s.stage for s in runner.manifest.stages] == ["import alfred"]
    assert runner.manifest.stages[0].status == "ran"
    assert Dataset.open(trajectories).metadata.num_transitions == 2 * len(PLAN_LOW)
    from rayrg.contracts.tasks import VAL_TASKS_FILE, read_eval_tasks

    val = tasks.parent / VAL_TASKS_FILE  # ALFRED trials go to validation or test by a stable hash
    test_tasks, val_tasks = read_eval_tasks(tasks), read_eval_tasks(val) if val.exists() else []
    assert test_tasks and len(test_tasks) + len(val_tasks) <= 2  # a validation copy of a test task is dropped
    # a second run skips the import: same inputs, same fingerprint
    again = ExperimentRunner(config)
    assert again.data() == (trajectories, tasks) and again.manifest.stages[0].status == "skipped"


def test_the_older_data_alfred_spelling_is_the_same_import(alfred_root: Path, tmp_path: Path) -> None:
    new = ExperimentConfig.from_dict({"data": {"source": "alfred", "input": str(alfred_root),
                                               "options": {"split": "valid_seen"}}})
    old = ExperimentConfig.from_dict({"data": {"source": "alfred",
                                               "alfred": {"root": str(alfred_root), "split": "valid_seen"}}})
    assert new.data.import_args()[:2] == old.data.import_args()[:2]
    assert old.data.import_args()[2] == "data.alfred.root"


def test_format_sources_are_checked_on_load_and_in_preflight(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown data.source 'alfredd'; known: babyai, path, alfred, lerobot"):
        ExperimentConfig.from_dict({"data": {"source": "alfredd"}})
    with pytest.raises(ConfigError, match=r"data.options \(alfred\): unknown option splt; valid: split, "):
        ExperimentConfig.from_dict({"data": {"source": "alfred", "input": "x", "options": {"splt": "train"}}})
    with pytest.raises(ConfigError, match="data.source=lerobot makes no evaluation tasks; set data.eval_tasks"):
        ExperimentConfig.from_dict({"data": {"source": "lerobot", "input": str(tmp_path)}})
    config = ExperimentConfig.from_dict({"data": {"source": "lerobot", "input": str(tmp_path / "none"),
                                                  "eval_tasks": str(tmp_path / "tasks.json")}})
    problems = preflight(config)
    assert f"data.input: {tmp_path / 'none'} is not a LeRobot v3 dataset (no meta/info.json)" in problems
    assert f"data.eval_tasks: {tmp_path / 'tasks.json'} does not exist" in problems
