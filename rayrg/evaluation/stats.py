"""Evaluation statistics: intervals for returns in [0, 1], paired method comparisons, claims.

Pure functions on numpy arrays and plain records; no Ray, no scipy.

**Interval for a mean return** (:func:`return_interval`). A return is the fraction of a
mission's sub-tasks completed, so a group of episodes is ``k`` completed of ``N`` sub-tasks.
We use the Wilson score interval (Wilson 1927) on the pooled sub-task successes, with two
adjustments:

* *Effective sample size* (Korn & Graubard 1998, design effect): sub-tasks of one episode
  are correlated (a chain stops at the first failure), so ``N`` overstates the information.
  ``N`` is replaced by ``n_eff = p̂(1-p̂) / v̂``, where ``v̂`` is the variance of the mean
  return computed over *episodes*, clipped to ``[episodes, N]``. For 1-sub-task missions
  this is exactly the plain Wilson interval; for independent sub-tasks it tends to ``N``;
  for fully dependent ones to the number of episodes. When ``p̂`` is 0 or 1 the variance
  carries no information on the correlation and ``N`` is used. For missions of
  mixed lengths the estimate is the mean return and ``N`` the total of sub-tasks.
* *Boundary modification* (Brown, Cai & DasGupta 2001, Statistical Science 16(2), §4.1.1):
  Wilson's coverage dips far below nominal for ``x = 1, 2`` successes at small ``n``
  (0.86 at n = 3, p = 0.05). For ``x ≤ x*`` (2 for n ≤ 50, 3 for n ≤ 100) and ``x < n/2`` the lower bound
  becomes the Poisson bound ``½χ²_{2x,α}/n``; the upper bound symmetrically near ``n``.

Why not a bootstrap over tasks: at n = 3 a percentile bootstrap has 10 distinct resamples
and collapses to a zero-width ``[0, 0]`` whenever every episode failed, which is the common
case for weak policies. Why not the former Student-t interval: it leaves [0, 1] (−1.10 to
1.77 at n = 3). Wilson stays inside [0, 1] and has width ≈ 0.56 at n = 3 with no success.

**Paired comparison** (:func:`paired_difference`). Two methods are compared on the same
evaluation tasks and the same training-seed indices, so ``d[s, t] = a[s, t] − b[s, t]``
(each cell a mean over evaluation seeds). The interval is a two-way ("pigeonhole")
percentile bootstrap (Owen 2007, Annals of Applied Statistics 1(2)): seeds and tasks are
resampled independently, so both the training-seed variance and the task-sampling
variance enter. A paired t over the S×T cells would treat cells of one seed (one trained
policy) as independent and be far too narrow. With one seed only tasks are resampled and
the interval says nothing about seed-to-seed variance.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from statistics import NormalDist
from typing import Any

import numpy as np


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _gamma_cdf(x: float, shape: float) -> float:
    """Regularized lower incomplete gamma P(shape, x), by its power series (x small here)."""
    if x <= 0:
        return 0.0
    term = total = 1.0 / shape
    k = 0
    while abs(term) > 1e-15 * total and k < 10_000:
        k += 1
        term *= x / (shape + k)
        total += term
    return min(1.0, math.exp(shape * math.log(x) - x - math.lgamma(shape)) * total)


@lru_cache(maxsize=4096)
def _gamma_ppf(q: float, shape: float) -> float:
    """Quantile of Gamma(shape, 1) by bisection (= ½ χ²_{2·shape} quantile)."""
    lo, hi = 0.0, shape + 20.0 * math.sqrt(shape) + 20.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _gamma_cdf(mid, shape) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def wilson_interval(successes: float, trials: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval with Brown–Cai–DasGupta's boundary modification.

    ``successes`` and ``trials`` may be non-integer (effective counts). Always within
    [0, 1] and of positive width for ``trials > 0``.
    """
    if trials <= 0:
        return math.nan, math.nan
    if not 0 <= successes <= trials:
        raise ValueError(f"successes {successes} not in [0, trials={trials}]")
    z = _z(confidence)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    x_star = 2 if trials <= 50 else 3 if trials <= 100 else 0
    alpha = 1 - confidence
    # The Poisson bound approximates the binomial only for a rare outcome (x < n/2).
    if 0 < successes <= x_star and successes < trials / 2:
        lo = _gamma_ppf(alpha, successes) / trials
    if 0 < trials - successes <= x_star and trials - successes < trials / 2:
        hi = 1 - _gamma_ppf(alpha, trials - successes) / trials
    # Rounding can leave a bound a hair on the wrong side of p̂ (1 − 1e-16 at p̂ = 1, which
    # made the report's error bars negative): the interval always contains its estimate.
    return min(lo, p), max(hi, p)


