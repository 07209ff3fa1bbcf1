"""Simulated evaluations for measuring interval coverage (``benchmarks/bench_coverage.py``).

The model (pure numpy):

* **Chained sub-tasks.** A mission of ``m`` sub-tasks; each sub-task succeeds with the
  task's probability ``q`` independently; the chain stops at the first failure; the
  return is the fraction completed. Its expectation is ``Σ_{j≤m} q^j / m``.
* **Task heterogeneity.** Each task's ``q`` is drawn from ``Beta(μκ, (1−μ)κ)`` (mean μ,
  concentration κ; ``κ = None`` for one ``q = μ`` for every task).
* **Seed effects.** For paired comparisons each method's trained policy for training seed
  s shifts ``q`` by a normal seed effect (sd ``seed_sd``, clipped to [0, 1]); method a's
  ``q`` is also shifted by a task-specific effect ``N(delta, delta_sd)``, so the paired
  difference has seed, task and residual variance. A cell is the mean return of
  ``eval_episodes`` episodes. Mission lengths cycle 1..``max_subtasks`` over the tasks.
* **Return against label accuracy** (:func:`slope_points`, for ``accuracy_slope``): one
  point per trained policy, its mean return over the fixed test tasks, modelled at that
  level: ``y[s, a] = α + β·a + w_s·(a − ā) + κ·(a − ā)² + u_s + e[s, a]`` with a seed effect
  ``u_s ~ N(0, seed_sd)``, a seed-specific sensitivity to label accuracy
  ``w_s ~ N(0, slope_sd)`` (a seed whose data order makes labels matter more) and the run's
  own noise ``e ~ N(0, run_sd)`` (or Student-t with 3 df, scaled to that sd: heavy tails).
"""


from __future__ import annotations

import numpy as np


def chain_returns(rng: np.random.Generator, q: np.ndarray, m: int) -> np.ndarray:
    """Return (fraction of ``m`` chained sub-tasks completed) for each success probability in ``q``."""
    q = np.asarray(q, dtype=float)
    return np.cumprod(rng.random((*q.shape, m)) < q[..., None], axis=-1).sum(axis=-1) / m


def expected_return(q: np.ndarray, m: np.ndarray | int) -> np.ndarray:
    """``Σ_{j≤m} q^j / m`` elementwise."""
    q, m = np.broadcast_arrays(np.asarray(q, dtype=float), np.asarray(m))
    j = np.arange(1, int(np.max(m)) + 1)
    powers = np.where(j <= m[..., None], q[..., None] ** j, 0.0)
    return powers.sum(axis=-1) / m


def _task_q(rng: np.random.Generator, mean: float, kappa: float | None, shape: tuple[int, ...]) -> np.ndarray:
    if kappa is None:
        return np.full(shape, mean)
    return rng.beta(mean * kappa, (1 - mean) * kappa, shape)


def episode_returns(rng: np.random.Generator, experiments: int, episodes: int, m: int, mean: float,
                    kappa: float | None) -> tuple[np.ndarray, float]:
    """``experiments`` × ``episodes`` returns, each episode on a freshly drawn task, and the true mean."""
    q = _task_q(rng, mean, kappa, (experiments, episodes))
    if kappa is None:
        truth = float(expected_return(mean, m))
    else:  # E[q^j] for q ~ Beta(α, β): Π_{i<j} (α + i)/(α + β + i)
        a, b = mean * kappa, (1 - mean) * kappa
        truth = float(np.mean([np.prod([(a + i) / (a + b + i) for i in range(j)]) for j in range(1, m + 1)]))
    return chain_returns(rng, q, m), truth


