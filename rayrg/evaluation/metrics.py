"""Returns and their aggregation with confidence intervals.

Intervals of mean returns come from :mod:`rayrg.evaluation.stats` (Wilson score on the
sub-task successes, with an effective sample size); :func:`mean_ci` is the Student-t
interval, kept for quantities that are not returns in [0, 1].
"""

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
    """Mean and a Student-t confidence interval (zero width for a single value).

    Not for returns: at n = 3 it leaves [0, 1] and has zero width when all values agree;
    use :func:`rayrg.evaluation.stats.return_interval`.
    """
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

    Each episode (task × evaluation seed) is one sample; the interval is
    :func:`rayrg.evaluation.stats.return_interval` (the per-mode one pools sub-tasks of
    missions of every length).
    """
    from rayrg.evaluation.stats import return_interval

    by_count: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        by_count[r["mode"]][int(r["num_subtasks"])].append(float(r["return"]))
    summary: dict[str, Any] = {}
    for mode, counts in sorted(by_count.items()):
        rows = {}
        for n, values in sorted(counts.items()):
            mean, low, high = return_interval(values, n)
            rows[str(n)] = {"mean": mean, "ci95": [low, high], "episodes": len(values)}
        everything = [v for values in counts.values() for v in values]
        lengths = [n for n, values in counts.items() for _ in values]
        mean, low, high = return_interval(everything, lengths)
        summary[mode] = {"by_num_subtasks": rows, "mean": mean, "ci95": [low, high], "episodes": len(everything)}
    return summary