def return_interval(returns: Sequence[float], num_subtasks: Sequence[int] | int,
                    confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean return and its interval (see the module docstring): ``(mean, lo, hi)``.

    ``returns[i]`` is episode i's fraction of ``num_subtasks[i]`` sub-tasks completed (an int
    applies to all). The estimate is the mean return; its variance ``v̂ = var(returns)/n``
    (ddof 0, so 1-sub-task missions give exactly ``p̂(1-p̂)/n`` and the plain Wilson
    interval) sets the effective number of sub-tasks. NaNs for no episodes.
    """
    r = np.asarray(returns, dtype=float)
    if r.size == 0:
        return math.nan, math.nan, math.nan
    m = np.broadcast_to(np.asarray(num_subtasks, dtype=float), r.shape)
    if (m < 1).any() or (r < 0).any() or (r > 1).any():
        raise ValueError("returns must lie in [0, 1] and num_subtasks be >= 1")
    n, total = r.size, float(m.sum())
    p = float(r.mean())
    v = float(r.var()) / n
    n_eff = total if v <= 0 or p in (0.0, 1.0) else min(total, max(float(n), p * (1 - p) / v))
    lo, hi = wilson_interval(p * n_eff, n_eff, confidence)
    return p, lo, hi


def by_mode_method_subtasks(records: Iterable[Mapping[str, Any]],
                            confidence: float = 0.95) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """Per-episode records -> ``{mode: {method: {str(k): {"mean", "ci95": [lo, hi], "n"}}}}``.

    Each record needs ``mode``, ``method``, ``num_subtasks`` and ``return`` (as written by
    the evaluation actors, with the method added). ``n`` counts episodes (training seeds ×
    evaluation seeds × tasks). Reference policies (``expert``, ``random``) are methods like
    any other. The interval is :func:`return_interval`.
    """
    grouped: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in records:
        grouped[str(r["mode"])][str(r["method"])][int(r["num_subtasks"])].append(float(r["return"]))
    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for mode in sorted(grouped):
        out[mode] = {}
        for method in sorted(grouped[mode]):
            rows = {}
            for k in sorted(grouped[mode][method]):
                values = grouped[mode][method][k]
                mean, lo, hi = return_interval(values, k, confidence)
                rows[str(k)] = {"mean": mean, "ci95": [lo, hi], "n": len(values)}
            out[mode][method] = rows
    return out


def paired_difference(a: np.ndarray, b: np.ndarray, confidence: float = 0.95, num_resamples: int = 4000,
                      seed: int = 0) -> dict[str, Any]:
    """Mean of ``a − b`` over a seeds × tasks grid, with a two-way bootstrap interval.

    ``a[s, t]`` and ``b[s, t]``: mean return of each method for training seed s on task t.
    Returns ``{"difference", "ci95": [lo, hi], "significant", "seeds", "tasks"}``, where
    ``significant`` means the interval excludes 0. Seeded, so deterministic.
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.ndim != 2 or d.size == 0:
        raise ValueError(f"expected a non-empty seeds × tasks grid, got shape {d.shape}")
    if np.isnan(d).any():
        raise ValueError("the seeds × tasks grid has missing cells (NaN)")
    lo, hi = _pigeonhole_interval(d[None], confidence, num_resamples, np.random.default_rng(seed))
    diff = float(d.mean())
    return {"difference": diff, "ci95": [float(lo[0]), float(hi[0])],
            "significant": bool(lo[0] > 0 or hi[0] < 0), "seeds": d.shape[0], "tasks": d.shape[1]}


