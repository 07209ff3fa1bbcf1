"""Which frames a progress labeller shows, in which order, and how chunk answers are joined.

* :func:`sample_indices`: K frames of an episode (or chunk), evenly spaced, first and last
  included; an episode shorter than K gives every frame (the summary counts those episodes).
* :func:`shuffle_order`: the order frames are shown in — the first frame stays first (GVL
  shows it as the 0 % reference, arXiv 2411.04549 §3), the others are shuffled with a seeded
  RNG so the model cannot read progress off time order. :func:`unshuffle` maps the answers
  given in shown order back to frame order.
* :func:`chunk_spans`: long episodes in overlapping chunks of steps; :func:`stitch` joins the
  chunks' per-step progress (overlaps averaged) and measures how much the overlaps disagree
  (the labeller's noise, reported, never a failure).
* :func:`interpolate`: per-step progress from the sampled frames (linear in between).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

__all__ = ["chunk_spans", "interpolate", "sample_indices", "shuffle_order", "stitch", "unshuffle"]


def sample_indices(length: int, k: int) -> list[int]:
    """``min(k, length)`` distinct step indices in [0, length), evenly spaced, ends included."""
    if length <= 0:
        return []
    if length <= k:
        return list(range(length))
    if k == 1:
        return [0]
    return sorted({round(i * (length - 1) / (k - 1)) for i in range(k)})


def shuffle_order(n: int, seed: int, salt: str = "") -> list[int]:
    """Positions 0..n-1 in the order they are shown: 0 first, the rest permuted.

    The RNG is seeded from ``seed`` and ``salt`` (the episode or chunk id), so each episode
    gets its own order and the same (seed, id) always the same one."""
    import hashlib

    if n <= 1:
        return list(range(n))
    digest = hashlib.sha256(f"{seed}:{salt}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return [0, *(int(i) + 1 for i in rng.permutation(n - 1))]


def unshuffle(shown: Sequence[float], order: Sequence[int]) -> list[float]:
    """Answers in shown order → frame order: ``shown[j]`` is the answer for frame ``order[j]``."""
    if len(shown) != len(order):
        raise ValueError(f"{len(shown)} answers for {len(order)} frames")
    out = [0.0] * len(order)
    for j, frame in enumerate(order):
        out[frame] = float(shown[j])
    return out


def chunk_spans(length: int, max_steps: int | None, overlap: int) -> list[tuple[int, int]]:
    """[start, stop) spans covering 0..length, each at most ``max_steps`` long, consecutive
    ones sharing ``overlap`` steps (None or a long enough max: one span)."""
    if max_steps is None or length <= max_steps:
        return [(0, length)]
    if not 0 <= overlap < max_steps:
        raise ValueError(f"chunk overlap {overlap} must be in [0, {max_steps})")
    spans, start = [], 0
    while True:
        stop = min(length, start + max_steps)
        spans.append((start, stop))
        if stop == length:
            return spans
        start = stop - overlap


def interpolate(steps: Sequence[int], values: Sequence[float], start: int, stop: int) -> np.ndarray:
    """Per-step values on [start, stop) from values at ``steps`` (linear; held flat outside)."""
    grid = np.arange(start, stop, dtype=np.float64)
    if not len(steps):
        return np.full(grid.shape, np.nan)
    return np.interp(grid, np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64))


def stitch(length: int, chunks: Sequence[tuple[int, int, np.ndarray | None]]) -> tuple[np.ndarray, float | None]:
    """Per-step progress of an episode from its chunks ``(start, stop, values on [start, stop))``.

    Steps covered by several chunks get the mean of their values; steps no chunk covers (a
    chunk failed: values None) are NaN. Returns (progress, disagreement): the mean absolute
    difference between two chunks' values over the steps they share (None: no overlap
    answered by both)."""
    total = np.zeros(length)
    count = np.zeros(length)
    diffs: list[np.ndarray] = []
    answered = [(a, b, np.asarray(v, dtype=np.float64)) for a, b, v in chunks if v is not None]
    for a, b, v in answered:
        total[a:b] += v
        count[a:b] += 1
    for (a1, b1, v1), (a2, b2, v2) in itertools.pairwise(answered):
        lo, hi = max(a1, a2), min(b1, b2)
        if lo < hi:
            diffs.append(np.abs(v1[lo - a1:hi - a1] - v2[lo - a2:hi - a2]))
    with np.errstate(invalid="ignore", divide="ignore"):
        progress = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    disagreement = float(np.concatenate(diffs).mean()) if diffs else None
    return progress, disagreement
