"""Evaluation statistics: interval coverage on simulated Bernoulli data, paired comparisons, claims."""

from __future__ import annotations

import numpy as np
import pytest

from rayrg.evaluation.metrics import mean_ci
from rayrg.evaluation.simulate import episode_returns, paired_grids
from rayrg.evaluation.stats import (
    PAPER_EFFECTS,
    _two_way_interval,
    absolute_effect,
    by_mode_method_subtasks,
    claims,
    compare_methods,
    distinct_episodes,
    minimum_detectable_effect,
    paired_difference,
    return_interval,
    t_cdf,
    t_ppf,
    wilson_interval,
)

EXPERIMENTS = 2000


def _coverage(completed: np.ndarray, num_subtasks: int, truth: float) -> tuple[float, bool]:
    hits, inside = 0, True
    for row in completed:
        _, lo, hi = return_interval(row / num_subtasks, num_subtasks)
        hits += lo <= truth <= hi
        inside &= 0.0 <= lo < hi <= 1.0
    return hits / len(completed), inside


def test_wilson_by_hand_and_not_degenerate_at_three() -> None:
    # Wilson 5/10 at 95 %: centre 0.5, half 1.96·sqrt(0.025 + 3.8415/400) / 1.38415 = 0.26341
    lo, hi = wilson_interval(5, 10)
    assert (lo, hi) == pytest.approx((0.23659, 0.76341), abs=1e-4)
    assert wilson_interval(0, 3) == pytest.approx((0.0, 3.8415 / 6.8415), abs=1e-4)
    assert wilson_interval(3, 3) == pytest.approx((1 - 3.8415 / 6.8415, 1.0), abs=1e-4)
    # Brown–Cai–DasGupta: x = 1 of n = 3 uses the Poisson bound ½χ²_{2,0.05}/3 = -ln(0.95)/3
    assert wilson_interval(1, 3)[0] == pytest.approx(-np.log(0.95) / 3, rel=1e-6)
    mean, lo, hi = return_interval([0.0, 0.0, 0.0], 1)
    assert mean == 0 and lo == 0 and hi > 0.5  # the t-interval gives [0, 0] here
    assert mean_ci([0.0, 0.0, 0.0])[1:] == (0.0, 0.0)


@pytest.mark.parametrize("p", [0.05, 0.3, 0.7])
@pytest.mark.parametrize("n", [3, 10, 30])
def test_coverage_on_bernoulli_returns(p: float, n: int) -> None:
    """One sub-task per task: coverage of 2000 seeded experiments within [0.90, 1.0].

    Exact coverage of any interval on binomial data oscillates with n and p; Wilson with
    the boundary change stays within [0.915, 0.994] on this grid (Monte-Carlo s.e. 0.005).
    """
    rng = np.random.default_rng([int(p * 100), n])
    coverage, inside = _coverage(rng.binomial(1, p, size=(EXPERIMENTS, n)), 1, p)
    assert inside
    assert 0.90 <= coverage <= 1.0, coverage


def test_average_coverage_is_nominal() -> None:
    rng = np.random.default_rng(7)
    values = [_coverage(rng.binomial(m, p, size=(EXPERIMENTS, n)), m, p)[0]
              for m in (1, 3) for p in (0.05, 0.3, 0.7) for n in (3, 10, 30)]
    assert abs(np.mean(values) - 0.95) <= 0.02, values


def test_chained_subtasks_use_an_effective_sample_size() -> None:
    """A chain stops at the first failure: sub-tasks are correlated, so pooling them as
    independent (plain Wilson on k of N) under-covers; the effective-N interval does not."""
    rng = np.random.default_rng(3)
    m, q, n = 4, 0.9, 30
    truth = sum(q ** j for j in range(1, m + 1)) / m
    completed = np.cumprod(rng.random((EXPERIMENTS, n, m)) < q, axis=2).sum(axis=2)
    coverage, inside = _coverage(completed, m, truth)
    naive = np.mean([(lambda lo, hi: lo <= truth <= hi)(*wilson_interval(row.sum(), n * m)) for row in completed])
    assert inside and coverage >= 0.92, coverage
    assert naive < 0.85, naive


def _grids(rng: np.random.Generator, experiments: int, delta: float) -> np.ndarray:
    seeds, tasks = 3, 20
    seed_effect = rng.normal(0, 0.03, (experiments, seeds, 1))
    task_effect = rng.normal(0, 0.15, (experiments, 1, tasks))
    return delta + seed_effect + task_effect + rng.normal(0, 0.2, (experiments, seeds, tasks))