def _pigeonhole_interval(d: np.ndarray, confidence: float, num_resamples: int,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Percentile intervals for a batch of grids ``d[e, s, t]`` (vectorised over e)."""
    experiments, seeds, tasks = d.shape
    # A resample's mean is w_s · d · w_t / (S·T) with multinomial resampling counts.
    w_seed = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=(experiments, num_resamples))
    w_task = rng.multinomial(tasks, np.full(tasks, 1 / tasks), size=(experiments, num_resamples))
    if seeds == 1:
        w_seed = np.ones_like(w_seed)
    means = np.einsum("ebs,est,ebt->eb", w_seed, d, w_task, optimize=True) / (seeds * tasks)
    alpha = 1 - confidence
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=1)
    return lo, hi


def seed_task_grid(records: Iterable[Mapping[str, Any]], method: str, mode: str
                   ) -> dict[tuple[int, str], float]:
    """Mean return per (training seed, task) of one method in one mode (over eval seeds)."""
    cells: dict[tuple[int, str], list[float]] = defaultdict(list)
    for r in records:
        if r["method"] == method and r["mode"] == mode:
            cells[(int(r["train_seed"]), str(r["task_id"]))].append(float(r["return"]))
    return {key: float(np.mean(v)) for key, v in cells.items()}


def _aligned(grids: Sequence[dict[tuple[int, str], float]], what: str) -> list[np.ndarray]:
    """The grids on the seeds and tasks that every one of them has, as S×T arrays."""
    common = set.intersection(*(set(g) for g in grids))
    seeds = sorted({s for s, _ in common})
    tasks = sorted({t for _, t in common})
    # keep only seeds that have every common task, so the grid has no holes
    seeds = [s for s in seeds if all((s, t) in common for t in tasks)]
    if not seeds or not tasks:
        raise ValueError(f"{what}: the methods share no (training seed, task) results")
    return [np.array([[g[(s, t)] for t in tasks] for s in seeds]) for g in grids]


def compare_methods(records: Sequence[Mapping[str, Any]], a: str, b: str, mode: str = "fixed",
                    confidence: float = 0.95, num_resamples: int = 4000, seed: int = 0) -> dict[str, Any]:
    """Paired ``a − b`` in ``mode`` (:func:`paired_difference` on shared seeds × tasks).

    Records need ``method``, ``mode``, ``train_seed``, ``task_id`` and ``return``.
    """
    ga, gb = _aligned([seed_task_grid(records, a, mode), seed_task_grid(records, b, mode)], f"{a} vs {b} ({mode})")
    return paired_difference(ga, gb, confidence, num_resamples, seed)


def claims(records: Sequence[Mapping[str, Any]], *, sparse: str, dense: str, dense_plus_sparse: str,
           mode: str = "fixed", randomized_mode: str = "randomized", confidence: float = 0.95,
           num_resamples: int = 4000, seed: int = 0) -> list[dict[str, Any]]:
    """The paper's three claims, each as ``{claim, finding, difference, ci95, significant}``.

    * "dense + sparse beats sparse": ``dense_plus_sparse − sparse`` in ``mode``;
    * "the drop under randomized start is smaller with dense rewards": per seed × task,
      ``(sparse_fixed − sparse_randomized) − (dense_fixed − dense_randomized)``: positive
      means the dense method loses less when the start is randomized;
    * "adding sparse to dense helps": ``dense_plus_sparse − dense`` in ``mode``.

    A positive, significant difference supports a claim; a negative, significant one
    contradicts it; otherwise it is inconclusive. What is found is reported as found.
    Method names are the slugs in the records (e.g. ``sparse``, ``rgvlm``, ``rgvlm_plus_sparse``).
    """
    out = []
    for claim, a, b in ((f"dense + sparse ({dense_plus_sparse}) beats sparse ({sparse})", dense_plus_sparse, sparse),
                        (f"adding sparse to dense ({dense} -> {dense_plus_sparse}) helps", dense_plus_sparse, dense)):
        out.append(_claim(claim, compare_methods(records, a, b, mode, confidence, num_resamples, seed), mode))
    sf, sr, df, dr = _aligned([seed_task_grid(records, sparse, mode), seed_task_grid(records, sparse, randomized_mode),
                               seed_task_grid(records, dense, mode), seed_task_grid(records, dense, randomized_mode)],
                              "randomized-start drop")
    drop = paired_difference(sf - sr, df - dr, confidence, num_resamples, seed)
    out.insert(1, _claim(f"the drop under randomized start is smaller with dense rewards ({dense}) "
                         f"than with sparse ({sparse})", drop, f"{mode} − {randomized_mode}"))
    return out


def _claim(claim: str, result: Mapping[str, Any], mode: str) -> dict[str, Any]:
    diff, (lo, hi) = result["difference"], result["ci95"]
    verdict = ("supported" if result["significant"] and diff > 0 else
               "contradicted" if result["significant"] else "inconclusive (the interval includes 0)")
    finding = (f"{verdict}: difference {diff:+.3f}, 95% CI [{lo:+.3f}, {hi:+.3f}] ({mode}; "
               f"{result['seeds']} training seeds × {result['tasks']} tasks, paired)")
    return {"claim": claim, "finding": finding, "difference": diff, "ci95": [lo, hi],
            "significant": result["significant"]}
