"""Sparse rewards, simulated labels, fusion and the join onto a dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from rayrg.data.access import read_trajectories
from rayrg.data.schema import DatasetError, DatasetMetadata
from rayrg.rewards.base import fuse_rewards, sparse_rewards, write_labelled_dataset
from rayrg.rewards.registry import load_label_config
from rayrg.rewards.simple import simulate_labels
from rayrg.rewards.truth import good_actions, subtask_advanced


def test_sparse_is_one_on_last_step_of_successes_only() -> None:
    ep = pa.array(["a", "a", "a", "b", "b", "c"])
    success = pa.array([True, True, True, False, False, True])
    assert sparse_rewards(ep, success).tolist() == [0, 0, 1, 0, 0, 1]


def test_subtask_advanced_resets_per_episode() -> None:
    ep = pa.array(["a", "a", "a", "b", "b"])
    done = pa.array([0, 1, 1, 1, 2], pa.int32())
    # episode b starts with 1 completed at its first step: that step advanced a sub-task
    assert subtask_advanced(ep, done).tolist() == [False, True, False, True, True]


def test_simulated_accuracy_is_as_configured() -> None:
    truth = np.random.default_rng(1).random(20000) < 0.6
    for accuracy in (0.934, 0.742, 1.0):
        labels = simulate_labels(truth, accuracy, seed=3)
        assert abs((labels.astype(bool) == truth).mean() - accuracy) < 0.01
    assert (simulate_labels(truth, 0.8, 5) == simulate_labels(truth, 0.8, 5)).all()


def test_fuse_weights_and_missing_column() -> None:
    cols = {"dense": np.array([0.2, 0.5], np.float32), "sparse": np.array([0.0, 1.0], np.float32)}
    assert fuse_rewards(cols, {"dense": 1.0, "sparse": 2.0}).tolist() == pytest.approx([0.2, 2.5])
    with pytest.raises(DatasetError, match="needs reward columns"):
        fuse_rewards(cols, {"rgvlm": 1.0})


def test_label_methods_chain_into_one_labelled_dataset(make_toy_dataset, tmp_path: Path) -> None:
    source = make_toy_dataset()
    method, config = load_label_config({"method": "sparse"})
    first = method.run(config, source, tmp_path / "a")
    method, config = load_label_config({"method": "simulated", "accuracy": 0.9, "seed": 1})
    second = method.run(config, first, tmp_path / "b")
    table = read_trajectories(second)
    assert {"reward_sparse", "reward_simulated_acc900", "reward_simulated_acc900_sparse"} <= set(table.column_names)
    dense = table.column("reward_simulated_acc900").to_numpy()
    fused = table.column("reward_simulated_acc900_sparse").to_numpy()
    np.testing.assert_allclose(fused, dense + table.column("reward_sparse").to_numpy())
    labels = DatasetMetadata.read(second).extra["labels"]
    assert labels["reward_simulated_acc900"]["simulated"] is True
    assert labels["reward_sparse"]["method"] == "sparse"
    truth = good_actions(table)
    assert ((dense > 0.5) == truth).mean() > 0.6


def test_join_rejects_bad_tables_and_fills_missing_with_nan(make_toy_dataset, tmp_path: Path) -> None:
    source = make_toy_dataset()
    with pytest.raises(DatasetError, match="duplicate"):
        write_labelled_dataset(source, pa.table({"episode_id": ["toy-0-0"] * 2, "step": [0, 0],
                                                 "reward_x": [1.0, 1.0]}), tmp_path / "x")
    with pytest.raises(DatasetError, match="must be named reward_"):
        write_labelled_dataset(source, pa.table({"episode_id": ["toy-0-0"], "step": [0], "x": [1.0]}), tmp_path / "y")
    out = write_labelled_dataset(source, pa.table({"episode_id": ["toy-0-0"], "step": [1], "reward_x": [0.5]}),
                                 tmp_path / "z")
    values = read_trajectories(out).column("reward_x").to_numpy()
    assert np.nansum(values) == 0.5 and np.isnan(values).sum() == len(values) - 1


def test_unknown_method_is_a_clear_error() -> None:
    from rayrg.config import ConfigError

    with pytest.raises(ConfigError, match="unknown label method 'gpt'"):
        load_label_config({"method": "gpt"})
    with pytest.raises(ConfigError, match="needs a 'method' key"):
        load_label_config({})