def test_paired_difference_covers_true_difference_and_null_rate() -> None:
    rng = np.random.default_rng(11)
    lo, hi = _two_way_interval(_grids(rng, 1000, 0.1))
    coverage = np.mean((lo <= 0.1) & (0.1 <= hi))
    assert 0.92 <= coverage <= 0.99, coverage
    lo, hi = _two_way_interval(_grids(rng, 1000, 0.0))
    false_positive = np.mean((lo > 0) | (hi < 0))
    assert 0.01 <= false_positive <= 0.08, false_positive


def test_paired_difference_pairs_cells() -> None:
    rng = np.random.default_rng(0)
    task_effect = rng.normal(0.5, 0.3, (1, 30))
    a = task_effect + 0.05 + rng.normal(0, 0.01, (3, 30))
    b = task_effect + rng.normal(0, 0.01, (3, 30))
    result = paired_difference(a, b)
    # large task-to-task spread, small within-pair noise: pairing makes 0.05 significant
    assert result["significant"] and result["ci95"][0] > 0.03 and result["difference"] == pytest.approx(0.05, abs=0.01)
    assert paired_difference(a, b) == result  # seeded
    with pytest.raises(ValueError, match="missing cells"):
        paired_difference(np.array([[np.nan]]), np.array([[0.0]]))


def _records(rng: np.random.Generator, means: dict[tuple[str, str], float]) -> list[dict]:
    rows = []
    for (method, mode), p in means.items():
        for seed in range(3):
            for t in range(40):
                rows.append({"method": method, "mode": mode, "train_seed": seed, "task_id": f"t{t}",
                             "num_subtasks": 1 + t % 2, "return": float(rng.random() < p)})
    return rows


def test_report_structure_and_claims() -> None:
    rng = np.random.default_rng(5)
    records = _records(rng, {("sparse", "fixed"): 0.3, ("sparse", "randomized"): 0.0,
                             ("dense", "fixed"): 0.7, ("dense", "randomized"): 0.7,
                             ("fused", "fixed"): 0.7, ("fused", "randomized"): 0.65})
    table = by_mode_method_subtasks(records)
    cell = table["fixed"]["sparse"]["2"]
    assert set(cell) == {"mean", "ci95", "n"} and cell["n"] == 60
    assert 0 <= cell["ci95"][0] <= cell["mean"] <= cell["ci95"][1] <= 1
    found = claims(records, sparse="sparse", dense="dense", dense_plus_sparse="fused")
    assert [set(c) for c in found] == [{"claim", "finding", "difference", "ci95", "significant", "covers", "mde80",
                                        "paper_effect"}] * 3
    assert all(c["covers"] == "training seeds and tasks" and 0 < c["mde80"] < 1 for c in found)
    assert [c["paper_effect"] for c in found] == [None, "drop_under_randomized_start", "adding_sparse"]
    beats, drop, adds = found
    assert beats["significant"] and beats["difference"] > 0.25 and beats["finding"].startswith("supported")
    assert drop["significant"] and drop["difference"] > 0.1  # sparse drops 0.3, dense 0
    assert not adds["significant"] and "inconclusive" in adds["finding"]  # same rate: no effect
    with pytest.raises(ValueError, match="share no"):
        compare_methods(records, "sparse", "nope")


@pytest.mark.parametrize("k", [1, 2, 3, 6])
@pytest.mark.parametrize("n", [3, 24, 72])
def test_interval_contains_its_estimate_at_the_boundaries(k: int, n: int) -> None:
    # An expert solving everything (and a policy solving nothing): the bounds must not fall a
    # rounding error inside the estimate, or plotted error bars go negative.
    for value in (0.0, 1.0):
        mean, lo, hi = return_interval([value] * n, k)
        assert lo <= mean <= hi and 0.0 <= lo and hi <= 1.0 and hi > lo


# --- regimes where the former intervals under-covered (issue 28) -------------------------------


def test_t_distribution_matches_tables() -> None:
    assert float(t_ppf(0.975, 2)) == pytest.approx(4.302653, abs=1e-5)
    assert float(t_ppf(0.975, 10)) == pytest.approx(2.228139, abs=1e-5)
    assert float(t_ppf(0.8, 5)) == pytest.approx(0.919544, abs=1e-5)
    assert float(t_cdf(-2.228139, 10)) == pytest.approx(0.025, abs=1e-6)
    assert float(t_ppf(0.975, 1e6)) == pytest.approx(1.959964, abs=1e-4)


