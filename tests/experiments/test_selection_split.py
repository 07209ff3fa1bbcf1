"""Selection never sees the test set: `rayrg tune` ranks on validation tasks only, refuses a
test file (or one written before splits) before any work, and never opens the test file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rayrg.config import ConfigError
from rayrg.contracts import tasks as task_contract
from rayrg.envs.base import EvalTask
from rayrg.evaluation.config import EvalConfig
from rayrg.experiments import sweep as sweep_module
from rayrg.experiments.sweep import SweepConfig, selection_tasks

TASK = EvalTask(task_id="t", env_name="babyai", instruction="go to the red ball", num_subtasks=1, seed=7,
                expert_steps=9)


def _sets(tmp_path: Path) -> tuple[Path, Path]:
    return task_contract.write_task_sets(tmp_path, [dataclasses.replace(TASK, task_id="v", seed=8)], [TASK])


def test_tune_refuses_the_test_set(tmp_path: Path) -> None:
    _, test = _sets(tmp_path)
    with pytest.raises(ConfigError, match="holds the test tasks; validation tasks were expected"):
        selection_tasks(SweepConfig(eval=EvalConfig(tasks=str(test))))
    with pytest.raises(ConfigError, match="val_tasks.json"):
        selection_tasks(SweepConfig())


class _ReachedRay(Exception):
    pass


def test_tune_never_reads_the_test_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    val, test = _sets(tmp_path)
    read = task_contract.read_task_set

    def guarded(path: str | Path, split: str | None = None) -> tuple[str, list]:
        if Path(path).resolve() == test.resolve():
            raise AssertionError(f"a selection read the test file {path}")
        return read(path, split)

    monkeypatch.setattr(task_contract, "read_task_set", guarded)
    test.chmod(0)  # and unreadable, for any reader that bypasses the contract

    def stop(*_: object, **__: object) -> None:
        raise _ReachedRay

    monkeypatch.setattr("rayrg.runtime.init_ray", stop)
    monkeypatch.setattr("rayrg.data.access.require_finished", lambda *a, **k: None)
    config = SweepConfig(eval=EvalConfig(tasks=str(val)))
    try:
        with pytest.raises(_ReachedRay):  # every check before the trials passed without the test file
            sweep_module.sweep(config, tmp_path / "dataset", tmp_path / "tune")
    finally:
        test.chmod(0o644)
