"""Evaluation statistics: intervals for returns in [0, 1], paired method comparisons, claims, power.

Pure functions on numpy arrays and plain records; no Ray, no scipy (the Student-t CDF and
quantile for real degrees of freedom are computed here). Coverage of every interval below
is measured by ``benchmarks/bench_coverage.py`` on a stated simulation model (chained
Bernoulli sub-tasks, Beta task heterogeneity, normal seed effects); target ≥ 0.93 at
nominal 95 % for 3–24 episodes, 1–5 training seeds, 24–96 tasks, success near 0 and 1.

**Interval for a mean return** (:func:`return_interval`). A return is the fraction of a
mission's sub-tasks completed, so a group of ``n`` episodes holds ``N`` sub-tasks. We use
the Wilson score interval (Wilson 1927) with an effective number of trials ``n_eff``:

* *At p̂ ∈ {0, 1}*: ``n_eff = n`` (episodes). Every chain failed at once (or all
  finished), so the data cannot show how the sub-tasks of an episode are correlated; an
  episode is one trial (fully dependent sub-tasks). Counting the ``N`` sub-tasks as
  independent trials here gave coverage 0.74–0.87 for 4–6 sub-tasks with success near 1.
* *Otherwise* the design effect (Korn & Graubard 1998): ``n_eff = p̂(1-p̂)/v̂`` with
  ``v̂ = s²/n`` the variance of the mean return over episodes (ddof 1), clipped to
  ``[n, N]``: ``N`` for independent sub-tasks, ``n`` for fully dependent ones, and exactly
  the plain Wilson interval for 1-sub-task missions. Where ``n_eff > n`` the width rests
  on a variance estimated from ``n`` episodes, so z becomes Student's t with ``n − 1`` df
  (the same step as from a z- to a t-interval); without it coverage fell to 0.89 at 6
  sub-tasks, p = 0.5, 10 episodes.
* *Boundary modification* (Brown, Cai & DasGupta 2001, Statistical Science 16(2), §4.1.1):
  Wilson's coverage dips far below nominal for ``x = 1, 2`` successes at small ``n``
  (0.86 at n = 3, p = 0.05). For ``x ≤ x*`` (2 for n ≤ 50, 3 for n ≤ 100) and ``x < n/2`` the lower bound
  becomes the Poisson bound ``½χ²_{2x,α}/n``; the upper bound symmetrically near ``n``.

Episodes are independent draws: pool them over training seeds and the interval is about
those trained policies (seed-to-seed variance is in the paired comparisons below). A
deterministic policy from a fixed start ignores the evaluation seed, so its repeats are one
episode: :func:`distinct_episodes` (``deterministic_methods=``) counts them once.
Why not a bootstrap over tasks: at n = 3 a percentile bootstrap collapses to ``[0, 0]``
whenever every episode failed. Why not a Student-t on returns: it leaves [0, 1].

**Paired comparison** (:func:`paired_difference`). Two methods are compared on the same
evaluation tasks and training-seed indices, ``d[s, t] = a[s, t] − b[s, t]`` (each cell a
mean over evaluation seeds). Model: two-way random effects without replication,
``d = δ + seed_s + task_t + residual_st``; the grand mean's variance is
``σ²_seed/S + σ²_task/T + σ²_res/(S·T)``, estimated without bias by
``(MS_seed + MS_task − MS_res)/(S·T)`` from the ANOVA mean squares, with Satterthwaite's
(1946) degrees of freedom, and the interval is Student's t on them. When the seeds
dominate, df → S − 1 (t_{0.975, 2} = 4.30 at 3 seeds), which is what a few seeds can say.
The former two-way percentile bootstrap (Owen 2007) covered 0.76–0.88 with 3–5 seeds: a
bootstrap over 3 seeds has 10 distinct resamples and ignores that their spread is itself
estimated from 3 values. A paired t over the S×T cells would treat cells of one seed (one
trained policy) as independent. With **one seed** the interval is the paired t over tasks
(df = T − 1): it covers task sampling only, and the result says so
(``covers: "tasks only (1 training seed)"``).

**Power** (:func:`minimum_detectable_effect`, ``mde80`` in every comparison and claim):
the smallest true difference that this design (seeds, tasks, estimated variance
components) detects with 80 % power at two-sided α = 0.05, ``(t_{1−α/2,df} + t_{0.8,df})·SE``
(Bloom 1995). "Not significant" with an MDE below the effect the paper reports
(:data:`PAPER_EFFECTS`) rules that effect out here; with an MDE above it, the experiment
could not have detected it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from functools import lru_cache
from statistics import NormalDist
from typing import Any

import numpy as np

# The effect sizes the RG-VLM paper reports, as quoted in the project's issue on ranking
# reward methods (issue 28), to set beside each comparison's MDE. They are relative
# figures; ``absolute_effect`` converts them to return units at a base return measured here.
PAPER_EFFECTS: dict[str, dict[str, Any]] = {
    "adding_sparse": {
        "what": "adding the sparse reward to the dense VLM reward", "paper": "+14 %",
        "relative": (0.14, 0.14), "kind": "relative gain over dense alone"},
    "over_other_vlm_rewards": {
        "what": "RG-VLM over the other VLM rewards", "paper": "1.12–3.15×",
        "relative": (0.12, 2.15), "kind": "relative gain over the other reward (ratio − 1)"},
    "drop_under_randomized_start": {
        "what": "return drop under randomized start, RG-VLM vs sparse", "paper": "38.9 % vs 49.9 %",
        "relative": (0.11, 0.11), "kind": "difference of relative drops (0.499 − 0.389)"},
}


def absolute_effect(key: str, base_return: float) -> tuple[float, float]:
    """The paper's effect ``key`` (:data:`PAPER_EFFECTS`) in return units at ``base_return``
    (the comparison's baseline: dense alone, the other reward, or the fixed-start return)."""
    lo, hi = PAPER_EFFECTS[key]["relative"]
    return lo * base_return, hi * base_return


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


def wilson_interval(successes: float, trials: float, confidence: float = 0.95,
                    z: float | None = None) -> tuple[float, float]:
    """Wilson score interval with Brown–Cai–DasGupta's boundary modification.

    ``successes`` and ``trials`` may be non-integer (effective counts). Always within
    [0, 1] and of positive width for ``trials > 0``. ``z``: the critical value to use instead
    of the normal quantile of ``confidence`` (a Student-t quantile, which for 1 df is far past
    any normal quantile a float confidence can express).
    """
    if trials <= 0:
        return math.nan, math.nan
    if not 0 <= successes <= trials:
        raise ValueError(f"successes {successes} not in [0, trials={trials}]")
    z = _z(confidence) if z is None else z
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
    applies to all); episodes are taken as independent (collapse repeats of a deterministic
    episode first: :func:`distinct_episodes`). At ``p̂ ∈ {0, 1}`` the effective count is the
    number of episodes; otherwise ``n_eff = p̂(1-p̂)/v̂`` with ``v̂ = s²/n`` (ddof 1) clipped
    to [episodes, sub-tasks], and where ``n_eff`` exceeds the episodes (an estimated design
    effect) Wilson's z becomes Student's t with episodes − 1 df. One-sub-task missions give
    exactly the Wilson interval. NaNs for no episodes.
    """
    r = np.asarray(returns, dtype=float)
    if r.size == 0:
        return math.nan, math.nan, math.nan
    m = np.broadcast_to(np.asarray(num_subtasks, dtype=float), r.shape)
    if (m < 1).any() or (r < 0).any() or (r > 1).any():
        raise ValueError("returns must lie in [0, 1] and num_subtasks be >= 1")
    n, total = r.size, float(m.sum())
    p = float(r.mean())
    if p in (0.0, 1.0) or n < 2:
        # All chains failed at once (or all finished): the data cannot show how the sub-tasks
        # of an episode are correlated, so count them as fully dependent: one trial per episode.
        lo, hi = wilson_interval(p * n, n, confidence)
        return p, lo, hi
    v = float(r.var(ddof=1)) / n
    n_eff = total if v <= 0 else min(total, max(float(n), p * (1 - p) / v))
    # The design effect is estimated from n episodes: where it counts more trials than
    # episodes, Wilson's z becomes Student's t with n − 1 df.
    z = _t_ppf_scalar(0.5 + confidence / 2, float(n - 1)) if n_eff > n else None
    lo, hi = wilson_interval(p * n_eff, n_eff, confidence, z=z)
    return p, lo, hi


def distinct_episodes(records: Iterable[Mapping[str, Any]], *, deterministic_methods: Collection[str] = (),
                      fixed_modes: Collection[str] = ("fixed",)) -> list[dict[str, Any]]:
    """Records with repeats of one deterministic episode counted once.

    A deterministic policy (greedy learned policy, scripted expert) started from a fixed
    start ignores the evaluation seed: its episodes for one (method, training seed, task,
    mode) are the same episode, and counting each evaluation seed as a trial overstates
    the information. For ``method in deterministic_methods`` and ``mode in fixed_modes``
    the records of one such key become one record (the first, with ``eval_seeds`` = how
    many were merged). Raises ``ValueError`` if they differ in return (the policy or the
    environment is not deterministic, so they are real repeats). Other records pass unchanged.
    """
    out: list[dict[str, Any]] = []
    first: dict[tuple[str, Any, str, str], dict[str, Any]] = {}
    deterministic, fixed = set(deterministic_methods), set(fixed_modes)
    for r in records:
        if str(r["method"]) not in deterministic or str(r["mode"]) not in fixed:
            out.append(dict(r))
            continue
        key = (str(r["method"]), r.get("train_seed"), str(r["task_id"]), str(r["mode"]))
        if key not in first:
            first[key] = {**r, "eval_seeds": 1}
            out.append(first[key])
            continue
        kept = first[key]
        if float(kept["return"]) != float(r["return"]):
            raise ValueError(f"{key[0]} (training seed {key[1]}) on task {key[2]} in mode {key[3]} is not "
                             f"deterministic: evaluation seeds {kept.get('seed')} and {r.get('seed')} gave returns "
                             f"{float(kept['return']):.3f} and {float(r['return']):.3f}; leave {key[0]} out of "
                             f"deterministic_methods")
        kept["eval_seeds"] += 1
    return out


def by_mode_method_subtasks(records: Iterable[Mapping[str, Any]], confidence: float = 0.95, *,
                            deterministic_methods: Collection[str] = (),
                            ) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """Per-episode records -> ``{mode: {method: {str(k): {"mean", "ci95": [lo, hi], "n"}}}}``.

    Each record needs ``mode``, ``method``, ``num_subtasks`` and ``return`` (as written by
    the evaluation actors, with the method added). ``n`` counts episodes (training seeds ×
    evaluation seeds × tasks), after :func:`distinct_episodes` with ``deterministic_methods``
    (so a deterministic policy's fixed-start episode counts once, not once per evaluation
    seed). Reference policies (``expert``, ``random``) are methods like any other. The
    interval is :func:`return_interval`.
    """
    records = distinct_episodes(records, deterministic_methods=deterministic_methods)
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


def _betainc(a: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Regularized incomplete beta I_x(a, b), vectorised (Lentz's continued fraction,
    Numerical Recipes §6.4), with the symmetry I_x(a, b) = 1 − I_{1−x}(b, a) for fast convergence."""
    a, b, x = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float), np.asarray(x, float))
    flip = x > (a + 1) / (a + b + 2)
    a, b, x = np.where(flip, b, a), np.where(flip, a, b), np.where(flip, 1 - x, x)
    tiny = 1e-300
    c = np.ones_like(x)
    d = 1 - (a + b) * x / (a + 1)
    d = 1 / np.where(np.abs(d) < tiny, tiny, d)
    h = d.copy()
    for m in range(1, 400):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + num * d
            d = 1 / np.where(np.abs(d) < tiny, tiny, d)
            c = 1 + num / c
            c = np.where(np.abs(c) < tiny, tiny, c)
            delta = c * d
            h = h * delta
        if np.all(np.abs(delta - 1) < 1e-13):
            break
    with np.errstate(divide="ignore"):
        log_front = (a * np.log(x) + b * np.log1p(-x) - np.log(a)
                     + np.vectorize(math.lgamma)(a + b) - np.vectorize(math.lgamma)(a) - np.vectorize(math.lgamma)(b))
    value = np.where(x <= 0, 0.0, np.exp(log_front) * h)
    return np.where(flip, 1 - value, value)