def test_return_interval_covers_chains_near_one() -> None:
    """6 chained sub-tasks at success 0.97, 10 episodes: at p̂ = 1 the former interval counted
    60 independent trials and covered 0.74; counting episodes there covers >= 0.93."""
    rng = np.random.default_rng(28)
    returns, truth = episode_returns(rng, 1000, 10, 6, 0.97, None)
    hits = [lo <= truth <= hi for lo, hi in (return_interval(row, 6)[1:] for row in returns)]
    assert np.mean(hits) >= 0.93, np.mean(hits)


def test_paired_difference_covers_with_seed_variance() -> None:
    """3 seeds with seed-to-seed variance, 96 tasks: the former two-way bootstrap covered 0.82."""
    rng = np.random.default_rng(28)
    a, b, truth = paired_grids(rng, 500, 3, 96, mean=0.5, kappa=10.0, seed_sd=0.15, delta=0.05, delta_sd=0.05)
    lo, hi = _two_way_interval(a - b)  # what paired_difference computes, for 500 grids at once
    assert np.mean((lo <= truth) & (truth <= hi)) >= 0.93, np.mean((lo <= truth) & (truth <= hi))


def test_one_seed_says_it_covers_tasks_only() -> None:
    rng = np.random.default_rng(1)
    result = paired_difference(rng.random((1, 30)) + 0.1, rng.random((1, 30)))
    assert result["covers"] == "tasks only (1 training seed)" and result["df"] == 29
    d = (rng.random((1, 30)) + 0.1) - rng.random((1, 30))
    lo, hi = paired_difference(d, np.zeros_like(d))["ci95"]
    half = float(t_ppf(0.975, 29)) * d.std(ddof=1) / np.sqrt(30)  # the paired t over tasks
    assert (lo, hi) == pytest.approx((d.mean() - half, d.mean() + half))


def test_deterministic_repeats_count_once() -> None:
    rows = [{"method": "iql", "mode": mode, "train_seed": 0, "task_id": "t0", "seed": e, "num_subtasks": 2,
             "return": 1.0} for mode in ("fixed", "randomized") for e in range(3)]
    rows += [{"method": "random", "mode": "fixed", "train_seed": None, "task_id": "t0", "seed": e,
              "num_subtasks": 2, "return": 0.5} for e in range(3)]
    kept = distinct_episodes(rows, deterministic_methods=["iql"])
    assert [(r["method"], r["mode"]) for r in kept].count(("iql", "fixed")) == 1
    assert next(r for r in kept if r["mode"] == "fixed" and r["method"] == "iql")["eval_seeds"] == 3
    assert len(kept) == 1 + 3 + 3  # randomized starts and the random policy are real repeats
    table = by_mode_method_subtasks(rows, deterministic_methods=["iql"])
    assert table["fixed"]["iql"]["2"]["n"] == 1 and table["randomized"]["iql"]["2"]["n"] == 3
    rows[1]["return"] = 0.5
    with pytest.raises(ValueError, match="not deterministic"):
        distinct_episodes(rows, deterministic_methods=["iql"])


# --- power ---------------------------------------------------------------------------------------


def test_mde_shrinks_as_one_over_root_n() -> None:
    components = {"seed": 0.002, "task": 0.01, "residual": 0.02}
    base = minimum_detectable_effect(components, 5, 24)
    # more tasks or seeds always lower it; the seed term does not shrink with tasks
    assert minimum_detectable_effect(components, 5, 96) < base and minimum_detectable_effect(components, 10, 24) < base
    no_seed = {"seed": 0.0, "task": 0.01, "residual": 0.02}
    ratio = minimum_detectable_effect(no_seed, 5, 96) / minimum_detectable_effect(no_seed, 5, 24)
    assert ratio == pytest.approx(0.5, abs=0.03)
    # 4× seeds: SE halves and df grows from 4 to 19, so a little better than half
    seeds_only = {"seed": 0.01, "task": 0.0, "residual": 0.0}
    ratio = minimum_detectable_effect(seeds_only, 20, 48) / minimum_detectable_effect(seeds_only, 5, 48)
    assert 0.35 <= ratio <= 0.5, ratio


