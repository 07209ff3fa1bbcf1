"""BLIP-2 image–text matching rewards (the RG-VLM paper's BLIP-2 baseline).

Per frame, the Q-Former's image–text matching head scores the goal prompt against the
image; the reward is P(match) = softmax(itm_logits)[1]. ``score: itc`` uses the
contrastive score instead (cosine of the text with the best-matching query token).
Loaded with ``Blip2ForImageTextRetrieval`` (e.g. ``Salesforce/blip2-itm-vit-g``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rayrg.rewards.registry import LabelMethod
from rayrg.rewards.similarity.clip import pick_device, torch_dtype
from rayrg.rewards.similarity.config import Blip2Config


class Blip2Scorer:
    def __init__(self, model: str, device: str = "auto", dtype: str = "float32", score: str = "itm") -> None:
        from transformers import AutoProcessor, Blip2ForImageTextRetrieval

        self.device = pick_device(device)
        self.model = Blip2ForImageTextRetrieval.from_pretrained(
            model, dtype=torch_dtype(dtype, self.device)).to(self.device).eval()
        self.processor = AutoProcessor.from_pretrained(model)
        self.score = score
        self.num_parameters = int(sum(p.numel() for p in self.model.parameters()))

    def __call__(self, images: Sequence[np.ndarray], texts: Sequence[str]) -> dict[str, np.ndarray]:
        """One score per (image, text) pair."""
        import torch

        inputs = self.processor(images=list(images), text=list(texts), return_tensors="pt", padding=True)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            if self.score == "itm":
                logits = self.model(**inputs, use_image_text_matching_head=True).logits_per_image
                score = torch.softmax(logits.float(), dim=-1)[:, 1]
                return {"score": score.cpu().numpy().astype(np.float64), "cosine": np.full(len(texts), np.nan)}
            # ITC: [N images, N texts] cosines; each image's own text is on the diagonal.
            logits = self.model(**inputs, use_image_text_matching_head=False).logits_per_image
            cosine = torch.diagonal(logits.float()).cpu().numpy().astype(np.float64)
            return {"score": cosine, "cosine": cosine}


def label_blip2(config: Blip2Config, dataset: Path, out: Path, *, address: str | None = None) -> Path:
    from rayrg.rewards.similarity.stages import label_per_frame

    return label_per_frame(config, dataset, out, address=address)


BLIP2 = LabelMethod("blip2", Blip2Config, label_blip2)
