"""Small synthetic ALFRED trials in the dataset's real layout (for the reader and env tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# (discrete action, api action extras, high_idx) of a 3-sub-goal "put an apple on the counter"
# demonstration: go to the apple, pick it up, put it on the counter top.
PLAN_LOW: list[tuple[str, dict[str, Any], int]] = [
    ("MoveAhead_25", {}, 0),
    ("RotateLeft_90", {}, 0),
    ("LookDown_15", {}, 0),
    ("PickupObject", {"objectId": "Apple|+00.00|+00.90|+01.00"}, 1),
    ("RotateRight_90", {}, 2),
    ("PutObject", {"objectId": "Apple|+00.00|+00.90|+01.00",
                   "receptacleObjectId": "CounterTop|+00.00|+00.90|+01.20"}, 2),
]
SUBGOALS = [
    {"discrete_action": {"action": "GotoLocation", "args": ["apple"]}, "high_idx": 0,
     "planner_action": {"action": "GotoLocation", "location": "loc|0|2|0|30"}},
    {"discrete_action": {"action": "PickupObject", "args": ["apple"]}, "high_idx": 1,
     "planner_action": {"action": "PickupObject", "objectId": "Apple|+00.00|+00.90|+01.00"}},
    {"discrete_action": {"action": "PutObject", "args": ["apple", "countertop"]}, "high_idx": 2,
     "planner_action": {"action": "PutObject"}},
    {"discrete_action": {"action": "NoOp", "args": []}, "high_idx": 3,
     "planner_action": {"action": "End", "value": 1}},
]


def traj_data(low: list[tuple[str, dict[str, Any], int]] = PLAN_LOW, extra_frames: int = 0,
              images: bool = True, num_annotations: int = 2) -> dict[str, Any]:
    low_actions = [{"api_action": {"action": name.split("_")[0], **api},
                    "discrete_action": {"action": name, "args": {}}, "high_idx": h}
                   for name, api, h in low]
    image_list: list[dict[str, Any]] = []
    for k, (_, _, h) in enumerate(low):
        for _ in range(1 + extra_frames):  # smooth-navigation filler frames share low_idx
            image_list.append({"low_idx": k, "high_idx": h, "image_name": f"{len(image_list):09d}.png"})
    image_list.append({"low_idx": len(low) - 1, "high_idx": low[-1][2],
                       "image_name": f"{len(image_list):09d}.png"})
    anns = [{"task_desc": f"Put an apple on the counter{'' if a == 0 else ' please'}",
             "high_descs": ["Walk to the apple", "Pick up the apple.", "Put it on the counter"],
             "votes": [1, 1]} for a in range(num_annotations)]
    return {
        "images": image_list if images else [],
        "pddl_params": {"object_target": "Apple", "parent_target": "CounterTop"},
        "plan": {"high_pddl": SUBGOALS, "low_actions": low_actions},
        "scene": {"dirty_and_empty": False, "floor_plan": "FloorPlan1",
                  "init_action": {"action": "TeleportFull", "horizon": 30, "rotation": 0,
                                  "x": 0.0, "y": 0.9009, "z": 0.0},
                  "object_poses": [
                      {"objectName": "Apple_1", "position": {"x": 0.0, "y": 0.9, "z": 1.0},
                       "rotation": {"x": 0, "y": 0, "z": 0}},
                      {"objectName": "Ghost_9", "position": {"x": 9.0, "y": 0.9, "z": 9.0},
                       "rotation": {"x": 0, "y": 0, "z": 0}}],
                  "object_toggles": [], "random_seed": 1234, "scene_num": 1},
        "task_id": "trial_T0000", "task_type": "pick_and_place_simple",
        "turk_annotations": {"anns": anns},
    }


def write_trial(root: Path, split: str, task: str, trial: str, data: dict[str, Any] | str | None,
                image_dir: str = "high_res_images", num_images: int | None = None,
                suffix: str = ".png", size: int = 24, skip_image: int | None = None) -> Path:
    """One trial folder. ``data`` None: no traj_data.json; a str: written verbatim (bad JSON)."""
    folder = root / split / task / trial
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(data, dict):
        (folder / "traj_data.json").write_text(json.dumps(data))
    elif isinstance(data, str):
        (folder / "traj_data.json").write_text(data)
    if num_images is None:
        num_images = len(data["images"]) if isinstance(data, dict) and data["images"] else 0
    images = folder / image_dir
    images.mkdir(exist_ok=True)
    rng = np.random.default_rng(len(trial))
    for i in range(num_images):
        if i == skip_image:
            continue
        pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{i:09d}{suffix}")
    return folder
