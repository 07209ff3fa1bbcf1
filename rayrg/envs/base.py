"""The environment interface shared by evaluation (BabyAI) and the THOR/ALFRED adapter.

An evaluation *task* is a held-out mission with a fixed set-up (a seed for BabyAI, a
trajectory's scene set-up for ALFRED). An environment runs one task at a time:

* ``reset(task, mode, rng_seed)`` puts the agent at the task's start (``mode="fixed"``,
  the dataset's initial state) or at a random reachable position/heading of the same
  scene with the same mission (``mode="randomized"``) and returns the first observation;
* ``step(action)`` applies a discrete action and returns the next observation, the number
  of sub-tasks completed so far (never decreasing) and whether the episode is over.

Return of an episode = sub-tasks completed / sub-tasks of the task, within the task's step
budget (``EvalTask.step_budget``).
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

InitMode = Literal["fixed", "randomized"]


@dataclass(frozen=True)
class EvalTask:
    task_id: str
    env_name: str
    instruction: str
    num_subtasks: int
    seed: int
    expert_steps: int  # length of the expert's solution from the fixed start
    extra: dict[str, Any] = field(default_factory=dict)  # env-specific set-up (e.g. ALFRED scene)

    def step_budget(self, multiplier: float = 2.0, minimum: int = 16) -> int:
        return max(minimum, math.ceil(multiplier * self.expert_steps))


@dataclass
class Observation:
    frame: np.ndarray  # HxWx3 uint8, the same rendering the dataset's frames use
    instruction: str
    subtasks_completed: int = 0
    done: bool = False  # mission finished (success) or failed for good
    info: dict[str, Any] = field(default_factory=dict)
    # The sub-tasks' own instructions in order, set at reset by an environment that declares
    # subtask_instructions (rayrg.envs.registry): what the one-at-a-time evaluation mode feeds.
    # Last, so environments that build an Observation positionally keep working.
    subtask_instructions: tuple[str, ...] = ()


class TaskEnv(abc.ABC):
    """One environment instance that evaluation actors drive task after task."""

    action_names: tuple[str, ...]

    @property
    def num_actions(self) -> int:
        return len(self.action_names)

    @abc.abstractmethod
    def reset(self, task: EvalTask, mode: InitMode = "fixed", rng_seed: int = 0) -> Observation: ...

    @abc.abstractmethod
    def step(self, action: int) -> Observation: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