def test_an_effect_of_one_mde_is_detected_four_times_in_five() -> None:
    rng = np.random.default_rng(80)
    seeds, tasks, sd = 5, 48, {"seed": 0.05, "task": 0.1, "residual": 0.15}
    mde = minimum_detectable_effect({k: v * v for k, v in sd.items()}, seeds, tasks)
    e = 1500
    d = (mde + rng.normal(0, sd["seed"], (e, seeds, 1)) + rng.normal(0, sd["task"], (e, 1, tasks))
         + rng.normal(0, sd["residual"], (e, seeds, tasks)))
    lo, _ = _two_way_interval(d)
    assert 0.75 <= np.mean(lo > 0) <= 0.86, np.mean(lo > 0)
    estimated = paired_difference(d[0], np.zeros_like(d[0]))
    assert estimated["mde80"] == pytest.approx(mde, rel=0.5)  # from the estimated variance components


def test_paper_effects_in_return_units() -> None:
    assert set(PAPER_EFFECTS) == {"adding_sparse", "over_other_vlm_rewards", "drop_under_randomized_start"}
    assert absolute_effect("adding_sparse", 0.5) == pytest.approx((0.07, 0.07))
    assert absolute_effect("over_other_vlm_rewards", 0.4) == pytest.approx((0.048, 0.86))


def test_two_episodes_with_a_design_effect_give_a_finite_interval() -> None:
    """n = 2 episodes whose sub-tasks count for more than 2 trials: the t quantile with 1 df
    (12.7) is past any normal quantile a float confidence can express; the interval must
    still come out, inside [0, 1] and around the mean (a ValueError on the first version)."""
    mean, lo, hi = return_interval([0.5, 0.75], 4)
    assert 0.0 <= lo < mean < hi <= 1.0


def test_accuracy_slope_matches_linregress_and_seed_t_interval() -> None:
    from scipy import stats as sps

    from rayrg.evaluation.stats import accuracy_slope

    rng = np.random.default_rng(7)
    acc = np.array([0.742, 0.862, 0.934, 1.0])
    seeds = np.repeat(np.arange(5), len(acc))
    x = np.tile(acc, 5)
    y = 0.2 + 0.5 * x + rng.normal(0, 0.1, 5)[seeds] + rng.normal(0, 0.03, len(x))
    got = accuracy_slope(x, y, seeds)
    ref = sps.linregress(x, y)
    assert got["slope"] == pytest.approx(ref.slope)
    assert got["intercept"] == pytest.approx(ref.intercept)
    assert got["ols_stderr"] == pytest.approx(ref.stderr)
    assert got["r"] == pytest.approx(ref.rvalue)
    per_seed = [sps.linregress(acc, y[seeds == s]).slope for s in range(5)]
    lo, hi = sps.t.interval(0.95, 4, loc=np.mean(per_seed), scale=sps.sem(per_seed))
    assert got["ci"] == pytest.approx((lo, hi), abs=1e-6)
    assert got["df"] == 4 and got["seeds"] == 5
    # One seed: the OLS interval (df = n - 2), and it says what it covers.
    one = accuracy_slope(acc, y[:4], [0] * 4)
    ref1 = sps.linregress(acc, y[:4])
    half = sps.t.ppf(0.975, 2) * ref1.stderr
    assert one["ci"] == pytest.approx((ref1.slope - half, ref1.slope + half), abs=1e-6)
    assert one["covers"].startswith("residuals around the line only (1 training seed")
    with pytest.raises(ValueError, match="two label accuracies"):
        accuracy_slope([0.9, 0.9], [0.1, 0.2], [0, 1])


def test_accuracy_slope_covers_when_seeds_differ_in_how_much_labels_matter() -> None:
    """The regime where counting a seed's points as independent runs fails (seed-specific
    sensitivity to label accuracy; benchmarks/bench_coverage.py runs every regime)."""
    from rayrg.evaluation.simulate import slope_points
    from rayrg.evaluation.stats import accuracy_slope, t_ppf

    acc, seeds, sims = (0.742, 0.862, 0.934, 1.0), 3, 600
    y, truth = slope_points(np.random.default_rng(11), sims, acc, seeds, slope=-0.1, seed_sd=0.05, slope_sd=0.5,
                            run_sd=0.03, curvature=0.3)
    x, s = np.tile(acc, seeds), np.repeat(np.arange(seeds), len(acc))
    t_pooled = float(t_ppf(0.975, len(x) - 2))  # the pooled OLS interval: every point independent
    ours = pooled = 0
    for i in range(sims):
        fit = accuracy_slope(x, y[i].ravel(), s)
        ours += fit["ci"][0] <= truth[i] <= fit["ci"][1]
        pooled += abs(fit["slope"] - truth[i]) <= t_pooled * fit["ols_stderr"]
    assert ours / sims >= 0.93, ours / sims
    assert pooled / sims < 0.88, pooled / sims  # the regime is one that a naive interval fails
