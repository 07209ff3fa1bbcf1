"""The bench's metrics against independent implementations (scipy, scikit-learn) and known answers."""

from __future__ import annotations

import numpy as np
import pytest

from rayrg.bench import metrics as M

scipy_stats = pytest.importorskip("scipy.stats")
sk_metrics = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", range(5))
def test_spearman_and_tau_match_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, 40).astype(float)  # many ties
    y = x + rng.normal(0, 2, 40).round()
    assert M.spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic, abs=1e-12)
    assert M.kendall_tau_b(x, y) == pytest.approx(scipy_stats.kendalltau(x, y).statistic, abs=1e-12)
    # A bootstrap weight vector is the same as repeating the episodes.
    w = rng.integers(0, 3, 40)
    rep = np.repeat(np.arange(40), w)
    assert M.kendall_tau_b(x, y, w) == pytest.approx(scipy_stats.kendalltau(x[rep], y[rep]).statistic, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(60) < 0.4
    scores = (labels + rng.normal(0, 1, 60)).round(1)  # ties across classes
    assert M.auroc(scores, labels) == pytest.approx(sk_metrics.roc_auc_score(labels, scores), abs=1e-12)
    assert M.auroc_metric(scores, labels, resamples=0)["value"] == pytest.approx(
        sk_metrics.roc_auc_score(labels, scores), abs=1e-12)


def test_voc_known_answers() -> None:
    t = np.arange(30.0)
    assert M.episode_voc(t) == (1.0, False)
    assert M.episode_voc(-t) == (-1.0, False)
    assert M.episode_voc(np.full(30, 0.5)) == (0.0, True)  # constant: no order, counts 0
    # Per-episode VOC equals scipy's Spearman of time vs value.
    v = np.random.default_rng(1).random(30)
    assert M.episode_voc(v)[0] == pytest.approx(scipy_stats.spearmanr(t, v).statistic, abs=1e-12)


def test_noise_interval_contains_zero_and_perfect_is_one() -> None:
    rng = np.random.default_rng(3)
    noise = np.array([M.episode_voc(rng.random(25))[0] for _ in range(200)])
    m = M.mean_metric(noise, resamples=500, seed=0)
    assert m["n"] == 200 and m["ci95"][0] < 0 < m["ci95"][1]
    perfect = M.mean_metric(np.ones(50), resamples=200)
    assert perfect["value"] == 1.0 and perfect["ci95"] == [1.0, 1.0]


def test_f1_threshold_is_chosen_on_validation_only() -> None:
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.6, 0.4])
    labels = np.array([True, True, False, False, True, False])
    val = np.array([True, True, True, True, False, False])
    r = M.f1_metric(scores, labels, val, resamples=0)
    # The validation episodes separate anywhere in (0.2, 0.8): the midpoint 0.5 is chosen, so
    # the scored episodes (0.6 positive, 0.4 negative) get F1 1.
    assert r["threshold"] == pytest.approx(0.5) and r["value"] == 1.0 and r["n"] == 2
    assert r["validation_n"] == 4


def test_confusion_metric_pools_episodes() -> None:
    conf = np.array([[3, 1, 0, 2], [1, 0, 1, 4]])
    r = M.confusion_metric(conf, resamples=50)
    assert r["accuracy"]["value"] == pytest.approx(10 / 12)
    assert r["precision"]["value"] == pytest.approx(4 / 5)
    assert r["recall"]["value"] == pytest.approx(4 / 5)
    assert r["accuracy"]["n"] == 2