def t_cdf(t: np.ndarray | float, df: np.ndarray | float) -> np.ndarray:
    """Student-t CDF for real ``df > 0`` (Satterthwaite degrees of freedom are not integers)."""
    t, df = np.broadcast_arrays(np.asarray(t, float), np.asarray(df, float))
    tail = 0.5 * _betainc(df / 2, np.full_like(df, 0.5), df / (df + t * t))
    return np.where(t >= 0, 1 - tail, tail)


def t_ppf(q: float, df: np.ndarray | float) -> np.ndarray:
    """Student-t quantile for real ``df > 0`` and ``0.5 <= q < 1``, by bisection (vectorised over df)."""
    if not 0.5 <= q < 1:
        raise ValueError(f"q must be in [0.5, 1), got {q}")
    df = np.asarray(df, float)
    lo, hi = np.zeros_like(df), np.full_like(df, 1e4)
    for _ in range(70):
        mid = 0.5 * (lo + hi)
        below = t_cdf(mid, df) < q
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)


@lru_cache(maxsize=4096)
def _t_ppf_scalar(q: float, df: float) -> float:
    return float(t_ppf(q, df))


def _covers(seeds: int, tasks: int) -> str:
    if seeds == 1:
        return "tasks only (1 training seed)"
    if tasks == 1:
        return "training seeds only (1 task)"
    return "training seeds and tasks"


