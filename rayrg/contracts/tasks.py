"""Evaluation task sets, ``eval_tasks.json``: the held-out tasks an evaluation plays.

Written by the data stages (``rayrg generate``, the ALFRED import); read by evaluation and
tuning. ``VERSION`` 1 is ``{"version": 1, "tasks": [...]}``. A bare JSON list of tasks
(version 0: files written before task sets were versioned, or by hand) has the same task
fields and is read; any other version is refused in one line naming it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rayrg.config import ConfigError
from rayrg.storage import Location, native, resolve

VERSION = 1
TASKS_FILE = "eval_tasks.json"


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
    tasks: list[dict[str, Any]]  # each validated as a TaskSpec, so an error names its task


def write_eval_tasks(path: str | Path | Location, tasks: Sequence[Any]) -> Path | Location:
    """Write ``tasks`` (EvalTasks, TaskSpecs or dicts of their fields) to ``path`` (usually
    ``<out>/eval_tasks.json``, a local path or a storage URI), stamped with ``VERSION``."""
    location = resolve(path)
    specs = [TaskSpec.model_validate(asdict(t) if is_dataclass(t) else t).model_dump() for t in tasks]
    location.write_text(json.dumps(TaskSet(version=VERSION, tasks=specs).model_dump(), indent=1))  # atomic
    return native(location)


def read_eval_tasks(path: str | Path | Location) -> list[TaskSpec]:
    """The tasks of ``path``; FileNotFoundError when missing, one-line ConfigError when bad.
    (TaskSpecs, not EvalTasks: contracts sit below the environments; the evaluation makes
    its EvalTasks from them.)"""
    location = resolve(path)
    path = native(location)
    try:
        text = location.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"evaluation tasks file not found: {path}") from None
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    if isinstance(raw, list):
        items = raw  # version 0: a bare list of the same task objects
    elif isinstance(raw, dict):
        if raw.get("version") != VERSION:
            raise ConfigError(f"{path}: evaluation tasks version {raw.get('version')!r}; this rayrg reads "
                              f"version {VERSION} (or a bare list of tasks)")
        try:
            items = TaskSet.model_validate(raw).tasks
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    else:
        raise ConfigError(f"{path}: expected evaluation tasks ({{\"version\": {VERSION}, \"tasks\": [...]}})")
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
    return tasks
