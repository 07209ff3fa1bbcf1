"""VLM-RMs (Rocamonde et al.): CLIP cosine with a goal–baseline projection of strength ``alpha``.

Same encoder as CLIP-Baumli (:class:`~rayrg.rewards.similarity._shared.ClipEncoder`);
the reward is :func:`rayrg.rewards.similarity.math.vlmrm_rewards` of the frame, the goal
prompt and the baseline prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field

from rayrg.rewards.similarity import math as sim
from rayrg.rewards.similarity._shared import ClipEncoder, image_embeddings
from rayrg.rewards.similarity.config import PerFrameConfig
from rayrg.rewards.similarity.method import FrameMethod


class VLMRMConfig(PerFrameConfig):
    """VLM-RMs: CLIP cosine with goal–baseline projection of strength ``alpha``."""

    method: Literal["vlmrm"] = "vlmrm"
    baseline: str = Field("a grid world seen from above",
                          description="Baseline prompt b (the environment without the goal).")
    alpha: float = Field(0.5, ge=0, le=1, description="0: plain cosine with the goal; 1: only along g - b.")


def vlmrm_scores(encoder: ClipEncoder, image_embeddings: np.ndarray, instructions: Sequence[str],
                 config: VLMRMConfig) -> dict[str, np.ndarray]:
    goals = encoder.encode_texts([config.prompt(i) for i in instructions])
    baseline = encoder.encode_texts([config.baseline])[0]
    return {"score": sim.vlmrm_rewards(image_embeddings, goals, baseline, config.alpha),
            "cosine": np.sum(image_embeddings * goals, axis=-1)}


class VLMRMMethod(FrameMethod):
    value = "VLM-RMs goal-baseline reward"

    def load(self, config: VLMRMConfig) -> ClipEncoder:
        return ClipEncoder(config.model, config.device, config.dtype)

    def score_frames(self, model: ClipEncoder, config: VLMRMConfig, images: list[np.ndarray],
                     instructions: list[str], negatives: dict[str, list[str]],
                     cache: dict[str, Any]) -> dict[str, np.ndarray]:
        return vlmrm_scores(model, image_embeddings(model, images, cache, config.model), instructions, config)

    def provenance(self, config: VLMRMConfig, scored: Any, example: str) -> dict[str, Any]:
        return {**super().provenance(config, scored, example), "alpha": config.alpha, "baseline": config.baseline}


VLMRM = VLMRMMethod("vlmrm", VLMRMConfig)
