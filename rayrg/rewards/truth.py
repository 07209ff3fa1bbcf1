"""Ground truth for scoring rewards: which transitions *contribute to the goal*.

One definition, used by the reward-quality reports and by simulated labels:

    good(t) = (the action is the expert's action at s_t)  or  (a sub-task was completed at t)

The expert's action is the ``BabyAIBot`` plan (ALFRED: the dataset's own action), so
``good`` is 1 for every step of an optimal trajectory and 0 for ε-noise that the expert
would not take (a noise action that happens to equal the expert's counts as good).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from rayrg.data.access import episode_starts


def subtask_advanced(episode_id: pa.Array, subtasks_completed: pa.Array) -> np.ndarray:
    """True where ``subtasks_completed`` increased at this row (rows grouped by episode)."""
    completed = np.asarray(subtasks_completed.to_numpy(zero_copy_only=False), dtype=np.int64)
    previous = np.zeros_like(completed)
    previous[1:] = completed[:-1]
    previous[episode_starts(episode_id)] = 0
    return completed > previous


def good(action: np.ndarray, expert: np.ndarray, advanced: np.ndarray) -> np.ndarray:
    """The rule itself: the expert's action, or a sub-task completed at this step."""
    return (np.asarray(action) == np.asarray(expert)) | np.asarray(advanced, dtype=bool)


def good_actions(table: pa.Table) -> np.ndarray:
    """The ground-truth label per transition (see module docstring)."""
    action = np.asarray(table.column("action").to_numpy())
    expert = np.asarray(table.column("expert_action").to_numpy())
    advanced = subtask_advanced(table.column("episode_id"), table.column("subtasks_completed"))
    return good(action, expert, advanced)


def window_good_actions(actions: list[int], expert_actions: list[int], subtasks_before: int,
                        subtasks_completed: list[int]) -> list[bool]:
    """``good(t)`` per step of one window, from the truth lists a window carries
    (``subtasks_before``: completed before its first step, the previous value of that step)."""
    completed = np.asarray(subtasks_completed, dtype=np.int64)
    if not (len(actions) == len(expert_actions) == len(completed)):
        raise ValueError(f"window truth lists differ in length: {len(actions)} actions, "
                         f"{len(expert_actions)} expert actions, {len(completed)} sub-task counts")
    previous = np.concatenate([[subtasks_before], completed[:-1]]) if len(completed) else completed
    return [bool(v) for v in good(np.asarray(actions), np.asarray(expert_actions), completed > previous)]
