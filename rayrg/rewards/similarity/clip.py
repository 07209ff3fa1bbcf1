"""CLIP rewards of Baumli et al.: softmax over the goal and its negatives, then a threshold.

Each observation is embedded with the image tower and the prompts with the text tower of
one CLIP-style model (:class:`~rayrg.rewards.similarity._shared.ClipEncoder`);
p(goal) is the softmax of the cosines with a temperature
(:func:`rayrg.rewards.similarity.math.goal_probability`). Writes ``reward_<name>``
(binary: p(goal) >= threshold) and ``reward_<name>_prob`` (the probability).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field

from rayrg.rewards.base import reward_column
from rayrg.rewards.declarations import OutputColumn
from rayrg.rewards.similarity import math as sim
from rayrg.rewards.similarity._shared import ClipEncoder, image_embeddings
from rayrg.rewards.similarity.config import NegativesConfig, PerFrameConfig
from rayrg.rewards.similarity.method import Columns, FrameMethod, Provenances

__all__ = ["CLIP", "ClipConfig", "ClipEncoder", "ClipMethod", "clip_scores"]


class ClipConfig(PerFrameConfig):
    """Baumli et al.: softmax over goal + negatives with a temperature, then a threshold.

    Writes ``reward_<name>`` (binary) and ``reward_<name>_prob`` (the probability).
    """

    method: Literal["clip"] = "clip"
    temperature: float = Field(0.01, gt=0, description="Softmax temperature on cosine similarities "
                                                       "(CLIP's trained logit scale 100 = 0.01).")
    threshold: float = Field(0.5, ge=0, le=1, description="Reward 1 where p(goal) >= threshold.")
    negatives: NegativesConfig = Field(default_factory=NegativesConfig)

    @property
    def prob_column(self) -> str:
        return reward_column(f"{self.variant}_prob")


def clip_scores(encoder: ClipEncoder, image_embeddings: np.ndarray, instructions: Sequence[str],
                config: ClipConfig, negatives: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """p(goal) against the goal's negatives, and cos(frame, goal), per frame."""
    prob = np.full(len(instructions), np.nan)
    cosine = np.full(len(instructions), np.nan)
    instructions = np.asarray(instructions, dtype=object)
    for instruction in dict.fromkeys(instructions):
        rows = np.flatnonzero(instructions == instruction)
        texts = [config.prompt(instruction)] + [config.prompt(n) for n in negatives[instruction]]
        similarities = image_embeddings[rows] @ encoder.encode_texts(texts).T
        prob[rows] = sim.goal_probability(similarities, config.temperature)
        cosine[rows] = similarities[:, 0]
    return {"score": prob, "cosine": cosine}


class ClipMethod(FrameMethod):
    def load(self, config: ClipConfig) -> ClipEncoder:
        return ClipEncoder(config.model, config.device, config.dtype)

    def negatives(self, config: ClipConfig, instructions: Sequence[str]) -> dict[str, list[str]]:
        from rayrg.rewards.similarity.negatives import build_negatives

        return build_negatives(instructions, config.negatives)

    def score_frames(self, model: ClipEncoder, config: ClipConfig, images: list[np.ndarray],
                     instructions: list[str], negatives: dict[str, list[str]],
                     cache: dict[str, Any]) -> dict[str, np.ndarray]:
        embeddings = image_embeddings(model, images, cache, config.model)
        return clip_scores(model, embeddings, instructions, config, negatives)

    def provenance(self, config: ClipConfig, scored: Any, example: str) -> dict[str, Any]:
        return {**super().provenance(config, scored, example),
                "temperature": config.temperature, "threshold": config.threshold,
                "negatives": {"source": config.negatives.source, "max_negatives": config.negatives.max_negatives,
                              "per_goal_mean": float(np.mean([len(v) for v in scored.negatives.values()])),
                              "example": scored.negatives.get(example, [])[:8]}}

    def output_columns(self, config: ClipConfig) -> list[OutputColumn]:
        return [OutputColumn(config.column, "reward", f"1[p(goal) >= {config.threshold}]"),
                OutputColumn(config.prob_column, "reward", "p(goal) over goal + negatives")]

    def columns(self, config: ClipConfig, scored: Any, prov: dict[str, Any]) -> tuple[Columns, Provenances]:
        binary = sim.threshold_rewards(scored.score, config.threshold)
        return ({config.column: binary, config.prob_column: scored.score},
                {config.column: {**prov, "value": f"1[p(goal) >= {config.threshold}]"},
                 config.prob_column: {**prov, "value": "p(goal) over goal + negatives"}})


CLIP = ClipMethod("clip", ClipConfig)
