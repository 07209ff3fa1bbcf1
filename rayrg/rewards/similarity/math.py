"""Pure functions of the similarity rewards and of their quality reports (NumPy only).

* :func:`goal_probability` — Baumli et al. 2023, "Vision-Language Models as a Source of
  Rewards", eq. 1: ``p(goal | o) = exp(cos(o, goal) / T) / Σ_l exp(cos(o, l) / T)`` over
  the goal and its negative descriptions ``l``; :func:`threshold_rewards` is their binary
  reward ``1[p >= threshold]``.
* :func:`vlmrm_rewards` — Rocamonde et al. 2024, "Vision-Language Models are Zero-Shot
  Reward Models for RL" (VLM-RMs), eq. 3: ``R(o) = 1 - ½ ‖(α P + (1 - α) I)(x - g)‖²`` with
  ``x, g, b`` the unit image, goal and baseline embeddings and ``P`` the projection on the
  line spanned by ``g - b``. α = 0 gives ``1 - ½‖x - g‖² = cos(x, g)``; α = 1 keeps only
  the component of ``x - g`` along the goal–baseline direction.
* :func:`precision_recall_curve` / :func:`average_precision` — the PR curve of a score
  against binary truth (Baumli's Fig. 4) and its area as average precision (the
  step-wise sum ``Σ (R_k - R_{k-1}) P_k``, which never interpolates optimistically).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def normalize(x: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), eps)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[N, D] x [K, D] -> [N, K]`` cosine similarities."""
    return normalize(a) @ normalize(b).T


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - np.max(logits, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def goal_probability(similarities: np.ndarray, temperature: float) -> np.ndarray:
    """Probability of the goal (column 0) against the negatives (columns 1..) per row.

    ``similarities``: ``[N, 1 + num_negatives]`` cosine similarities of each observation
    with its goal text first, then its negatives. With no negatives the probability is 1.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    similarities = np.atleast_2d(np.asarray(similarities, dtype=np.float64))
    return softmax(similarities / temperature, axis=-1)[:, 0]


def threshold_rewards(probability: np.ndarray, threshold: float) -> np.ndarray:
    """Baumli's binary reward: 1.0 where ``probability >= threshold``, else 0.0 (NaN stays NaN)."""
    probability = np.asarray(probability, dtype=np.float64)
    out = (probability >= threshold).astype(np.float32)
    out[np.isnan(probability)] = np.nan
    return out


def vlmrm_rewards(image: np.ndarray, goal: np.ndarray, baseline: np.ndarray, alpha: float) -> np.ndarray:
    """VLM-RMs goal–baseline regularised reward per row (see module docstring).

    ``image``: ``[N, D]``; ``goal``, ``baseline``: ``[D]`` (one task) or ``[N, D]`` (one
    per row). Embeddings are normalised here. ``alpha`` in [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    x = normalize(np.atleast_2d(image))
    g = normalize(np.broadcast_to(goal, x.shape))
    b = normalize(np.broadcast_to(baseline, x.shape))
    direction = normalize(g - b)  # unit vector of L = span(g - b); zero if g == b
    diff = x - g
    along = np.sum(diff * direction, axis=-1, keepdims=True) * direction  # P (x - g)
    projected = alpha * along + (1.0 - alpha) * diff
    return 1.0 - 0.5 * np.sum(projected**2, axis=-1)


def _valid(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    truth = np.asarray(truth, dtype=bool).ravel()
    if scores.shape != truth.shape:
        raise ValueError(f"scores {scores.shape} and truth {truth.shape} differ in length")
    keep = ~np.isnan(scores)
    return scores[keep], truth[keep]


def precision_recall_curve(scores: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Precision and recall at every distinct score used as threshold (``score >= t``).

    Returns ``thresholds`` (descending), ``precision`` and ``recall`` of equal length;
    NaN scores are left out. Tied scores enter together (one point per distinct score).
    """
    scores, truth = _valid(scores, truth)
    order = np.argsort(-scores, kind="mergesort")
    scores, truth = scores[order], truth[order]
    if len(scores) == 0:
        empty = np.zeros(0)
        return {"thresholds": empty, "precision": empty, "recall": empty}
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tp = np.cumsum(truth)[last_of_tie]
    predicted = last_of_tie + 1
    positives = truth.sum()
    recall = tp / positives if positives else np.full(len(tp), np.nan)
    return {"thresholds": scores[last_of_tie], "precision": tp / predicted, "recall": recall}


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """PR-AUC as average precision ``Σ_k (R_k - R_{k-1}) P_k``; NaN when there is no positive."""
    curve = precision_recall_curve(scores, truth)
    if len(curve["recall"]) == 0 or np.isnan(curve["recall"]).any():
        return float("nan")
    recall = np.r_[0.0, curve["recall"]]
    return float(np.sum(np.diff(recall) * curve["precision"]))


def pr_summary(scores: np.ndarray, truth: np.ndarray, max_points: int = 200) -> dict[str, Any]:
    """JSON-ready numbers of one PR curve: AP, base rate, counts and (thinned) curve points."""
    s, t = _valid(scores, truth)
    curve = precision_recall_curve(s, t)
    keep = np.arange(len(curve["thresholds"]))
    if len(keep) > max_points:
        keep = np.unique(np.linspace(0, len(keep) - 1, max_points).round().astype(int))
    return {
        "average_precision": average_precision(s, t),
        "base_rate": float(t.mean()) if len(t) else float("nan"),
        "positives": int(t.sum()),
        "scored": len(t),
        "unscored": int(len(np.ravel(scores)) - len(t)),
        "curve": {k: [float(x) for x in v[keep]] for k, v in curve.items()},
    }
