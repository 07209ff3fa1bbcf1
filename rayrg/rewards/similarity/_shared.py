"""What several similarity methods share: device and dtype choice and the CLIP-style encoder.

Private to the similarity methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rayrg.rewards.similarity import math as sim


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
    """Unit-norm image and text embeddings from a CLIP-style checkpoint (hub id or directory).

    ``AutoModel`` with ``get_image_features`` / ``get_text_features``: CLIP,
    OpenCLIP-converted, SigLIP ... (CLIP-Baumli and VLM-RMs both score with it).
    """

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


def image_embeddings(encoder: ClipEncoder, images: Sequence[np.ndarray], cache: dict[str, Any],
                     key: str) -> np.ndarray:
    """One image pass per model and batch, shared by every variant scored with that model."""
    if key not in cache:
        cache[key] = encoder.encode_images(images)
    return cache[key]
