"""Returns and their aggregation with confidence intervals."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def episode_return(subtasks_completed: int, num_subtasks: int) -> float:
    """The paper's return: the fraction of the mission's sub-tasks completed."""
    if num_subtasks <= 0:
        raise ValueError("a task has at least one sub-task")
    return min(subtasks_completed, num_subtasks) / num_subtasks


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and a Student-t confidence interval (zero width for a single value)."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, mean, mean
    from scipy import stats

    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def aggregate(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Mean return and 95 % CI per (mode, number of sub-tasks) and per mode.

    Each episode (task × evaluation seed) is one sample.
    """
    by_count: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        by_count[r["mode"]][int(r["num_subtasks"])].append(float(r["return"]))
    summary: dict[str, Any] = {}
    for mode, counts in sorted(by_count.items()):
        rows = {}
        for n, values in sorted(counts.items()):
            mean, low, high = mean_ci(values)
            rows[str(n)] = {"mean": mean, "ci95": [low, high], "episodes": len(values)}
        everything = [v for values in counts.values() for v in values]
        mean, low, high = mean_ci(everything)
        summary[mode] = {"by_num_subtasks": rows, "mean": mean, "ci95": [low, high], "episodes": len(everything)}
    return summary
