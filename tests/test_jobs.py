"""Every file in jobs/ loads through the typed config of the command that reads it; a job file
no test types is an error (add it to JOBS, or delete it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from rayrg.config import ConfigError

JOBS_DIR = Path(__file__).resolve().parents[1] / "jobs"


def _experiment(path: Path) -> Any:  # rayrg run <file>, rayrg quickstart
    from rayrg.experiments.config import ExperimentConfig

    return ExperimentConfig.from_yaml(path)


def _train(path: Path) -> Any:  # rayrg train --config <file>
    from rayrg.rl.config import TrainConfig

    return TrainConfig.from_yaml(path)


def _sweep(path: Path) -> Any:  # rayrg tune --config <file>
    from rayrg.experiments.sweep import SweepConfig

    return SweepConfig.from_yaml(path)


def _eval(path: Path) -> Any:  # rayrg evaluate --config <file>
    from rayrg.evaluation.config import EvalConfig

    return EvalConfig.from_yaml(path)


def _label(path: Path) -> Any:  # rayrg label --config <file>
    from rayrg.rewards.registry import load_label_config

    return load_label_config(yaml.safe_load(path.read_text()), source=str(path))[1]


def _runtime_env(path: Path) -> Any:  # ray job submit --runtime-env <file>
    from ray.runtime_env import RuntimeEnv

    return RuntimeEnv(**yaml.safe_load(path.read_text()))


JOBS: dict[str, Callable[[Path], Any]] = {
    "quickstart.yaml": _experiment,
    "babyai_matrix.yaml": _experiment,
    "reproduce_babyai.yaml": _experiment,
    "reproduce_babyai_skills.yaml": _experiment,
    "reproduce_babyai_full.yaml": _experiment,
    "alfred_gemini.yaml": _experiment,
    "alfred_qwen72b.yaml": _experiment,
    "iql_babyai_full.yaml": _train,
    "iql_demo.yaml": _train,
    "tune_babyai_full.yaml": _sweep,
    "tune_demo.yaml": _sweep,
    "eval_babyai.yaml": _eval,
    "runtime_env.yaml": _runtime_env,
    **{p.name: _label for p in JOBS_DIR.glob("label_*.yaml")},
}


def test_every_job_file_has_a_type() -> None:
    untyped = sorted({p.name for p in JOBS_DIR.glob("*.y*ml")} - set(JOBS))
    assert not untyped, f"jobs/ files no test types (add them to JOBS or delete them): {untyped}"


@pytest.mark.parametrize("name", sorted(JOBS))
def test_job_loads_through_its_typed_config(name: str) -> None:
    path = JOBS_DIR / name
    assert path.exists(), f"JOBS names {name}, which is not in jobs/"
    text = path.read_text()
    assert "DRAFT" not in text and "FACTS" not in text, f"{name}: draft marker or outside citation"
    config = JOBS[name](path)
    assert config is not None


def test_a_typo_in_a_job_file_is_refused(tmp_path: Path) -> None:
    """The loaders above are strict: a misspelt key fails with the file and the key named."""
    raw = yaml.safe_load((JOBS_DIR / "alfred_gemini.yaml").read_text())
    raw["train"]["expectiles"] = 0.8  # TrainConfig has expectile; SweepConfig has expectiles
    bad = tmp_path / "alfred_bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"alfred_bad\.yaml.*\n.*train\.expectiles"):
        _experiment(bad)
