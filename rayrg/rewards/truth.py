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


def good_actions(table: pa.Table) -> np.ndarray:
    """The ground-truth label per transition (see module docstring)."""
    action = np.asarray(table.column("action").to_numpy())
    expert = np.asarray(table.column("expert_action").to_numpy())
    advanced = subtask_advanced(table.column("episode_id"), table.column("subtasks_completed"))
    return (action == expert) | advanced
