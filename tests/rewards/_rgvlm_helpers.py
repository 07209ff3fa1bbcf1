"""Shared by the RG-VLM tests: window rows built straight from WINDOW_SCHEMA, configs."""

from __future__ import annotations

from typing import Any

import numpy as np

from rayrg.data.schema import encode_png
from rayrg.rewards.rgvlm.config import RGVLMConfig
from rayrg.windows.grid import actions_text


def window_row(i: int, num_steps: int = 8, start_step: int = 0, size: int = 64) -> dict[str, Any]:
    rng = np.random.default_rng(i)
    image = encode_png(rng.integers(0, 255, (size, 2 * size, 3), dtype=np.uint8))
    steps = list(range(start_step, start_step + num_steps))
    names = [["left", "right", "forward"][s % 3] for s in steps]
    return {"window_id": f"ep{i}:{start_step}", "episode_id": f"ep{i}", "start_step": start_step,
            "num_steps": num_steps, "is_partial": num_steps < 8, "task_id": "t", "num_subtasks": 1,
            "instruction": "go to the red ball", "image": image, "image_sha256": "",
            "actions": [s % 3 for s in steps], "action_names": names, "actions_text": actions_text(steps, names),
            "expert_actions": [s % 3 for s in steps], "subtasks_before": 0,
            "subtasks_completed": [0] * num_steps, "episode_success": True, "episode_last_step": 20}


def openai_config(base_url: str, **backend: Any) -> RGVLMConfig:
    settings = {"type": "openai", "base_url": base_url, "model": "loopback-vlm", "backoff_initial_s": 0.01,
                "backoff_max_s": 0.05, **backend}
    return RGVLMConfig.from_dict({"method": "rgvlm", "backend": settings})
