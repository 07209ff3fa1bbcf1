"""The one shaping module: potential-based shaping telescopes; γ mismatch refused."""

from __future__ import annotations

import numpy as np
import pytest

from rayrg.config import ConfigError
from rayrg.rewards.shaping import (
    GAMMA_KEY,
    centred,
    check_gamma,
    discounted_sum,
    potential_based,
    potential_from_rewards,
    progress_shaping,
    shaping_provenance,
)


@pytest.mark.parametrize("gamma", [1.0, 0.99, 0.9])
def test_shaped_rewards_telescope(gamma: float) -> None:
    rng = np.random.default_rng(0)
    phi = rng.uniform(0, 1, 12)
    final = 0.97
    shaped = progress_shaping(phi, gamma, final)
    # Σ_t γ^t (γ Φ_{t+1} − Φ_t) = γ^T Φ_T − Φ_0
    assert discounted_sum(shaped, gamma) == pytest.approx(gamma ** len(phi) * final - phi[0], abs=1e-5)


def test_last_transition_without_final_frame_reuses_last_progress_and_nan_stays_nan() -> None:
    shaped = progress_shaping(np.array([0.0, 0.5, np.nan, 1.0]), 0.5)
    assert shaped[0] == pytest.approx(0.25) and np.isnan(shaped[1]) and np.isnan(shaped[2])
    assert shaped[3] == pytest.approx(0.5 * 1.0 - 1.0)


def test_potential_based_adds_to_a_dense_reward_and_centred_removes_the_mean() -> None:
    r = np.array([1.0, 2.0, 3.0])
    phi = potential_from_rewards(r)
    assert phi.tolist() == pytest.approx([0.0, 1 / 6, 3 / 6])
    total = potential_based(r, phi, 1.0, final=1.0)
    assert total.sum() == pytest.approx(r.sum() + 1.0 - 0.0)
    assert centred(r).tolist() == pytest.approx([-1.0, 0.0, 1.0])
    assert centred(np.array([np.nan, 2.0]), baseline=None)[1] == 0.0


def test_check_gamma_refuses_another_discount_in_one_line() -> None:
    prov = {"reward_gvl": shaping_provenance(0.9, "progress_gvl"), "reward_rgvlm": {"method": "rgvlm"}}
    assert prov["reward_gvl"][GAMMA_KEY] == 0.9
    check_gamma(prov, "reward_gvl", 0.9)
    check_gamma(prov, "reward_rgvlm", 0.5)  # unshaped: any discount
    with pytest.raises(ConfigError) as err:
        check_gamma(prov, "reward_gvl", 0.99)
    assert "gamma=0.9" in str(err.value) and "0.99" in str(err.value) and "\n" not in str(err.value)

