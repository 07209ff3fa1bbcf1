"""CLIP-family rewards: Baumli et al. (softmax over negatives + threshold) and VLM-RMs.

Both embed each observation with the image tower and the prompts with the text tower of
one CLIP-style model (``AutoModel`` with ``get_image_features`` / ``get_text_features``:
CLIP, OpenCLIP-converted, SigLIP ...) and differ only in the text side and the math
(:mod:`rayrg.rewards.similarity.math`). Inference runs in the Ray Data actors of
:mod:`rayrg.rewards.similarity.stages`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rayrg.rewards.registry import LabelMethod
from rayrg.rewards.similarity import math as sim
from rayrg.rewards.similarity.config import ClipConfig, VLMRMConfig


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def torch_dtype(name: str, device: str) -> Any:
    import torch

    if device == "cpu":
        return torch.float32  # half types are slow or unsupported on CPU
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def _features(output: Any) -> Any:
    """transformers 5 returns an output object from get_*_features; 4.x a tensor."""
    return getattr(output, "pooler_output", output)


class ClipEncoder:
    """Unit-norm image and text embeddings from a CLIP-style checkpoint (hub id or directory)."""

    def __init__(self, model: str, device: str = "auto", dtype: str = "float32") -> None:
        from transformers import AutoModel, AutoProcessor

        self.device = pick_device(device)
        self.model = AutoModel.from_pretrained(model, dtype=torch_dtype(dtype, self.device)).to(self.device).eval()
        self.processor = AutoProcessor.from_pretrained(model)
        self.num_parameters = int(sum(p.numel() for p in self.model.parameters()))
        self._text_cache: dict[str, np.ndarray] = {}

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        inputs = self.processor(images=list(images), return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, self.model.dtype)
        with torch.inference_mode():
            features = _features(self.model.get_image_features(pixel_values=pixels))
        return sim.normalize(features.float().cpu().numpy())

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Cached per text: a dataset has few distinct prompts and many frames."""
        import torch

        todo = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if todo:
            inputs = self.processor(text=todo, return_tensors="pt", padding=True, truncation=True)
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            with torch.inference_mode():
                features = _features(self.model.get_text_features(**inputs))
            for text, row in zip(todo, sim.normalize(features.float().cpu().numpy()), strict=True):
                self._text_cache[text] = row
        return np.stack([self._text_cache[t] for t in texts])


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


def vlmrm_scores(encoder: ClipEncoder, image_embeddings: np.ndarray, instructions: Sequence[str],
                 config: VLMRMConfig) -> dict[str, np.ndarray]:
    goals = encoder.encode_texts([config.prompt(i) for i in instructions])
    baseline = encoder.encode_texts([config.baseline])[0]
    return {"score": sim.vlmrm_rewards(image_embeddings, goals, baseline, config.alpha),
            "cosine": np.sum(image_embeddings * goals, axis=-1)}


def label_clip(config: ClipConfig, dataset: Path, out: Path, *, address: str | None = None) -> Path:
    from rayrg.rewards.similarity.stages import label_per_frame

    return label_per_frame(config, dataset, out, address=address)


def label_vlmrm(config: VLMRMConfig, dataset: Path, out: Path, *, address: str | None = None) -> Path:
    from rayrg.rewards.similarity.stages import label_per_frame

    return label_per_frame(config, dataset, out, address=address)


CLIP = LabelMethod("clip", ClipConfig, label_clip)
VLMRM = LabelMethod("vlmrm", VLMRMConfig, label_vlmrm)
