"""Coverage of the evaluation intervals (``rayrg.evaluation.stats``) at nominal 95 %.

Simulation model (``rayrg.evaluation.simulate``):

* chained Bernoulli sub-tasks: a mission of m sub-tasks, each succeeding with the task's
  probability q, the chain stopping at the first failure; return = fraction completed;
* task heterogeneity: q ~ Beta(μκ, (1−μ)κ) per task (κ = ∞: the same q for every task);
* normal seed effects: each method's trained policy for training seed s shifts q by
  N(0, seed_sd); method a is also shifted per task by N(δ, δ_sd), so the paired difference
  has seed, task and residual variance; mission lengths cycle 1–6 over the tasks;
* return against label accuracy (``accuracy_slope``): each policy's mean return is
  ``α + β·a + w_s·(a − ā) + κ·(a − ā)² + u_s + e`` — seed effect u_s, a seed-specific sensitivity to
  label accuracy w_s, the run's own noise e (normal, or Student-t(3)), curvature κ.

``return_interval``: n episodes, each on a fresh task, truth = E[return]. ``paired_difference``:
S seeds × T tasks, truth = E[a − b] over seeds and tasks (with 1 seed: given that seed, which
is all a one-seed interval claims to cover). ``accuracy_slope``: S seeds, each trained at the
sweep's accuracies (the end points, or all four of Table I's and 100 %); truth = the slope of
the mean curve over those accuracies (1 seed: that seed's own); beside it, the coverage of the
pooled OLS interval, which counts a seed's points as independent runs. Prints one line per
regime::

    coverage <function> <regime>: 0.9xx (nominal 0.95, N sims)

Goal: ≥ 0.93 in every regime. Heavy (minutes on 2 cores); ``--sims`` sets N.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from rayrg.evaluation.simulate import episode_returns, paired_grids, slope_points
from rayrg.evaluation.stats import _two_way_interval, accuracy_slope, return_interval, t_ppf

SWEEP = (0.742, 0.862, 0.934, 1.0)  # the paper's Table-I accuracies and perfect labels
END_POINTS = (0.742, 1.0)


def return_coverage(rng: np.random.Generator, sims: int, episodes: int, m: int, mean: float,
                    kappa: float | None) -> float:
    returns, truth = episode_returns(rng, sims, episodes, m, mean, kappa)
    hits = 0
    for row in returns:
        _, lo, hi = return_interval(row, m)
        hits += lo <= truth <= hi
    return hits / sims


def paired_coverage(rng: np.random.Generator, sims: int, seeds: int, tasks: int, **model: float | None) -> float:
    a, b, truth = paired_grids(rng, sims, seeds, tasks, **model)  # type: ignore[arg-type]
    lo, hi = _two_way_interval(a - b)
    return float(np.mean((lo <= truth) & (truth <= hi)))


def slope_coverage(rng: np.random.Generator, sims: int, accuracies: tuple[float, ...], seeds: int,
                   **model: float | bool) -> tuple[float, float]:
    """(coverage of accuracy_slope's interval, coverage of the pooled OLS interval)."""
    y, truth = slope_points(rng, sims, accuracies, seeds, **model)  # type: ignore[arg-type]
    x = np.tile(accuracies, seeds)
    s = np.repeat(np.arange(seeds), len(accuracies))
    t_pooled = float(t_ppf(0.975, len(x) - 2))  # the pooled OLS interval's df: every point independent
    ours = pooled = 0
    for i in range(sims):
        fit = accuracy_slope(x, y[i].ravel(), s)
        lo, hi = fit["ci"]
        ours += bool(lo <= truth[i] <= hi)
        pooled += bool(abs(fit["slope"] - truth[i]) <= t_pooled * fit["ols_stderr"])
    return ours / sims, pooled / sims


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sims", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["return", "paired", "slope"], action="append",
                        help="Run only these intervals' regimes (repeatable; default: all).")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    worst = 1.0
    only = set(args.only or ["return", "paired", "slope"])
    for kappa in ((None, 10.0) if "return" in only else ()):
        for m in (1, 4, 6):
            for mean in (0.03, 0.5, 0.9, 0.97):
                for n in (3, 10, 24):
                    cov = return_coverage(rng, args.sims, n, m, mean, kappa)
                    worst = min(worst, cov)
                    k = "inf" if kappa is None else f"{kappa:g}"
                    print(f"coverage return_interval m={m} q={mean} kappa={k} episodes={n}: "
                          f"{cov:.3f} (nominal 0.95, {args.sims} sims)", flush=True)
    for mean in ((0.5, 0.95) if "paired" in only else ()):
        for seed_sd in (0.05, 0.15):
            for seeds in (1, 3, 5):
                for tasks in (24, 96):
                    for eval_episodes in (1, 3):
                        cov = paired_coverage(rng, args.sims, seeds, tasks, mean=mean, kappa=10.0, seed_sd=seed_sd,
                                              delta=0.05, delta_sd=0.05, eval_episodes=eval_episodes)
                        worst = min(worst, cov)
                        print(f"coverage paired_difference q={mean} seed_sd={seed_sd} seeds={seeds} tasks={tasks} "
                              f"eval_episodes={eval_episodes}: {cov:.3f} (nominal 0.95, {args.sims} sims)", flush=True)
    for accuracies, name in (((END_POINTS, "end-points"), (SWEEP, "sweep")) if "slope" in only else ()):
        for seeds in (1, 3, 5):
            if seeds == 1 and len(accuracies) < 3:
                continue  # 2 points, 1 seed: no interval at all (df = 0; reported as NaN)
            for slope_sd in (0.0, 0.2, 0.5):
                for heavy in (False, True):
                    cov, pooled = slope_coverage(rng, args.sims, accuracies, seeds, slope=-0.1, seed_sd=0.05,
                                                 slope_sd=slope_sd, run_sd=0.03, curvature=0.3, heavy_tails=heavy)
                    worst = min(worst, cov)
                    print(f"coverage accuracy_slope accuracies={name} seeds={seeds} slope_sd={slope_sd} "
                          f"errors={'t3' if heavy else 'normal'}: {cov:.3f} (pooled OLS {pooled:.3f}; "
                          f"nominal 0.95, {args.sims} sims)", flush=True)
    print(f"coverage worst over all regimes: {worst:.3f} (goal >= 0.93)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