def _two_way(d: np.ndarray) -> dict[str, np.ndarray]:
    """Two-way random-effects variance of the grand mean of grids ``d[e, s, t]`` (vectorised over e).

    Mean squares (seeds, tasks, residual) -> ``V = MS_s + MS_t − MS_e`` (so that
    ``V/(S·T)`` is unbiased for ``σ²_seed/S + σ²_task/T + σ²_res/(S·T)``), floored at
    ``max(MS_s, MS_t)`` (its expectation is at least either), with Satterthwaite's df.
    One seed: the paired t over task means (df = T − 1); one task: over seed means.
    """
    _, seeds, tasks = d.shape
    grand = d.mean(axis=(1, 2))
    seed_means, task_means = d.mean(axis=2), d.mean(axis=1)
    nan = np.full_like(grand, np.nan)
    ms_s = tasks * ((seed_means - grand[:, None]) ** 2).sum(axis=1) / (seeds - 1) if seeds > 1 else nan
    ms_t = seeds * ((task_means - grand[:, None]) ** 2).sum(axis=1) / (tasks - 1) if tasks > 1 else nan
    if seeds > 1 and tasks > 1:
        resid = d - seed_means[:, :, None] - task_means[:, None, :] + grand[:, None, None]
        ms_e = (resid ** 2).sum(axis=(1, 2)) / ((seeds - 1) * (tasks - 1))
        v = ms_s + ms_t - ms_e
        with np.errstate(divide="ignore", invalid="ignore"):
            df = v ** 2 / (ms_s ** 2 / (seeds - 1) + ms_t ** 2 / (tasks - 1) + ms_e ** 2 / ((seeds - 1) * (tasks - 1)))
        floor_s, floor_t = (v < ms_s) & (ms_s >= ms_t), (v < ms_t) & (ms_t > ms_s)
        v = np.where(floor_s, ms_s, np.where(floor_t, ms_t, v))
        df = np.where(floor_s, seeds - 1, np.where(floor_t, tasks - 1, df))
        components = {"seed": np.maximum(0.0, (ms_s - ms_e) / tasks), "task": np.maximum(0.0, (ms_t - ms_e) / seeds),
                      "residual": ms_e}
    elif tasks > 1:
        v, df = ms_t, np.full_like(grand, tasks - 1)
        components = {"seed": nan, "task": ms_t, "residual": nan}  # task and residual not separable
    elif seeds > 1:
        v, df = ms_s, np.full_like(grand, seeds - 1)
        components = {"seed": ms_s, "task": nan, "residual": nan}
    else:
        v, df, components = nan, nan, {"seed": nan, "task": nan, "residual": nan}
    df = np.where(np.isfinite(df), np.maximum(df, 1.0), np.nan)  # all-zero grids give 0/0
    df = np.where(v > 0, df, np.where(np.isnan(v), np.nan, seeds * tasks - 1.0))
    return {"mean": grand, "se": np.sqrt(v / (seeds * tasks)), "df": df, **{f"var_{k}": c for k, c in components.items()}}


