"""``rayrg inspect``: a summary of a trajectory (or labelled) dataset."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from rayrg.data.access import FRAME_COLUMNS, Dataset
from rayrg.data.schema import SCALAR_COLUMNS


def summarize(directory: str | Path, validate_images: bool = False) -> dict[str, Any]:
    """Counts, sub-task histogram, success and noise rates, reward column means.

    Reads only scalar columns unless ``validate_images`` (then every frame is decoded).
    """
    ds = Dataset.open(directory)
    meta = ds.metadata
    rewards = ds.reward_columns()
    # Frames are read only to be decoded; the summary itself needs the scalars.
    frames = list(FRAME_COLUMNS) if validate_images else []
    table = ds.read([*SCALAR_COLUMNS, *rewards, *frames], decode_images=validate_images)
    firsts = pc.equal(table.column("step"), 0)
    episodes = table.filter(firsts)
    num_subtasks = episodes.column("num_subtasks").to_pylist()
    success = episodes.column("success").to_pylist()
    hist = Counter(num_subtasks)
    by_count = {
        int(n): {
            "episodes": hist[n],
            "success_rate": float(np.mean([s for k, s in zip(num_subtasks, success, strict=True) if k == n])),
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
        "success_rate": float(np.mean(success)) if success else 0.0,
        "noise_rate": float(random.mean()) if len(random) else 0.0,
        "expert_agreement": float((action[known] == expert[known]).mean()) if known.any() else None,
        "subtask_histogram": by_count,
        "bot_failures": meta.extra.get("stats", {}).get("bot_failures"),
        "reward_columns": {
            c: {"mean": float(np.nanmean(table.column(c).to_numpy(zero_copy_only=False))),
                "nan": int(np.isnan(table.column(c).to_numpy(zero_copy_only=False)).sum())}
            for c in rewards
        },
    }
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"dataset      {summary['path']}  ({summary['generator']}, env {summary['env_name']})",
        f"episodes     {summary['episodes']}   transitions {summary['transitions']}   "
        f"mean length {summary['mean_episode_length']:.1f}",
        f"success rate {summary['success_rate']:.3f}   noise rate {summary['noise_rate']:.3f}   "
        f"expert agreement {summary['expert_agreement'] if summary['expert_agreement'] is None else round(summary['expert_agreement'], 3)}",
    ]
    if summary["bot_failures"] is not None:
        lines.append(f"bot failures {summary['bot_failures']}")
    lines.append("sub-tasks    episodes  success")
    for n, row in summary["subtask_histogram"].items():
        lines.append(f"  {n:>2}         {row['episodes']:>8}  {row['success_rate']:.3f}")
    for name, row in summary["reward_columns"].items():
        lines.append(f"{name:<24} mean {row['mean']:.4f}  NaN {row['nan']}")
    return "\n".join(lines)
