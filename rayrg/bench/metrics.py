"""Reward-bench metrics: pure numpy functions of per-episode values, with bootstrap intervals.

Each ``*_metric`` returns ``{"value", "ci95", "n"}``: ``ci95`` is the 2.5/97.5 percentile of
the statistic over ``resamples`` bootstrap resamples *of episodes* (seeded), ``n`` the number
of episodes (or pairs) it is computed on.

* :func:`spearman` — Spearman's ρ (Pearson of average ranks); VOC of one episode is
  ``spearman(time, value)``; a constant episode has no order information and scores 0.
* :func:`auroc` — P(score of a positive > score of a negative), ties counting ½
  (the Mann–Whitney form of the area under the ROC curve).
* :func:`kendall_tau_b` — Kendall's τ-b (ties corrected), on weighted pairs for the bootstrap.
* :func:`best_threshold` / :func:`f1_at` — F1 of ``score >= threshold``, the threshold chosen on
  other episodes than those scored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

DEFAULT_RESAMPLES = 1000


def rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties sharing the mean of their ranks."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    boundaries = np.flatnonzero(np.diff(sorted_x)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(x)]])
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's ρ; 0.0 where either side is constant (no order information)."""
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = float(np.sqrt((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / denom) if denom > 0 else 0.0


def episode_voc(values: np.ndarray) -> tuple[float, bool]:
    """(VOC of one episode: Spearman of ``values`` vs time, whether it was constant)."""
    values = np.asarray(values, dtype=np.float64)
    constant = len(values) < 2 or bool(np.all(values == values[0]))
    return (0.0 if constant else spearman(np.arange(len(values)), values)), constant


def _ci(stat: Callable[[np.ndarray], float], n: int, resamples: int, seed: int) -> list[float] | None:
    if n < 2 or resamples <= 0:
        return None
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)
    stats = np.array([stat(w) for w in counts])
    stats = stats[np.isfinite(stats)]
    if not len(stats):
        return None
    return [float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))]


def _weights(n: int, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


def _percentiles(stats: np.ndarray) -> list[float] | None:
    stats = stats[np.isfinite(stats)]
    if not len(stats):
        return None
    return [float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))]


def result(value: float | None, ci95: list[float] | None, n: int, **extra: Any) -> dict[str, Any]:
    ok = value is not None and np.isfinite(value)
    return {"value": float(value) if ok else None, "ci95": ci95 if ok else None, "n": int(n), **extra}


