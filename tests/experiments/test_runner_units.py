"""The typed experiment config (no Ray): validated once, on load."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrg.config import ConfigError
from rayrg.experiments.config import ExperimentConfig

REPO = Path(__file__).resolve().parents[2]


def test_quickstart_yaml_is_the_embedded_default() -> None:
    assert ExperimentConfig.from_yaml(REPO / "jobs" / "quickstart.yaml") == ExperimentConfig()


def test_every_job_config_validates() -> None:
    for path in sorted((REPO / "jobs").glob("*.yaml")):
        text = path.read_text()
        if "name:" not in text or "labels:" not in text:
            continue  # not an experiment config (stage configs, runtime env)
        ExperimentConfig.from_yaml(path)


def test_sections_are_the_stages_own_types() -> None:
    from rayrg.data.generate import GenerateConfig
    from rayrg.evaluation.config import EvalConfig
    from rayrg.rewards.simple import SimulatedConfig
    from rayrg.rl.config import TrainConfig

    config = ExperimentConfig.from_dict({
        "labels": [{"method": "simulated", "accuracy": 0.9}],
        "methods": {"a": {"reward_column": "reward_simulated_acc900", "train": {"lr": 0.01}}},
        "train": {"num_steps": 7, "lr": 0.001}})
    assert isinstance(config.data.generate, GenerateConfig) and isinstance(config.evaluation, EvalConfig)
    assert isinstance(config.labels[0], SimulatedConfig) and isinstance(config.train, TrainConfig)
    resolved = config.train_config("a", seed=3)
    assert (resolved.num_steps, resolved.lr, resolved.seed, resolved.reward_column) == (
        7, 0.01, 3, "reward_simulated_acc900")


def test_bad_experiment_configs_fail_on_load() -> None:
    with pytest.raises(ConfigError, match="has no 'method'"):
        ExperimentConfig.from_dict({"labels": [{"accuracy": 0.9}]})
    with pytest.raises(ConfigError, match="unknown label method"):
        ExperimentConfig.from_dict({"labels": [{"method": "nope"}]})
    with pytest.raises(ConfigError, match="noise"):
        ExperimentConfig.from_dict({"data": {"generate": {"noise": 3}}})
    with pytest.raises(ConfigError, match="methods.a.train"):
        ExperimentConfig.from_dict({"methods": {"a": {"reward_column": "reward_x", "train": {"lr": -1}}}})
    with pytest.raises(ConfigError, match=r"needs data.input \(what to import\) or data.alfred"):
        ExperimentConfig.from_dict({"data": {"source": "alfred"}})
    with pytest.raises(ConfigError, match="trian: Extra inputs"):
        ExperimentConfig.from_dict({"trian": {}})


def test_a_methods_report_name_is_display_name_and_label_is_its_older_spelling() -> None:
    new = ExperimentConfig.from_dict({"methods": {"s": {"reward_column": "reward_sparse", "display_name": "S"}}})
    old = ExperimentConfig.from_dict({"methods": {"s": {"reward_column": "reward_sparse", "label": "S"}}})
    assert new == old and new.display_name("s") == "S"
    with pytest.raises(ConfigError, match="not both"):
        ExperimentConfig.from_dict({"methods": {"s": {"reward_column": "r", "label": "S", "display_name": "T"}}})
