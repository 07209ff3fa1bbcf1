"""``method: shape``: the centred and potential-based variants of a dense reward, as a label step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rayrg.config import ConfigError
from rayrg.data.access import Dataset, read_trajectories
from rayrg.data.schema import DatasetError
from rayrg.rewards.registry import load_label_config
from rayrg.rewards.shaped import potential_variant
from rayrg.rewards.shaping import GAMMA_KEY, check_gamma, discounted_sum


def _label(steps: list[dict], source: Path, root: Path) -> Path:
    for i, step in enumerate(steps):
        method, config = load_label_config(step)
        source = method.run(config, source, root / str(i))
    return source


@pytest.fixture
def simulated(make_toy_dataset, tmp_path: Path) -> Path:
    return _label([{"method": "simulated", "accuracy": 0.75, "seed": 2, "name": "acc750"}],
                  make_toy_dataset(), tmp_path / "sim")


def _episodes(table, column: str) -> dict[str, np.ndarray]:
    ids = np.asarray(table.column("episode_id").to_pylist())
    values = table.column(column).to_numpy(zero_copy_only=False)
    return {e: values[ids == e] for e in dict.fromkeys(ids.tolist())}


def test_centred_variant_has_zero_dataset_mean_and_keeps_the_ordering(simulated: Path, tmp_path: Path) -> None:
    out = _label([{"method": "shape", "column": "reward_simulated_acc750", "variant": "centred"}], simulated,
                 tmp_path / "c")
    table = read_trajectories(out)
    dense = table.column("reward_simulated_acc750").to_numpy()
    shaped = table.column("reward_simulated_acc750_centred").to_numpy()
    assert 0.2 < dense.mean() < 0.9  # the offset the variant removes is there to remove
    np.testing.assert_allclose(shaped, dense - dense.mean(), atol=1e-6)
    assert abs(shaped.mean()) < 1e-6
    np.testing.assert_allclose(table.column("reward_simulated_acc750_centred_sparse").to_numpy(),
                               shaped + table.column("success").to_numpy().astype(float)
                               * _last_steps(table), atol=1e-6)
    made = Dataset.open(out).provenance["reward_simulated_acc750_centred"]
    assert made["variant"] == "centred" and made["baseline"] == pytest.approx(dense.mean())
    assert made["source"]["simulated"] is True  # the source's provenance travels (still SIMULATED)
    check_gamma(out, "reward_simulated_acc750_centred", 0.5)  # not a potential: any learner's γ


def _last_steps(table) -> np.ndarray:
    ids = table.column("episode_id").to_pylist()
    return np.array([i + 1 == len(ids) or ids[i + 1] != e for i, e in enumerate(ids)], dtype=float)


def test_potential_variant_telescopes_per_episode_whatever_its_length(simulated: Path, tmp_path: Path) -> None:
    gamma = 0.9
    out = _label([{"method": "shape", "column": "reward_simulated_acc750", "variant": "potential",
                   "gamma": gamma}], simulated, tmp_path / "p")
    table = read_trajectories(out)
    dense = _episodes(table, "reward_simulated_acc750")
    shaped = _episodes(table, "reward_simulated_acc750_potential")
    lengths = {len(v) for v in dense.values()}
    assert len(lengths) > 1  # episodes of several lengths
    for episode, r in dense.items():
        # Φ runs from 0 to 1 over the episode (1: all its reward collected) when any label is good.
        phi_end = 1.0 if r.sum() > 0 else 0.0
        assert discounted_sum(shaped[episode], gamma) == pytest.approx(gamma ** len(r) * phi_end, abs=1e-5)
    # A raw dense reward pays for length; the shaped one's undiscounted sum stays ≤ 1.
    assert max(abs(v.sum()) for v in shaped.values()) <= 1.0 + 1e-5
    assert Dataset.open(out).provenance["reward_simulated_acc750_potential"][GAMMA_KEY] == gamma
    with pytest.raises(ConfigError, match="shaped with gamma=0.9"):
        check_gamma(out, "reward_simulated_acc750_potential_sparse", 0.97)


def test_a_nan_label_makes_its_episode_nan_never_a_made_up_zero() -> None:
    shaped = potential_variant(np.array([1.0, np.nan, 0.0]), 0.97)
    assert np.isnan(shaped).all()


def test_shaping_a_missing_or_already_shaped_column_is_one_line(simulated: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no column 'reward_rgvlm' to shape") as err:
        _label([{"method": "shape", "column": "reward_rgvlm", "variant": "centred"}], simulated, tmp_path / "m")
    assert "reward_simulated_acc750" in str(err.value) and "\n" not in str(err.value)
    shaped = _label([{"method": "shape", "column": "reward_simulated_acc750", "variant": "potential"}], simulated,
                    tmp_path / "p")
    with pytest.raises(DatasetError, match="already potential-shaped"):
        _label([{"method": "shape", "column": "reward_simulated_acc750_potential", "variant": "centred"}], shaped,
               tmp_path / "pp")


def test_an_experiments_shaping_follows_train_gamma_and_a_mismatch_is_refused_before_labelling() -> None:
    from rayrg.experiments.config import ExperimentConfig

    labels = [{"method": "sparse"}, {"method": "simulated", "accuracy": 0.742, "name": "acc742"},
              {"method": "shape", "column": "reward_simulated_acc742", "variant": "potential"}]
    methods = {"sparse": {"reward_column": "reward_sparse"},
               "potential": {"reward_column": "reward_simulated_acc742_potential_sparse"}}
    config = ExperimentConfig.from_dict({"labels": labels, "methods": methods, "train": {"gamma": 0.9}})
    assert config.labels[2].gamma == 0.9
    labels[2] = {**labels[2], "gamma": 0.99}
    with pytest.raises(ConfigError, match="methods.potential trains on .* with gamma 0.97, but labels.2. "
                                          r"\(shape\) shapes it with gamma 0.99"):
        ExperimentConfig.from_dict({"labels": labels, "methods": methods})
