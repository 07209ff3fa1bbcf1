"""Evaluation task sets: the held-out tasks an evaluation plays, split into validation and test.

Written by the data stages (``rayrg generate``, the ALFRED import); read by evaluation and
tuning. Two files, two disjoint sets (:func:`check_disjoint`):

* ``eval_tasks.json`` (:data:`TASKS_FILE`), split ``"test"``: what the report's numbers are
  measured on. Nothing that *chooses* (a tune trial ranking, ASHA, a best checkpoint) reads it.
* ``val_tasks.json`` (:data:`VAL_TASKS_FILE`), split ``"validation"``: what every selection
  reads (``rayrg tune``).

Why two files rather than one with a split field per task: a selection that never opens the
test file cannot leak it, and that is checkable (a test removes the file and tunes).

``VERSION`` 2 is ``{"version": 2, "split": "test" | "validation", "tasks": [...]}``.
Version 1 (``{"version": 1, "tasks": [...]}``) and a bare JSON list of tasks (version 0:
files written before task sets were versioned, or by hand) have the same task fields and are
read as **test** sets: they were made before validation sets existed, and evaluation may have
been tuned on them, so they can never serve as validation. Any other version is refused in
one line naming it.

Two tasks are the same task when they have the same environment, mission (instruction, case
and spacing aside) and seed (:func:`task_key`): the seed fixes the layout, so equal ids are
not needed for a leak, and different ids do not prevent one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rayrg.config import ConfigError
from rayrg.contracts.versions import read_json
from rayrg.storage import Location, native, resolve

VERSION = 2
TASKS_FILE = "eval_tasks.json"  # the test set
VAL_TASKS_FILE = "val_tasks.json"  # the validation set
Split = Literal["validation", "test"]
SPLITS: tuple[str, ...] = ("validation", "test")
SPLIT_FILES: dict[str, str] = {"validation": VAL_TASKS_FILE, "test": TASKS_FILE}


class TaskSpec(BaseModel):
    """One held-out task; the fields of :class:`rayrg.envs.base.EvalTask` (a test keeps them equal)."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    env_name: str
    instruction: str
    num_subtasks: int = Field(ge=1)
    seed: int
    expert_steps: int = Field(ge=1)  # length of the expert's solution from the fixed start
    extra: dict[str, Any] = Field(default_factory=dict)  # env-specific set-up (e.g. ALFRED scene)


class TaskSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = VERSION
    split: Split = "test"  # older files (no split) are test sets
    tasks: list[dict[str, Any]]  # each validated as a TaskSpec, so an error names its task


def _field(task: Any, name: str) -> Any:
    return task.get(name) if isinstance(task, dict) else getattr(task, name)


def task_key(task: Any) -> tuple[str, str, int]:
    """What makes two tasks the same task: environment, mission and seed (ids aside)."""
    instruction = " ".join(str(_field(task, "instruction")).lower().split())
    return str(_field(task, "env_name")), instruction, int(_field(task, "seed"))


def shared_tasks(validation: Iterable[Any], test: Iterable[Any]) -> list[tuple[str, str, int]]:
    """The task keys (:func:`task_key`) found in both sets."""
    test_keys = {task_key(t) for t in test}
    return [k for k in (task_key(t) for t in validation) if k in test_keys]


def check_disjoint(validation: Iterable[Any], test: Iterable[Any], where: str = "") -> None:
    """Refuse, in one line, validation and test sets that share a task (:func:`task_key`)."""
    shared = shared_tasks(validation, test)
    if shared:
        env, instruction, seed = shared[0]
        raise ConfigError(f"{where + ': ' if where else ''}{len(shared)} task(s) are in both the validation and "
                          f"the test set, first: {env} seed {seed} {instruction!r}")


