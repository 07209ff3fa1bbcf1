"""The windows dataset: one Parquet row per window of W consecutive transitions.

A window's frames are composed into ONE grid image (tiles labelled with their step index,
see :mod:`rayrg.windows.grid`); its actions are rendered as text. The ground-truth lists
let reward reports score labels without re-reading the trajectories.

The last window of an episode may be shorter than W (``is_partial``): with the default
``last_window="shorter"`` every transition lies in exactly one window when stride == W,
and the labeller asks for ``num_steps`` scores, not W.
"""

from __future__ import annotations

import pyarrow as pa

WINDOW_SCHEMA = pa.schema(
    [
        pa.field("window_id", pa.string(), nullable=False),  # f"{episode_id}:{start_step}"
        pa.field("episode_id", pa.string(), nullable=False),
        pa.field("start_step", pa.int32(), nullable=False),
        pa.field("num_steps", pa.int32(), nullable=False),  # W, or fewer when is_partial
        pa.field("is_partial", pa.bool_(), nullable=False),
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("instruction", pa.string(), nullable=False),
        pa.field("num_subtasks", pa.int32(), nullable=False),
        pa.field("image", pa.binary(), nullable=False),  # PNG of the frame grid
        pa.field("image_sha256", pa.string(), nullable=False),
        pa.field("actions", pa.list_(pa.int32()), nullable=False),
        pa.field("action_names", pa.list_(pa.string()), nullable=False),
        pa.field("actions_text", pa.string(), nullable=False),  # "step 3: move forward\n..."
        # Ground truth (never shown to a labeller):
        pa.field("expert_actions", pa.list_(pa.int32()), nullable=False),
        pa.field("subtasks_before", pa.int32(), nullable=False),  # completed before the window
        pa.field("subtasks_completed", pa.list_(pa.int32()), nullable=False),  # after each step
        pa.field("episode_success", pa.bool_(), nullable=False),
        pa.field("episode_last_step", pa.int32(), nullable=False),
    ]
)
WINDOW_COLUMNS: tuple[str, ...] = tuple(WINDOW_SCHEMA.names)
