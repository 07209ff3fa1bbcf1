"""One YAML describes a whole experiment matrix: data, labels, methods, IQL, seeds, evaluation.

Stage sections hold the stage's own config (validated by the stage's config class when the
stage runs, so a typo fails before any work starts — :meth:`ExperimentConfig.validate_stages`).
The defaults are the quickstart: a small BabyAI slice that runs on a 2-core laptop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from rayrg.config import ConfigError, StageConfig


class DataSection(StageConfig):
    """Where trajectories and evaluation tasks come from."""

    source: Literal["babyai", "alfred", "path"] = "babyai"
    generate: dict[str, Any] = Field(
        default_factory=lambda: {"episodes_per_count": 12, "eval_tasks_per_count": 3, "noise": 0.2},
        description="GenerateConfig fields (source=babyai).")
    alfred: dict[str, Any] = Field(default_factory=dict, description="ALFRED import fields (source=alfred).")
    trajectories: str | None = Field(None, description="An existing trajectory dataset (source=path).")
    eval_tasks: str | None = Field(None, description="Evaluation tasks JSON (source=path/alfred).")


class MethodSpec(StageConfig):
    """A policy-training variant: which reward column IQL learns from."""

    reward_column: str
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig overrides for this method.")
    label: str | None = Field(None, description="Name in the report (default: the method key).")
    note: str | None = Field(None, description="Shown in the report, e.g. 'pipeline check, untrained model'.")


class EvaluationSection(StageConfig):
    modes: list[Literal["fixed", "randomized"]] = Field(default_factory=lambda: ["fixed", "randomized"])
    seeds: list[int] = Field(default_factory=lambda: [0], description="Evaluation seeds per task.")
    settings: dict[str, Any] = Field(default_factory=dict, description="EvalConfig fields.")


class ExperimentConfig(StageConfig):
    """``rayrg run <config>``: every stage of the paper's pipeline, resumable."""

    name: str = "quickstart"
    out: str = Field("runs/quickstart", description="Output root; every stage writes under it.")
    data: DataSection = Field(default_factory=DataSection)
    windows: dict[str, Any] = Field(default_factory=dict, description="WindowConfig fields.")
    labels: list[dict[str, Any]] = Field(
        default_factory=lambda: [
            {"method": "sparse"},
            {"method": "simulated", "accuracy": 0.934, "name": "acc934"},
            {"method": "simulated", "accuracy": 0.742, "name": "acc742"},
            {"method": "rgvlm", "auto_backend": True},
        ],
        description="Label configs applied in order onto one labelled dataset (each has 'method').")
    methods: dict[str, MethodSpec] = Field(
        default_factory=lambda: {
            "sparse": MethodSpec(reward_column="reward_sparse", label="sparse"),
            "simulated-93.4%+sparse": MethodSpec(
                reward_column="reward_simulated_acc934_sparse", label="simulated 93.4% + sparse",
                note="SIMULATED labels: ground truth corrupted to 93.4% accuracy (Gemini 1.5 Pro, Table I)"),
            "simulated-74.2%+sparse": MethodSpec(
                reward_column="reward_simulated_acc742_sparse", label="simulated 74.2% + sparse",
                note="SIMULATED labels: ground truth corrupted to 74.2% accuracy (Gemini 1.5 Flash, Table I)"),
            "rgvlm": MethodSpec(reward_column="reward_rgvlm", label="RG-VLM"),
            "rgvlm+sparse": MethodSpec(reward_column="reward_rgvlm_sparse", label="RG-VLM + sparse"),
        })
    train: dict[str, Any] = Field(
        default_factory=lambda: {"num_steps": 1000, "batch_size": 32, "lr": 3e-4, "num_workers": 1,
                                 "torch_threads": 2, "checkpoint_every": 500, "report_every": 100},
                                  description="TrainConfig fields shared by every method.")
    seeds: list[int] = Field(default_factory=lambda: [0], description="Training seeds (paper: 5).")
    evaluation: EvaluationSection = Field(default_factory=lambda: EvaluationSection(
        settings={"num_actors": 2, "envs_per_actor": 6}))
    report: dict[str, Any] = Field(default_factory=dict, description="Report options.")

    @field_validator("labels")
    @classmethod
    def _labels_have_methods(cls, labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, label in enumerate(labels):
            if "method" not in label:
                raise ValueError(f"labels[{i}] has no 'method'")
        return labels

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    def with_out(self, out: str | Path | None) -> ExperimentConfig:
        return self if out is None else self.model_copy(update={"out": str(out)})

    def validate_stages(self) -> None:
        """Build every stage's typed config now, so errors surface before work starts."""
        from rayrg.rewards.registry import load_label_config
        from rayrg.windows.build import WindowConfig

        WindowConfig.from_dict(self.windows, source=f"{self.name}: windows")
        for i, label in enumerate(self.labels):
            if label.get("auto_backend"):
                continue  # resolved at run time from the environment (see runner)
            load_label_config(label, source=f"{self.name}: labels[{i}]")
        if self.data.source == "babyai":
            from rayrg.data.generate import GenerateConfig

            GenerateConfig.from_dict(self.data.generate, source=f"{self.name}: data.generate")
        elif self.data.source == "path" and not self.data.trajectories:
            raise ConfigError(f"{self.name}: data.source=path needs data.trajectories")
        if not self.methods:
            raise ConfigError(f"{self.name}: no methods to train")
        from rayrg.evaluation.config import EvalConfig
        from rayrg.rl.config import TrainConfig

        for name, spec in self.methods.items():
            TrainConfig.from_dict({**self.train, **spec.train, "reward_column": spec.reward_column},
                                  source=f"{self.name}: train ({name})")
        EvalConfig.from_dict({**self.evaluation.settings, "modes": self.evaluation.modes,
                              "seeds": self.evaluation.seeds}, source=f"{self.name}: evaluation")
