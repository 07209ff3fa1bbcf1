"""The test suite's ``toy`` environment, registered from here (rayrg itself does not know it).

``tests/conftest.py`` imports this module and names it in ``RAYRG_PLUGINS``, so Ray workers
and ``rayrg`` subprocesses that meet ``env_name: toy`` in a synthetic dataset register it too.
The simulator is a counter: every ``forward`` completes the next sub-task. Settings
``fail_task`` and ``fail_while`` (a file): reset raises on that task while the file exists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rayrg.envs.babyai import ACTION_NAMES
from rayrg.envs.base import EvalTask, InitMode, Observation, TaskEnv
from rayrg.envs.registry import register_environment

FORWARD = ACTION_NAMES.index("move forward")


class ToyTaskEnv(TaskEnv):
    action_names = tuple(ACTION_NAMES)

    def __init__(self, settings: dict) -> None:
        self.frame_size = int(settings.get("frame_size", 8))
        self.fail_task, self.fail_while = settings.get("fail_task"), settings.get("fail_while")
        self.task: EvalTask | None = None
        self.completed = 0

    def _observation(self) -> Observation:
        assert self.task is not None
        frame = np.full((self.frame_size, self.frame_size, 3), 20 * self.completed, dtype=np.uint8)
        done = self.completed >= self.task.num_subtasks
        return Observation(frame, self.task.instruction, self.completed, done, {"success": done})

    def reset(self, task: EvalTask, mode: InitMode = "fixed", rng_seed: int = 0) -> Observation:
        if task.task_id == self.fail_task and self.fail_while and Path(self.fail_while).exists():
            raise ValueError(f"toy simulator failed on {task.task_id}")
        self.task, self.completed = task, 0
        return self._observation()

    def step(self, action: int) -> Observation:
        self.completed += int(action == FORWARD)
        return self._observation()


register_environment("toy", actions="rayrg.envs.babyai:ACTION_NAMES", factory=ToyTaskEnv)
