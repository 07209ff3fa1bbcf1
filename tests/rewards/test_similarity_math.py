"""Similarity-reward math against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rayrg.rewards.similarity import math as sim


def test_goal_probability_softmax_with_temperature() -> None:
    # cosines: goal 0.3, negatives 0.1 and 0.2
    sims = np.array([[0.3, 0.1, 0.2]])
    # T = 0.1 -> logits 3, 1, 2
    expected = math.exp(3) / (math.exp(3) + math.exp(1) + math.exp(2))
    assert sim.goal_probability(sims, 0.1)[0] == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.66524096, abs=1e-8)
    # T = 1 -> logits 0.3, 0.1, 0.2
    assert sim.goal_probability(sims, 1.0)[0] == pytest.approx(0.36716540, abs=1e-8)
    # lower temperature sharpens towards the best-matching text
    assert sim.goal_probability(sims, 0.01)[0] > 0.99
    # rows are independent; no negatives -> probability 1
    two = sim.goal_probability(np.array([[0.3, 0.1, 0.2], [0.1, 0.3, 0.2]]), 0.1)
    assert two[1] == pytest.approx(math.exp(1) / (math.exp(3) + math.exp(1) + math.exp(2)))
    assert sim.goal_probability(np.array([[0.42]]), 0.5)[0] == 1.0
    with pytest.raises(ValueError):
        sim.goal_probability(sims, 0.0)


def test_threshold_rewards() -> None:
    p = np.array([0.2, 0.5, 0.7, np.nan])
    out = sim.threshold_rewards(p, 0.5)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:3], [0.0, 1.0, 1.0])  # >= threshold is a success
    assert np.isnan(out[3])
    np.testing.assert_array_equal(sim.threshold_rewards(p[:3], 0.9), [0.0, 0.0, 0.0])


def test_vlmrm_projection_alpha_0_and_1() -> None:
    g, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    x = np.array([[0.6, 0.8]])
    # alpha 0: 1 - |x-g|^2/2 = 1 - (0.16 + 0.64)/2 = 0.6 = cos(x, g)
    assert sim.vlmrm_rewards(x, g, b, alpha=0.0)[0] == pytest.approx(0.6)
    # alpha 1: only the component along d = (g-b)/sqrt2: (x-g).d = -1.2/sqrt2 -> 1 - 0.72/2
    assert sim.vlmrm_rewards(x, g, b, alpha=1.0)[0] == pytest.approx(0.64)
    # alpha 0.5: 0.5*(-0.6, 0.6) + 0.5*(-0.4, 0.8) = (-0.5, 0.7) -> 1 - 0.74/2
    assert sim.vlmrm_rewards(x, g, b, alpha=0.5)[0] == pytest.approx(0.63)
    # unnormalised inputs are normalised; the goal itself scores 1 at any alpha
    assert sim.vlmrm_rewards(np.array([[3.0, 4.0]]), 2 * g, 5 * b, 0.0)[0] == pytest.approx(0.6)
    for alpha in (0.0, 0.3, 1.0):
        assert sim.vlmrm_rewards(g[None], g, b, alpha)[0] == pytest.approx(1.0)
    # a per-row goal
    goals = np.array([[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(sim.vlmrm_rewards(np.array([[0.6, 0.8], [0.6, 0.8]]), goals, b, 0.0), [0.6, 0.8])
    with pytest.raises(ValueError):
        sim.vlmrm_rewards(x, g, b, alpha=1.5)


def test_cosine_similarity() -> None:
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    b = np.array([[2.0, 0.0], [0.0, -3.0]])
    np.testing.assert_allclose(sim.cosine_similarity(a, b), [[1.0, 0.0], [1 / math.sqrt(2), -1 / math.sqrt(2)]])


def test_precision_recall_curve_with_ties_and_nan() -> None:
    scores = np.array([0.9, 0.8, 0.8, 0.3, np.nan])
    truth = np.array([1, 0, 1, 0, 1], dtype=bool)
    curve = sim.precision_recall_curve(scores, truth)
    np.testing.assert_allclose(curve["thresholds"], [0.9, 0.8, 0.3])
    np.testing.assert_allclose(curve["precision"], [1.0, 2 / 3, 0.5])
    np.testing.assert_allclose(curve["recall"], [0.5, 1.0, 1.0])  # the NaN-scored positive is left out
    assert sim.average_precision(scores, truth) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    summary = sim.pr_summary(scores, truth)
    assert (summary["scored"], summary["unscored"], summary["positives"]) == (4, 1, 2)
    assert summary["base_rate"] == 0.5


def test_average_precision_edge_cases() -> None:
    truth = np.array([0, 1, 0, 1], dtype=bool)
    assert sim.average_precision(np.array([0.1, 0.9, 0.2, 0.8]), truth) == pytest.approx(1.0)
    # worst ranking: positives last -> (0.5 * 1/3) + (0.5 * 2/4)
    assert sim.average_precision(np.array([0.9, 0.1, 0.8, 0.2]), truth) == pytest.approx(0.5 / 3 + 0.25)
    # a constant score: one point at the base rate
    assert sim.average_precision(np.zeros(4), truth) == pytest.approx(0.5)
    assert math.isnan(sim.average_precision(np.array([0.1, 0.2]), np.array([False, False])))
    with pytest.raises(ValueError):
        sim.precision_recall_curve(np.zeros(3), np.zeros(2, dtype=bool))