def paired_grids(rng: np.random.Generator, experiments: int, seeds: int, tasks: int, *, mean: float,
                 kappa: float | None, seed_sd: float, delta: float, delta_sd: float, max_subtasks: int = 6,
                 eval_episodes: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grids ``a[e, s, t]``, ``b[e, s, t]`` and the true difference per experiment.

    The truth is the expected ``a − b`` over the seed and task distributions; with one seed it is
    the difference *given* that seed's effects (what a one-seed interval can cover), averaged
    over tasks, both by Monte Carlo on expected returns (4096 draws; 1024 per experiment with one seed).
    """
    m = 1 + np.arange(tasks) % max_subtasks
    q = _task_q(rng, mean, kappa, (experiments, 1, tasks))
    effect = rng.normal(delta, delta_sd, (experiments, 1, tasks))
    ua, ub = rng.normal(0, seed_sd, (2, experiments, seeds, 1))
    qa, qb = np.clip(q + effect + ua, 0, 1), np.clip(q + ub, 0, 1)
    a = _cells(rng, qa, m, seeds, eval_episodes)
    b = _cells(rng, qb, m, seeds, eval_episodes)
    draws = 4096
    mm = 1 + np.arange(draws) % max_subtasks
    q_big = _task_q(rng, mean, kappa, (draws,))
    eff_big = rng.normal(delta, delta_sd, draws)
    if seeds == 1:
        small = slice(0, 1024)  # per experiment: 1024 task draws keep the Monte-Carlo error ≈ 0.005
        truth = np.mean(expected_return(np.clip(q_big[small] + eff_big[small] + ua[:, 0, :], 0, 1), mm[small])
                        - expected_return(np.clip(q_big[small] + ub[:, 0, :], 0, 1), mm[small]), axis=1)
    else:
        sa, sb = rng.normal(0, seed_sd, (2, draws))
        value = float(np.mean(expected_return(np.clip(q_big + eff_big + sa, 0, 1), mm)
                              - expected_return(np.clip(q_big + sb, 0, 1), mm)))
        truth = np.full(experiments, value)
    return a, b, truth


def _cells(rng: np.random.Generator, q: np.ndarray, m: np.ndarray, seeds: int, eval_episodes: int) -> np.ndarray:
    experiments, tasks = q.shape[0], q.shape[2]
    q = np.broadcast_to(q, (experiments, seeds, tasks))
    out = np.empty((experiments, seeds, tasks))
    for length in np.unique(m):
        cols = np.flatnonzero(m == length)
        sub = np.broadcast_to(q[:, :, cols, None], (experiments, seeds, len(cols), eval_episodes))
        out[:, :, cols] = chain_returns(rng, sub, int(length)).mean(axis=-1)
    return out


def slope_points(rng: np.random.Generator, experiments: int, accuracies: tuple[float, ...], seeds: int, *,
                 slope: float, seed_sd: float, slope_sd: float, run_sd: float, curvature: float = 0.0,
                 heavy_tails: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``y[e, s, a]`` (each seed trained at every accuracy) and the true slope per experiment.

    The truth is the least-squares slope of the mean curve over the design's accuracies
    (``β`` when ``curvature`` is 0); with one seed it is that seed's own (``β + w_s``: what a
    one-seed interval can cover, as for the paired differences)."""
    acc = np.asarray(accuracies, dtype=float)
    centred = acc - acc.mean()
    u = rng.normal(0, seed_sd, (experiments, seeds, 1))
    w = rng.normal(0, slope_sd, (experiments, seeds, 1))
    if heavy_tails:  # Student-t(3) has variance 3: scaled to sd run_sd
        e = rng.standard_t(3, (experiments, seeds, len(acc))) * run_sd / np.sqrt(3)
    else:
        e = rng.normal(0, run_sd, (experiments, seeds, len(acc)))
    y = 0.2 + slope * acc + w * centred + curvature * centred ** 2 + u + e
    curve_slope = slope + curvature * float(centred @ centred ** 2) / float(centred @ centred)
    truth = curve_slope + (w[:, 0, 0] if seeds == 1 else np.zeros(experiments))
    return y, truth