def _two_way_interval(d: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """t intervals (:func:`_two_way`) for a batch of grids ``d[e, s, t]``: ``(lo, hi)``."""
    _z(confidence)
    fit = _two_way(d)
    df = fit["df"]
    crit = np.full_like(df, np.nan)
    ok = np.isfinite(df)
    crit[ok] = t_ppf(0.5 + confidence / 2, df[ok])
    half = crit * fit["se"]
    return fit["mean"] - half, fit["mean"] + half


def _mde(se: float, df: float, alpha: float, power: float) -> float:
    if not (math.isfinite(se) and math.isfinite(df)):
        return math.nan
    return (_t_ppf_scalar(1 - alpha / 2, round(df, 6)) + _t_ppf_scalar(power, round(df, 6))) * se


def minimum_detectable_effect(components: Mapping[str, float], seeds: int, tasks: int, *, alpha: float = 0.05,
                              power: float = 0.8) -> float:
    """Smallest true paired difference a design of ``seeds`` × ``tasks`` detects with ``power``.

    ``components``: ``{"seed", "task", "residual"}`` variances of the difference (as
    :func:`paired_difference` returns them in ``variance_components``). The grand mean's
    standard error is ``sqrt(σ²_seed/S + σ²_task/T + σ²_res/(S·T))`` (the seed term is left
    out for S = 1: such a design covers tasks only), its df Satterthwaite's on the
    expected mean squares, and MDE = (t_{1−α/2, df} + t_{power, df})·SE (Bloom 1995,
    "Minimum detectable effects", Evaluation Review 19(5)), two-sided α.
    """
    if seeds < 1 or tasks < 1 or seeds * tasks < 2:
        raise ValueError(f"need at least 2 seeds × tasks cells, got {seeds} × {tasks}")
    s2, t2, e2 = (float(components.get(k, 0.0) or 0.0) for k in ("seed", "task", "residual"))
    s2, t2, e2 = (0.0 if math.isnan(x) else x for x in (s2, t2, e2))
    if seeds == 1:
        var, df = (t2 + e2) / tasks, tasks - 1.0
    elif tasks == 1:
        var, df = (s2 + e2) / seeds, seeds - 1.0
    else:
        ms_s, ms_t, ms_e = e2 + tasks * s2, e2 + seeds * t2, e2
        v = ms_s + ms_t - ms_e
        df = v * v / (ms_s ** 2 / (seeds - 1) + ms_t ** 2 / (tasks - 1) + ms_e ** 2 / ((seeds - 1) * (tasks - 1)))
        var = v / (seeds * tasks)
    return _mde(math.sqrt(var), max(df, 1.0), alpha, power)


def paired_difference(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> dict[str, Any]:
    """Mean of ``a − b`` over a seeds × tasks grid, with a two-way random-effects t interval.

    ``a[s, t]`` and ``b[s, t]``: mean return of each method for training seed s on task t.
    Returns ``{"difference", "ci95": [lo, hi], "significant", "seeds", "tasks", "se", "df",
    "covers", "variance_components": {"seed", "task", "residual"}, "mde80"}``:
    ``significant`` means the interval excludes 0; ``covers`` says which sources of
    variation the interval accounts for (``"tasks only (1 training seed)"`` with one seed);
    ``mde80`` is the minimum detectable effect at 80 % power, two-sided α = 1 − confidence,
    for this design and the estimated variances (:func:`minimum_detectable_effect`).
    Deterministic (no resampling).
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.ndim != 2 or d.size == 0:
        raise ValueError(f"expected a non-empty seeds × tasks grid, got shape {d.shape}")
    if np.isnan(d).any():
        raise ValueError("the seeds × tasks grid has missing cells (NaN)")
    fit = {k: float(v[0]) for k, v in _two_way(d[None]).items()}
    lo, hi = _two_way_interval(d[None], confidence)
    lo_f, hi_f = float(lo[0]), float(hi[0])
    seeds, tasks = d.shape
    return {"difference": fit["mean"], "ci95": [lo_f, hi_f], "significant": bool(lo_f > 0 or hi_f < 0),
            "seeds": seeds, "tasks": tasks, "se": fit["se"], "df": fit["df"], "covers": _covers(seeds, tasks),
            "variance_components": {k: fit[f"var_{k}"] for k in ("seed", "task", "residual")},
            "mde80": _mde(fit["se"], fit["df"], 1 - confidence, 0.8)}


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
                    confidence: float = 0.95) -> dict[str, Any]:
    """Paired ``a − b`` in ``mode`` (:func:`paired_difference` on shared seeds × tasks).

    Records need ``method``, ``mode``, ``train_seed``, ``task_id`` and ``return``.
    """
    ga, gb = _aligned([seed_task_grid(records, a, mode), seed_task_grid(records, b, mode)], f"{a} vs {b} ({mode})")
    return paired_difference(ga, gb, confidence)


def claims(records: Sequence[Mapping[str, Any]], *, sparse: str, dense: str, dense_plus_sparse: str,
           mode: str = "fixed", randomized_mode: str = "randomized", confidence: float = 0.95
           ) -> list[dict[str, Any]]:
    """The paper's three claims, each as ``{claim, finding, difference, ci95, significant,
    covers, mde80, paper_effect}`` (``paper_effect``: the key of :data:`PAPER_EFFECTS` that
    the claim reproduces, or None where the paper states no effect for it, so the report
    can set the paper's effect beside ``mde80``).

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
        out.append(_claim(claim, compare_methods(records, a, b, mode, confidence), mode))
    sf, sr, df, dr = _aligned([seed_task_grid(records, sparse, mode), seed_task_grid(records, sparse, randomized_mode),
                               seed_task_grid(records, dense, mode), seed_task_grid(records, dense, randomized_mode)],
                              "randomized-start drop")
    drop = paired_difference(sf - sr, df - dr, confidence)
    out.insert(1, _claim(f"the drop under randomized start is smaller with dense rewards ({dense}) "
                         f"than with sparse ({sparse})", drop, f"{mode} − {randomized_mode}"))
    return out


def _claim(claim: str, result: Mapping[str, Any], mode: str) -> dict[str, Any]:
    diff, (lo, hi) = result["difference"], result["ci95"]
    verdict = ("supported" if result["significant"] and diff > 0 else
               "contradicted" if result["significant"] else "inconclusive (the interval includes 0)")
    finding = (f"{verdict}: difference {diff:+.3f}, 95% CI [{lo:+.3f}, {hi:+.3f}], "
               f"detectable at 80% power from ±{result['mde80']:.3f} ({mode}; "
               f"{result['seeds']} training seeds × {result['tasks']} tasks, paired; covers {result['covers']})")
    key = ("drop_under_randomized_start" if "randomized start" in claim else
           "adding_sparse" if claim.startswith("adding sparse") else None)
    return {"claim": claim, "finding": finding, "difference": diff, "ci95": [lo, hi],
            "significant": result["significant"], "covers": result["covers"], "mde80": result["mde80"],
            "paper_effect": key}


def accuracy_slope(accuracy: Sequence[float], returns: Sequence[float], seeds: Sequence[int],
                   confidence: float = 0.95) -> dict[str, Any]:
    """Slope of return on label accuracy (return per unit of accuracy), with its interval.

    One point per trained policy: its label ``accuracy``, its training seed and its mean
    ``return`` over the evaluation tasks. ``slope`` is the least-squares slope over all
    points (``intercept``, ``ols_stderr`` and ``r`` as ``scipy.stats.linregress`` gives them).

    The interval is a t-interval *over seeds*: each seed's own least-squares slope across
    the accuracies it was trained at, then mean ± t_{S−1}·sd/√S. Every accuracy is trained
    from the same seeds, so a seed's effect (a lucky data order, initialisation) shifts all
    its points alike and drops out of its slope; the pooled OLS stderr (df = n − 2) would
    count a seed's points as independent runs. With a balanced design (every seed at the
    same accuracies) the mean of per-seed slopes equals the pooled slope. With one seed, or
    seeds at fewer than two accuracies, the interval is the OLS one (df = n − 2) and
    ``covers`` says that seed-to-seed variance is not in it.
    """
    x, y, s = (np.asarray(v) for v in (accuracy, returns, seeds))
    if not len(x) == len(y) == len(s):
        raise ValueError("accuracy, returns and seeds differ in length")
    if len(np.unique(x)) < 2:
        raise ValueError("a slope needs at least two label accuracies")
    x, y = x.astype(float), y.astype(float)
    dx, dy = x - x.mean(), y - y.mean()
    sxx = float(dx @ dx)
    slope = float(dx @ dy) / sxx
    intercept = float(y.mean() - slope * x.mean())
    n = len(x)
    resid = y - (intercept + slope * x)
    ols_se = float(np.sqrt(resid @ resid / (n - 2) / sxx)) if n > 2 else float("nan")
    syy = float(dy @ dy)
    r = float(dx @ dy) / np.sqrt(sxx * syy) if syy > 0 else 0.0
    per_seed = []
    for seed in np.unique(s):
        xs, ys = x[s == seed], y[s == seed]
        if len(np.unique(xs)) >= 2:
            per_seed.append(float(np.polyfit(xs, ys, 1)[0]))
    if len(per_seed) >= 2:
        df = len(per_seed) - 1
        ci = mean_interval(per_seed, confidence)
        # Every point is measured on the same test tasks: their sampling shifts all points alike
        # and is not in this interval (the paired comparisons carry it).
        covers = f"training seeds ({len(per_seed)}); the test tasks are the same for every point"
    else:
        df = n - 2
        half = (_t_ppf_scalar(0.5 + confidence / 2, float(df)) * ols_se if df > 0 and np.isfinite(ols_se)
                else float("nan"))
        ci = (slope - half, slope + half)
        covers = "residuals around the line only (1 training seed: no seed-to-seed variance)"
    return {"slope": slope, "intercept": intercept, "r": r, "ols_stderr": ols_se, "points": n,
            "seeds": len(per_seed), "seed_slopes": per_seed, "df": df, "ci": ci, "covers": covers}


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """The t-interval of the mean of independent ``values`` (e.g. one per training seed):
    mean ± t_{n−1}·sd/√n; NaNs with fewer than two values."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float("nan"), float("nan")
    half = _t_ppf_scalar(0.5 + confidence / 2, float(len(x) - 1)) * float(x.std(ddof=1)) / np.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)