def mean_metric(values: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """Mean of per-episode values (VOC) with a bootstrap interval."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if not n:
        return result(None, None, 0)
    return result(float(values.mean()), _ci(lambda w: float(w @ values / w.sum()), n, resamples, seed), n)


def _auroc_batch(pos: np.ndarray, neg: np.ndarray, wp: np.ndarray, wn: np.ndarray) -> np.ndarray:
    """AUROC for each row of weights ``wp`` (B x positives), ``wn`` (B x negatives), ties ½.

    Sorting the negatives once and cumulating their weights makes it O(B·n) memory and
    O(B·n + n log n) time: no positives-by-negatives matrix.
    """
    order = np.argsort(neg, kind="mergesort")
    neg_sorted = neg[order]
    cum = np.concatenate([np.zeros((wn.shape[0], 1)), np.cumsum(wn[:, order], axis=1)], axis=1)
    below = np.searchsorted(neg_sorted, pos, side="left")
    upto = np.searchsorted(neg_sorted, pos, side="right")
    wins = cum[:, below] + 0.5 * (cum[:, upto] - cum[:, below])  # B x positives
    total = wp.sum(axis=1) * wn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (wp * wins).sum(axis=1) / total, np.nan)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (NaN without both classes)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        return float("nan")
    return float(_auroc_batch(pos, neg, np.ones((1, len(pos))), np.ones((1, len(neg))))[0])


def auroc_metric(scores: np.ndarray, labels: np.ndarray, resamples: int = DEFAULT_RESAMPLES,
                 seed: int = 0) -> dict[str, Any]:
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    n = len(scores)
    value = auroc(scores, labels)
    ci = None
    if np.isfinite(value) and n >= 2 and resamples > 0:
        w = _weights(n, resamples, seed)
        ci = _percentiles(_auroc_batch(scores[labels], scores[~labels], w[:, labels], w[:, ~labels]))
    return result(value, ci, n, positives=int(labels.sum()), negatives=int((~labels).sum()))


def paired_metric(first: np.ndarray, second: np.ndarray, resamples: int = DEFAULT_RESAMPLES,
                  seed: int = 0) -> dict[str, Any]:
    """P(first > second) over pairs, ties ½: the AUROC of each original against its own twin."""
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    wins = (first > second) + 0.5 * (first == second)
    n = len(wins)
    if not n:
        return result(None, None, 0)
    return result(float(wins.mean()), _ci(lambda w: float(w @ wins / w.sum()), n, resamples, seed), n)


TAU_CHUNK = 256  # rows of the pair-sign matrices held at once: memory O(chunk·n), not O(n²)


def _tau_batch(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Kendall's τ-b for each row of weights ``w`` (B x n: multiplicities of a resample).

    τ-b = Σ_pairs sx·sy / sqrt(Σ_pairs |sx| · Σ_pairs |sy|); a pair of copies of one episode
    is tied on both sides and counts nowhere, as it does for scipy on the repeated data.
    """
    w32 = w.astype(np.float32)
    num = np.zeros(len(w)), np.zeros(len(w)), np.zeros(len(w))
    for a in range(0, len(x), TAU_CHUNK):
        sx = np.sign(x[a:a + TAU_CHUNK, None] - x[None, :]).astype(np.float32)
        sy = np.sign(y[a:a + TAU_CHUNK, None] - y[None, :]).astype(np.float32)
        wa = w32[:, a:a + TAU_CHUNK]
        for acc, mat in zip(num, (sx * sy, np.abs(sx), np.abs(sy)), strict=True):
            acc += (wa * (w32 @ mat.T)).sum(axis=1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = np.sqrt(num[1] * num[2])
        return np.where(denom > 0, num[0] / denom, np.nan)


def kendall_tau_b(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Kendall's τ-b; ``weights``: multiplicities (a bootstrap resample). NaN if a side is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    return float(_tau_batch(x, y, w[None, :])[0])


def tau_metric(scores: np.ndarray, truth: np.ndarray, resamples: int = DEFAULT_RESAMPLES,
               seed: int = 0) -> dict[str, Any]:
    scores, truth = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    n = len(scores)
    if n < 2:
        return result(None, None, n)
    value = kendall_tau_b(scores, truth)
    ci = _percentiles(_tau_batch(scores, truth, _weights(n, resamples, seed))) if resamples > 0 else None
    return result(value, ci, n)


def f1_at(scores: np.ndarray, labels: np.ndarray, threshold: float, weights: np.ndarray | None = None) -> float:
    pred = np.asarray(scores) >= threshold
    labels = np.asarray(labels, dtype=bool)
    w = np.ones(len(pred)) if weights is None else weights
    tp = float(w[pred & labels].sum())
    fp = float(w[pred & ~labels].sum())
    fn = float(w[~pred & labels].sum())
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else float("nan")


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """The threshold (a midpoint between distinct scores, or below them all) of highest F1."""
    scores = np.asarray(scores, dtype=np.float64)
    distinct = np.unique(scores)
    if not len(distinct):
        return None
    candidates = np.concatenate([[distinct[0] - 1.0], (distinct[:-1] + distinct[1:]) / 2, [distinct[-1]]])
    f1s = np.array([f1_at(scores, labels, t) for t in candidates])
    return float(candidates[int(np.nanargmax(f1s))]) if np.isfinite(f1s).any() else None


def f1_metric(scores: np.ndarray, labels: np.ndarray, validation: np.ndarray,
              resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """F1 on the episodes not in ``validation``, at the threshold of best F1 on ``validation``."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    validation = np.asarray(validation, dtype=bool)
    threshold = best_threshold(scores[validation], labels[validation])
    test_s, test_l = scores[~validation], labels[~validation]
    n = len(test_s)
    if threshold is None or not n:
        return result(None, None, n, threshold=threshold, validation_n=int(validation.sum()))
    value = f1_at(test_s, test_l, threshold)
    return result(value, _ci(lambda w: f1_at(test_s, test_l, threshold, w), n, resamples, seed), n,
                  threshold=threshold, validation_n=int(validation.sum()))


def confusion_metric(confusion: np.ndarray, resamples: int = DEFAULT_RESAMPLES,
                     seed: int = 0) -> dict[str, dict[str, Any]]:
    """Table-I accuracy/precision/recall from per-episode ``[tp, fp, fn, tn]`` rows, the
    interval from resampling episodes (their transitions move together)."""
    confusion = np.asarray(confusion, dtype=np.float64).reshape(-1, 4)
    n = len(confusion)

    def ratios(w: np.ndarray) -> tuple[float, float, float]:
        tp, fp, fn, tn = w @ confusion
        total = tp + fp + fn + tn
        return ((tp + tn) / total if total else float("nan"), tp / (tp + fp) if tp + fp else float("nan"),
                tp / (tp + fn) if tp + fn else float("nan"))

    values = ratios(np.ones(n)) if n else (None, None, None)
    out = {}
    for i, name in enumerate(("accuracy", "precision", "recall")):
        ci = _ci(lambda w, i=i: ratios(w)[i], n, resamples, seed) if n else None
        out[name] = result(values[i], ci, n, transitions=int(confusion.sum()))
    return out