def write_eval_tasks(path: str | Path | Location, tasks: Sequence[Any], split: Split = "test") -> Path | Location:
    """Write ``tasks`` (EvalTasks, TaskSpecs or dicts of their fields) to ``path`` as the
    ``split`` set (``<out>/eval_tasks.json`` for test, ``<out>/val_tasks.json`` for
    validation), stamped with ``VERSION``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    location = resolve(path)
    specs = [TaskSpec.model_validate(asdict(t) if is_dataclass(t) else t).model_dump() for t in tasks]
    location.write_text(json.dumps(TaskSet(version=VERSION, split=split, tasks=specs).model_dump(), indent=1))  # atomic
    return native(location)


def write_task_sets(out: str | Path | Location, validation: Sequence[Any], test: Sequence[Any]) -> tuple[Any, Any]:
    """Write both sets under ``out`` after :func:`check_disjoint`: ``(val_tasks.json, eval_tasks.json)``
    (an empty validation set writes no ``val_tasks.json``)."""
    out = resolve(out)
    check_disjoint(validation, test, str(out))
    val_path = out / VAL_TASKS_FILE
    if validation:
        write_eval_tasks(val_path, validation, "validation")
    elif val_path.exists():  # no validation set is no file (a reader says so), never an empty or stale one
        val_path.delete()
    return native(val_path), write_eval_tasks(out / TASKS_FILE, test, "test")


def read_eval_tasks(path: str | Path | Location, split: Split | None = None) -> list[TaskSpec]:
    """The tasks of ``path``; FileNotFoundError when missing, one-line ConfigError when bad,
    or (``split`` given) when the file holds the other split. (TaskSpecs, not EvalTasks:
    contracts sit below the environments; the evaluation makes its EvalTasks from them.)"""
    return read_task_set(path, split)[1]


def read_task_split(path: str | Path | Location) -> str:
    """Which split ``path`` holds (``"test"`` for files written before splits existed)."""
    return read_task_set(path)[0]


def read_task_set(path: str | Path | Location, split: Split | None = None) -> tuple[str, list[TaskSpec]]:
    """``(split, tasks)`` of ``path`` (see :func:`read_eval_tasks`)."""
    location = resolve(path)
    path = native(location)
    try:
        raw = read_json(location, "evaluation tasks", ConfigError, shown=path)
    except FileNotFoundError:
        raise FileNotFoundError(f"evaluation tasks file not found: {path}") from None
    found: str = "test"
    if isinstance(raw, list):
        items = raw  # version 0: a bare list of the same task objects (a test set)
    elif isinstance(raw, dict):
        if raw.get("version") not in (1, VERSION):
            raise ConfigError(f"{path}: evaluation tasks version {raw.get('version')!r}; this rayrg reads "
                              f"version {VERSION} (and 1, or a bare list of tasks, as test sets)")
        if raw.get("version") == 1 and "split" in raw:
            raise ConfigError(f"{path}: evaluation tasks version 1 has no 'split' (version {VERSION} has)")
        try:
            parsed = TaskSet.model_validate({**raw, "version": VERSION})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        items, found = parsed.tasks, parsed.split
    else:
        raise ConfigError(f"{path}: expected evaluation tasks ({{\"version\": {VERSION}, \"split\": ..., "
                          "\"tasks\": [...]}})")
    if split is not None and found != split:
        why = (" (files without a split, written before validation sets existed, are test sets)"
               if not (isinstance(raw, dict) and "split" in raw) else "")
        raise ConfigError(f"{path}: holds the {found} tasks{why}; {split} tasks were expected"
                          + (f" ({SPLIT_FILES[split]} of `rayrg generate`)" if split == "validation" else ""))
    if not items:
        raise ConfigError(f"{path}: expected a non-empty list of tasks")
    tasks = []
    for i, item in enumerate(items):
        try:
            spec = TaskSpec.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = f" ({item['task_id']})" if isinstance(item, dict) and isinstance(item.get("task_id"), str) else ""
            raise ConfigError(f"{path}: task {i}{name}: {'.'.join(map(str, first['loc']))}: "
                              f"{first['msg']}") from None
        tasks.append(spec)
    return found, tasks
