"""BLIP-2 image–text matching rewards (the RG-VLM paper's BLIP-2 baseline).

Per frame, the Q-Former's image–text matching head scores the goal prompt against the
image; the reward is P(match) = softmax(itm_logits)[1]. ``score: itc`` uses the
contrastive score instead (cosine of the text with the best-matching query token).
Loaded with ``Blip2ForImageTextRetrieval`` (e.g. ``Salesforce/blip2-itm-vit-g``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field

from rayrg.rewards.similarity._shared import pick_device, torch_dtype
from rayrg.rewards.similarity.config import PerFrameConfig
from rayrg.rewards.similarity.method import FrameMethod


class Blip2Config(PerFrameConfig):
    """BLIP-2 image–text matching: P(match) of each frame with the goal prompt."""

    method: Literal["blip2"] = "blip2"
    score: Literal["itm", "itc"] = Field(
        "itm", description="itm: matching-head probability; itc: query–text cosine (max over queries).")
    batch_size: int = Field(16, ge=1)


class Blip2Scorer:
    def __init__(self, model: str, device: str = "auto", dtype: str = "float32", score: str = "itm") -> None:
        from transformers import AutoProcessor, Blip2ForImageTextRetrieval

        self.device = pick_device(device)
        self.model = Blip2ForImageTextRetrieval.from_pretrained(
            model, dtype=torch_dtype(dtype, self.device)).to(self.device).eval()
        self.processor = AutoProcessor.from_pretrained(model)
        self.score = score
        self.num_parameters = int(sum(p.numel() for p in self.model.parameters()))

    def __call__(self, images: Sequence[np.ndarray], texts: Sequence[str],
                 score: str | None = None) -> dict[str, np.ndarray]:
        """One score per (image, text) pair; ``score`` (itm/itc) overrides the constructor's."""
        import torch

        score = score or self.score
        inputs = self.processor(images=list(images), text=list(texts), return_tensors="pt", padding=True)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            if score == "itm":
                logits = self.model(**inputs, use_image_text_matching_head=True).logits_per_image
                score = torch.softmax(logits.float(), dim=-1)[:, 1]
                return {"score": score.cpu().numpy().astype(np.float64), "cosine": np.full(len(texts), np.nan)}
            # ITC: [N images, N texts] cosines; each image's own text is on the diagonal.
            logits = self.model(**inputs, use_image_text_matching_head=False).logits_per_image
            cosine = torch.diagonal(logits.float()).cpu().numpy().astype(np.float64)
            return {"score": cosine, "cosine": cosine}


class Blip2Method(FrameMethod):
    def load(self, config: Blip2Config) -> Blip2Scorer:
        return Blip2Scorer(config.model, config.device, config.dtype, config.score)

    def score_frames(self, model: Blip2Scorer, config: Blip2Config, images: list[np.ndarray],
                     instructions: list[str], negatives: dict[str, list[str]],
                     cache: dict[str, Any]) -> dict[str, np.ndarray]:
        # The variant's own score type: variants of one checkpoint share the loaded model.
        return model(images, [config.prompt(i) for i in instructions], score=config.score)

    def provenance(self, config: Blip2Config, scored: Any, example: str) -> dict[str, Any]:
        return {**super().provenance(config, scored, example), "score": config.score}

    def value_of(self, config: Blip2Config) -> str:
        return f"BLIP-2 {config.score}"


BLIP2 = Blip2Method("blip2", Blip2Config)
