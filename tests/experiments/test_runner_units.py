"""Experiment config and stage markers (no Ray): the resume/skip machinery of `rayrg run`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rayrg.config import ConfigError
from rayrg.experiments.config import ExperimentConfig
from rayrg.experiments.runner import MARKER, run_stage

REPO = Path(__file__).resolve().parents[2]


def test_run_stage_skips_when_inputs_match_and_reruns_when_they_change(tmp_path: Path) -> None:
    calls = []
    run_stage("s", tmp_path, {"a": 1}, lambda: calls.append(1) or "first")
    run_stage("s", tmp_path, {"a": 1}, lambda: calls.append(2) or "second")
    assert calls == [1]
    assert json.loads((tmp_path / MARKER).read_text())["result"] == "first"
    run_stage("s", tmp_path, {"a": 2}, lambda: calls.append(3) or "third")
    assert calls == [1, 3]


def test_failed_stage_leaves_no_marker(tmp_path: Path) -> None:
    def boom() -> None:
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        run_stage("s", tmp_path, {}, boom)
    assert not (tmp_path / MARKER).exists()


def test_quickstart_yaml_is_the_embedded_default() -> None:
    assert ExperimentConfig.from_yaml(REPO / "jobs" / "quickstart.yaml") == ExperimentConfig()


def test_every_job_config_validates() -> None:
    for path in sorted((REPO / "jobs").glob("*.yaml")):
        text = path.read_text()
        if "name:" not in text or "labels:" not in text:
            continue  # not an experiment config (stage configs, runtime env)
        ExperimentConfig.from_yaml(path).validate_stages()


def test_bad_experiment_configs_fail_before_any_work() -> None:
    with pytest.raises(ConfigError, match="has no 'method'"):
        ExperimentConfig.from_dict({"labels": [{"accuracy": 0.9}]})
    with pytest.raises(ConfigError, match="unknown label method"):
        ExperimentConfig.from_dict({"labels": [{"method": "nope"}]}).validate_stages()
    with pytest.raises(ConfigError, match="noise"):
        ExperimentConfig.from_dict({"data": {"generate": {"noise": 3}}}).validate_stages()
    with pytest.raises(ConfigError, match="extra"):
        ExperimentConfig.from_dict({"trian": {}})
