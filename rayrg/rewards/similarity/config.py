"""Config fields every similarity method shares; each method's own config is in its module.

A method's config subclasses :class:`SimilarityConfig` (per-episode methods) or
:class:`PerFrameConfig` (per-frame methods) and adds ``method: Literal["<name>"]`` and its
own fields. Every model is a hub id or a local directory (``save_pretrained`` layout)
loaded with ``from_pretrained``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from rayrg.config import StageConfig
from rayrg.rewards.base import reward_column

DEFAULT_TEMPLATE = "{instruction}"


class NegativesConfig(StageConfig):
    """Negative descriptions for the softmax (Baumli: the environment's other goals)."""

    source: Literal["config", "dataset", "babyai", "dataset+babyai"] = Field(
        "dataset+babyai",
        description="config: only `texts`; dataset: the dataset's other instructions; "
                    "babyai: generated single-object BabyAI goals (verb × color × object); "
                    "`texts` are always added.")
    texts: list[str] = Field(default_factory=list, description="Extra negative texts (template applied).")
    max_negatives: int | None = Field(16, ge=1, description="Cap per goal (seeded sample); None: all.")
    seed: int = Field(0, description="Seed of the per-goal sample of negatives.")


class SimilarityConfig(StageConfig):
    model: str = Field(..., description="Hub id or local checkpoint directory.")
    template: str = Field(DEFAULT_TEMPLATE, description="Goal prompt; '{instruction}' is replaced.")
    name: str | None = Field(None, description="Column variant: reward_<name>; default the method name.")
    batch_size: int = Field(32, ge=1, description="Frames per batch of inference.")
    max_actors: int = Field(2, ge=1, description="Autoscaling actor pool: 1..max_actors.")
    num_cpus: float = Field(0.5, gt=0, description="CPUs per actor (fractional: whole CPUs can hang 2-CPU pools).")
    num_gpus: float | None = Field(None, ge=0, description="GPUs per actor; None: 1 when the cluster has GPUs, else 0.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="Model dtype (GPU: half types).")
    max_episodes: int | None = Field(None, ge=1, description="Label only the first N episodes (others NaN).")

    @field_validator("template")
    @classmethod
    def _has_slot(cls, template: str) -> str:
        if "{instruction}" not in template:
            raise ValueError("template must contain '{instruction}'")
        try:
            template.format(instruction="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"template may only use the slot '{{instruction}}': {exc!r}") from exc
        return template

    @property
    def variant(self) -> str:
        return self.name or self.method  # type: ignore[attr-defined]

    @property
    def column(self) -> str:
        return reward_column(self.variant)

    def prompt(self, instruction: str) -> str:
        return self.template.format(instruction=instruction)


class PerFrameConfig(SimilarityConfig):
    observation: Literal["next", "current"] = Field(
        "next", description="Score the observation after the action (next: the state the action "
                            "reached, so the last transition sees the achieved goal) or before it.")
