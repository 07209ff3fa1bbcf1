"""``rayrg inspect``: a summary of a trajectory (or labelled) dataset."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from rayrg.data.access import FRAME_COLUMNS, Dataset
from rayrg.data.actions import action_naming
from rayrg.data.schema import SCALAR_COLUMNS


def summarize(directory: str | Path, validate_images: bool = False) -> dict[str, Any]:
    """Counts, sub-task histogram, success and noise rates, reward column means.

    Reads only scalar columns unless ``validate_images`` (then every frame is decoded).
    Ground truth the dataset lacks (an import: no sub-tasks, no noise marks) is reported as
    unknown (None) with its reason, never as the placeholder's 0.
    """
    ds = Dataset.open(directory)
    meta = ds.metadata
    lacks = ds.missing_ground_truth
    naming = action_naming(meta)
    rewards = ds.reward_columns()
    # Frames are read only to be decoded; the summary itself needs the scalars.
    frames = list(FRAME_COLUMNS) if validate_images else []
    table = ds.read([*SCALAR_COLUMNS, *rewards, *frames], decode_images=validate_images)
    firsts = pc.equal(table.column("step"), 0)
    episodes = table.filter(firsts)
    num_subtasks = episodes.column("num_subtasks").to_pylist()
    success = episodes.column("success").to_pylist()
    hist = Counter(num_subtasks)
    by_count = {} if "subtasks" in lacks else {
        int(n): {
            "episodes": hist[n],
            "success_rate": None if "success" in lacks else
            float(np.mean([s for k, s in zip(num_subtasks, success, strict=True) if k == n])),
        }
        for n in sorted(hist)
    }
    lengths = Counter(table.column("episode_id").to_pylist())
    random = np.asarray(table.column("is_random_action").to_pylist(), dtype=bool)
    expert = np.asarray(table.column("expert_action").to_numpy())
    action = np.asarray(table.column("action").to_numpy())
    known = expert >= 0
    summary: dict[str, Any] = {
        "path": str(directory),
        "generator": meta.generator,
        "env_name": meta.env_name,
        "episodes": len(lengths),
        "transitions": table.num_rows,
        "mean_episode_length": float(np.mean(list(lengths.values()))),
        "success_rate": None if "success" in lacks else float(np.mean(success)) if success else 0.0,
        "noise_rate": None if "is_random_action" in lacks else float(random.mean()) if len(random) else 0.0,
        "expert_agreement": float((action[known] == expert[known]).mean()) if known.any() else None,
        "subtask_histogram": by_count,
        "missing_ground_truth": lacks,
        "bot_failures": meta.extra.get("stats", {}).get("bot_failures"),
        # Named / unnamed ids / continuous / unknown; a warning when a VLM prompt would show
        # numbers for the actions (RG-VLM refuses such a dataset: rayrg.data.actions).
        "actions": naming.kind,
        "actions_warning": naming.problem or None,
        "reward_columns": {
            c: {"mean": float(np.nanmean(table.column(c).to_numpy(zero_copy_only=False))),
                "nan": int(np.isnan(table.column(c).to_numpy(zero_copy_only=False)).sum())}
            for c in rewards
        },
    }
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    def rate(value: float | None) -> str:
        return "unknown" if value is None else f"{value:.3f}"

    lines = [
        f"dataset      {summary['path']}  ({summary['generator']}, env {summary['env_name']})",
        f"episodes     {summary['episodes']}   transitions {summary['transitions']}   "
        f"mean length {summary['mean_episode_length']:.1f}",
        f"success rate {rate(summary['success_rate'])}   noise rate {rate(summary['noise_rate'])}   "
        f"expert agreement {rate(summary['expert_agreement'])}",
    ]
    if summary["bot_failures"] is not None:
        lines.append(f"bot failures {summary['bot_failures']}")
    if summary.get("actions_warning"):
        lines.append(f"warning      actions: {summary['actions_warning']} (methods that show actions, "
                     "like rgvlm, refuse it)")
    for key, why in summary["missing_ground_truth"].items():
        lines.append(f"lacks        {key}: {why}")
    if summary["subtask_histogram"]:
        lines.append("sub-tasks    episodes  success")
    for n, row in summary["subtask_histogram"].items():
        lines.append(f"  {n:>2}         {row['episodes']:>8}  {rate(row['success_rate'])}")
    for name, row in summary["reward_columns"].items():
        lines.append(f"{name:<24} mean {row['mean']:.4f}  NaN {row['nan']}")
    return "\n".join(lines)
